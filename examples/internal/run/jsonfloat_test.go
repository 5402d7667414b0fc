package run

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// A diverged run (non-finite losses, an overflowed curvature) is saved and read back with its values.
func TestJSONNonFinite(t *testing.T) {
	inf, nan, g := math.Inf(1), math.NaN(), 0.25
	curv := math.Inf(-1)
	res := &Result{Entry: "forward", Method: "forward", Seed: 3, TestAccuracy: 0.5, TestLoss: inf, TrainLoss: nan,
		TrainAccuracy: 0.125, Curve: []Point{
			{Step: 10, TrainLoss: 1.5, TestLoss: 2, TestAccuracy: 0.75, GradNorm: &g},
			{Step: 20, TrainLoss: nan, TestLoss: inf, TestAccuracy: 0.1, GradNorm: &g, Curvature: &curv},
		}}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	text := string(data)
	for _, want := range []string{`"test_loss":"+Inf"`, `"train_loss":"NaN"`, `"test_accuracy":0.5`,
		`"curvature":"-Inf"`, `"train_loss":1.5`, `"grad_norm":0.25`, `"seed":3`} {
		if !strings.Contains(text, want) {
			t.Errorf("JSON lacks %s: %s", want, text)
		}
	}
	if strings.Contains(text, `"curvature":null`) || strings.Count(text, `"curvature"`) != 1 {
		t.Errorf("the first point has no curvature: it must be omitted: %s", text)
	}
	var back Result
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !math.IsInf(back.TestLoss, 1) || !math.IsNaN(back.TrainLoss) || back.TestAccuracy != 0.5 ||
		back.TrainAccuracy != 0.125 || back.Seed != 3 || back.Method != "forward" || len(back.Curve) != 2 {
		t.Fatalf("round trip: got %+v", back)
	}
	p0, p1 := back.Curve[0], back.Curve[1]
	if p0.Step != 10 || p0.TrainLoss != 1.5 || p0.Curvature != nil || p0.GradNorm == nil || *p0.GradNorm != g {
		t.Errorf("point 0: got %+v", p0)
	}
	if !math.IsNaN(p1.TrainLoss) || !math.IsInf(p1.TestLoss, 1) || p1.Curvature == nil || !math.IsInf(*p1.Curvature, -1) {
		t.Errorf("point 1: got %+v", p1)
	}

	// The curve saved with a checkpoint goes through the same path.
	rec, err := json.Marshal(&checkpointRecord{Curve: res.Curve, FirstLoss: jsonFloat(nan)})
	if err != nil {
		t.Fatalf("marshal checkpoint record: %v", err)
	}
	var got checkpointRecord
	if err := json.Unmarshal(rec, &got); err != nil || len(got.Curve) != 2 || !math.IsInf(got.Curve[1].TestLoss, 1) ||
		!math.IsNaN(float64(got.FirstLoss)) {
		t.Errorf("checkpoint record %s read back as %+v (%v)", rec, got, err)
	}

	// Rows and summaries of a diverged entry.
	row := Row{Entry: "forward", TrainLoss: Summary{Mean: inf, Std: nan}, Relative: inf}
	if data, err = json.Marshal(row); err != nil {
		t.Fatalf("marshal row: %v", err)
	}
	if text = string(data); !strings.Contains(text, `"train_loss":{"mean":"+Inf","std":"NaN"}`) ||
		!strings.Contains(text, `"step_time_relative":"+Inf"`) || !strings.Contains(text, `"entry":"forward"`) {
		t.Errorf("row JSON: %s", text)
	}
}
