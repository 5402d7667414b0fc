package main

import (
	"bytes"
	"github.com/gradreg/gradreg/examples/internal/sgdm"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

var (
	dataOnce            sync.Once
	trainData, testData *Split
	dataErr             error
)

// tinyData loads MNIST once from the GoMNIST module and returns small subsets.
func tinyData(t *testing.T) (train, test *Split) {
	t.Helper()
	dataOnce.Do(func() {
		dir, err := DefaultDataDir()
		if err != nil {
			dataErr = err
			return
		}
		trainData, testData, dataErr = LoadMNIST(dir)
	})
	if dataErr != nil {
		t.Fatalf("loading MNIST from the GoMNIST module: %v", dataErr)
	}
	return trainData.Subset(512), testData.Subset(200)
}

func pureGo(t *testing.T) backends.Backend {
	t.Helper()
	backend, err := backends.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	return backend
}

func tinyConfig(method string) runConfig {
	return runConfig{Method: method, Seed: 3, Steps: 6, Batch: 16, EvalEvery: 3, SaveEvery: 3, Quiet: true,
		Params: map[string]any{optimizers.ParamLearningRate: 0.05, paramBase: "momentum", paramHidden: "16"}}
}

func TestDataErrors(t *testing.T) {
	_, _, err := LoadMNIST(filepath.Join(t.TempDir(), "nowhere"))
	if err == nil || !strings.Contains(err.Error(), "-data") {
		t.Errorf("missing folder: want an error suggesting -data, got %v", err)
	}
	dir := t.TempDir()
	for _, name := range mnistFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not MNIST"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = LoadMNIST(dir)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt files: want an error saying so, got %v", err)
	}
	if err := os.Remove(filepath.Join(dir, mnistFiles[3])); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadMNIST(dir)
	if err == nil || !strings.Contains(err.Error(), mnistFiles[3]) {
		t.Errorf("missing file: want an error naming it, got %v", err)
	}
}

func TestDataOrderIsAFunctionOfStep(t *testing.T) {
	train, _ := tinyData(t)
	a := newTrainDataset(train, 48, 7)
	for range 25 { // crosses epochs
		_, _, _, _ = a.Yield()
	}
	_, x1, y1, _ := a.Yield()
	b := newTrainDataset(train, 48, 7)
	b.Seek(25)
	_, x2, y2, _ := b.Yield()
	if !sameTensors(t, x1[0], x2[0]) || !sameTensors(t, y1[0], y2[0]) {
		t.Error("the batch of step 25 differs between a dataset read from the start and one that seeked to it")
	}
}

// TestCheckpointResumeBitIdentical depends on the pure-Go backend's determinism: a run interrupted after 3
// steps and resumed from its checkpoint must end with the same bits as an uninterrupted 6-step run.
func TestCheckpointResumeBitIdentical(t *testing.T) {
	train, test := tinyData(t)
	backend := pureGo(t)
	for _, method := range []string{"forward", "db"} {
		t.Run(method, func(t *testing.T) {
			full, err := trainRun(backend, tinyConfig(method), train, test)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "ckpt")
			cfg := tinyConfig(method)
			cfg.Checkpoint, cfg.Steps = dir, 3
			if _, err := trainRun(backend, cfg, train, test); err != nil {
				t.Fatal(err)
			}
			cfg.Steps = 6
			resumed, err := trainRun(backend, cfg, train, test)
			if err != nil {
				t.Fatal(err)
			}
			if got := optimizers.GetGlobalStep(resumed.Ctx); got != 6 {
				t.Fatalf("resumed run ended at global step %d, want 6", got)
			}
			compareVariables(t, full.Ctx, resumed.Ctx)
		})
	}
}

func compareVariables(t *testing.T, want, got *context.Context) {
	t.Helper()
	n := 0
	for v := range want.IterVariables() {
		if !v.Trainable && !strings.HasPrefix(v.Scope(), sgdm.VelocityScope) {
			continue
		}
		other := got.GetVariableByScopeAndName(v.Scope(), v.Name())
		if other == nil {
			t.Errorf("variable %s missing from the resumed run", v.ScopeAndName())
			continue
		}
		if !sameTensors(t, v.MustValue(), other.MustValue()) {
			t.Errorf("variable %s differs between the uninterrupted and the resumed run", v.ScopeAndName())
		}
		n++
	}
	if n < 4 {
		t.Errorf("compared only %d variables", n)
	}
}

func TestCompareTableAndPlot(t *testing.T) {
	train, test := tinyData(t)
	cfg := tinyConfig("")
	methods := []string{"sgd", "forward"}
	results, err := compare(pureGo(t), cfg, methods, 1, 2, train, test)
	if err != nil {
		t.Fatal(err)
	}
	table := formatTable(methods, results)
	for _, want := range []string{"| sgd |", "| F-GR |", "±", "1.00×"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	png := filepath.Join(t.TempDir(), "c.png")
	if err := plotCurves(png, "test", methods, results); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Errorf("no PNG written: %v", err)
	}
}

func TestUnknownMethod(t *testing.T) {
	train, test := tinyData(t)
	_, err := trainRun(pureGo(t), tinyConfig("nope"), train, test)
	if err == nil || !strings.Contains(err.Error(), "forward") {
		t.Errorf("want an error listing the valid methods, got %v", err)
	}
}

func sameTensors(t *testing.T, a, b interface {
	ConstBytes(func([]byte)) error
}) bool {
	t.Helper()
	var ab, bb []byte
	if err := a.ConstBytes(func(d []byte) { ab = bytes.Clone(d) }); err != nil {
		t.Fatal(err)
	}
	if err := b.ConstBytes(func(d []byte) { bb = bytes.Clone(d) }); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ab, bb)
}
