package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -frontier reads the rows of a comparison's JSON, groups them by method with k from gr_every (1 without),
// skips entries with other settings, writes the PNG, and rejects a file that is not a comparison.
func TestFrontier(t *testing.T) {
	dir := t.TempDir()
	js := `{"rows": [
	 {"entry": "SGD", "step_cpu_relative": 1},
	 {"entry": "F-GR", "diff": {"mean": 0.036, "lo": 0.026, "hi": 0.046}, "step_cpu_relative": 1.9},
	 {"entry": "F-GR gr_every=5", "diff": {"mean": 0.046, "lo": 0.026, "hi": 0.066}, "step_cpu_relative": 1.2},
	 {"entry": "F-GR gr_gamma=0.1", "diff": {"mean": 0.01, "lo": 0, "hi": 0.02}, "step_cpu_relative": 1.9},
	 {"entry": "looksam gr_every=5", "diff": {"mean": 0.04, "lo": null, "hi": null}, "step_cpu_relative": 1.25}]}`
	in := filepath.Join(dir, "c.json")
	if err := os.WriteFile(in, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "f.png")
	pts, err := frontierPoints(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pts["F-GR"]); got != 2 {
		t.Fatalf("F-GR: %d points, want 2 (k = 1 and 5; gr_gamma skipped): %+v", got, pts)
	}
	if p := pts["F-GR"][1]; p.k != 5 || p.x != 1.2 || abs(p.y-4.6) > 1e-9 || abs(p.err-2) > 1e-9 {
		t.Errorf("F-GR k=5: %+v, want k 5, x 1.2, y 4.6, ±2", p)
	}
	if p := pts["looksam"][0]; p.k != 5 || p.err != 0 {
		t.Errorf("looksam: %+v, want k 5 without interval", p)
	}
	if err := frontier(in, png); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("no PNG: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("[1, 2]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := frontier(bad, png); err == nil || !strings.Contains(err.Error(), "not a comparison") {
		t.Errorf("bad JSON: error %v", err)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
