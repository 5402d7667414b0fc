package grcheckpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/pkg/errors"
)

// A rename that fails at any point of a commit (the .bin, the record or the .json): the save reports the
// error, the folder resumes from the previous checkpoint with nothing reported broken (the new one is not
// listed: its .json, renamed last, is not there), and the next save succeeds. Renaming the .json before
// the others would leave a listed, broken checkpoint when a later rename fails.
func TestCommitRenameFails(t *testing.T) {
	defer func() { rename = os.Rename }()
	for fail := range 3 {
		t.Run([]string{"bin", "record", "json"}[fail], func(t *testing.T) {
			dir := t.TempDir()
			save(t, dir, 100, 1)
			calls := 0
			rename = func(src, dst string) error {
				calls++
				if calls == fail+1 {
					return errors.Errorf("injected failure renaming %s", filepath.Base(src))
				}
				return os.Rename(src, dst)
			}
			ctx := context.New()
			h, err := Build(ctx).Dir(dir).Done()
			if err != nil {
				t.Fatal(err)
			}
			state(ctx, 100, 2)
			h.SetMeta(record{2})
			if err := h.Save(); err == nil || !strings.Contains(err.Error(), "injected failure") ||
				!strings.Contains(err.Error(), "intact") {
				t.Fatalf("save with rename %d failing: %v, want the failure reported", fail+1, err)
			}
			rename = os.Rename
			_ = h.Close()
			h, step, err := open(t, dir, 100)
			if err != nil || step != 1 || len(h.Skipped()) != 0 {
				t.Fatalf("after a failed commit: step %d, skipped %v, err %v: want step 1, none broken", step,
					h.Skipped(), err)
			}
			ctx = context.New()
			h, err = Build(ctx).Dir(dir).Done()
			if err != nil {
				t.Fatal(err)
			}
			state(ctx, 100, 3)
			h.SetMeta(record{3})
			if err := h.Save(); err != nil {
				t.Fatal(err)
			}
			_ = h.Close()
			if _, step, err := open(t, dir, 100); err != nil || step != 3 {
				t.Fatalf("the save after: step %d, %v: want 3", step, err)
			}
		})
	}
}

// A gzip-compressed .bin (GoMLX's default format, e.g. a checkpoint written by GoMLX's own handler) with
// one byte flipped inside its compressed data is reported broken and passed over; intact, it loads.
func TestCompressedCorruption(t *testing.T) {
	for _, flip := range []bool{false, true} {
		dir := t.TempDir()
		save(t, dir, 1000, 1) // Ours, uncompressed: step 1.
		ctx := context.New()
		g, err := checkpoints.Build(ctx).Dir(dir).Keep(-1).ExcludeAllParams().
			WithCompression(checkpoints.BinGZIP).Done()
		if err != nil {
			t.Fatal(err)
		}
		state(ctx, 1000, 2)
		if err := g.Save(); err != nil {
			t.Fatal(err)
		}
		names, _ := list(dir)
		newest := filepath.Join(dir, names[len(names)-1]+checkpoints.BinDataSuffix)
		bin, err := os.ReadFile(newest)
		if err != nil || !strings.HasPrefix(string(bin), "gomlx_checkpoints\x04gzip") {
			t.Fatalf("GoMLX's .bin is not gzip: %q, %v", bin[:min(len(bin), 24)], err)
		}
		if flip {
			bin[len(bin)/2] ^= 0x10 // Inside the deflate stream (its header is 10 bytes, its trailer 8).
			if err := os.WriteFile(newest, bin, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		h, err := Build(context.New()).Dir(dir).Done()
		if err != nil {
			t.Fatal(err)
		}
		_ = h.Close()
		switch {
		case !flip && (h.Loaded() != names[1] || len(h.Skipped()) != 0):
			t.Errorf("intact gzip checkpoint: loaded %q, skipped %v; want %s", h.Loaded(), h.Skipped(), names[1])
		case flip && (h.Loaded() != names[0] || len(h.Skipped()) != 1 ||
			!strings.Contains(h.Skipped()[0].Error(), "gzip")):
			t.Errorf("flipped byte in gzip data: loaded %q, skipped %v; want %s, %s reported broken (gzip)",
				h.Loaded(), h.Skipped(), names[0], names[1])
		}
	}
}

// Variables of GoMLX's metrics (scope "metrics", a UUID per metric object) are not saved, and those of an
// older checkpoint are not carried on: a checkpoint holds the same variables after any number of resumes.
func TestMetricVariablesNotSaved(t *testing.T) {
	dir := t.TempDir()
	// A checkpoint written by GoMLX's own handler (or an earlier version of this package) holds metric
	// variables: resumed, they are not carried on.
	{
		ctx := context.New()
		g, err := checkpoints.Build(ctx).Dir(dir).ExcludeAllParams().Done()
		if err != nil {
			t.Fatal(err)
		}
		state(ctx, 10, 0)
		ctx.In(metrics.Scope).In("Mean Loss_uuid_old").VariableWithValue("total", float32(1))
		if err := g.Save(); err != nil {
			t.Fatal(err)
		}
	}
	var counts []int
	for resume := range 3 {
		ctx := context.New()
		h, err := Build(ctx).Dir(dir).Done()
		if err != nil {
			t.Fatal(err)
		}
		state(ctx, 10, resume+1)
		// As a metric does: a fresh scope name per metric object.
		ctx.In(metrics.Scope).In("Moving Average Loss_uuid_"+string(rune('a'+resume))).
			VariableWithValue("mean", float32(1))
		h.SetMeta(record{resume + 1})
		if err := h.Save(); err != nil {
			t.Fatal(err)
		}
		_ = h.Close()
		names, _ := list(dir)
		data, err := os.ReadFile(filepath.Join(dir, names[len(names)-1]+checkpoints.JsonNameSuffix))
		if err != nil {
			t.Fatal(err)
		}
		var saved struct {
			Variables []struct{ ParameterName string }
		}
		if err := json.Unmarshal(data, &saved); err != nil {
			t.Fatal(err)
		}
		for _, v := range saved.Variables {
			if strings.Contains(v.ParameterName, "/"+metrics.Scope+"/") {
				t.Errorf("resume %d: metric variable %s saved", resume, v.ParameterName)
			}
		}
		counts = append(counts, len(saved.Variables))
	}
	if counts[0] != counts[1] || counts[1] != counts[2] {
		t.Errorf("variables per checkpoint over resumes: %v, want the same number", counts)
	}
	if !isMetricVariable("var:/metrics/Mean Loss_uuid_1/total") || isMetricVariable("var:/model/metrics/w") ||
		isMetricVariable("var:/metricsx/w") {
		t.Error("isMetricVariable: wrong scope test")
	}
}
