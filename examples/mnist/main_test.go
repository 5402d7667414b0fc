package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	_ "github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/examples/internal/sgdm"
)

var (
	dataOnce            sync.Once
	trainData, testData *mnistdata.Split
	dataErr             error
)

// tinyData loads MNIST once from the GoMNIST module and returns small subsets.
func tinyData(t *testing.T) (train, test *mnistdata.Split) {
	t.Helper()
	dataOnce.Do(func() { trainData, testData, dataErr = mnistdata.LoadCached("") })
	if dataErr != nil {
		t.Fatalf("loading MNIST from the GoMNIST module: %v", dataErr)
	}
	return &mnistdata.Split{Images: trainData.Images[:512*mnistdata.ImageSize], Labels: trainData.Labels[:512]}, testData
}

// tinyArgs are the flags of a tiny run on 512 training images (a few seconds). The schedule is constant:
// with cosine, a 3-step run and a 6-step run have different schedules, so the resume test would compare
// different runs.
func tinyArgs(extra ...string) []string {
	return append([]string{"-quiet", "-steps=6", "-batch=16", "-train_size=512", "-eval_every=3", "-hidden=16",
		"-lr=0.05", "-base=momentum", "-schedule=constant", "-seed=3", "-backend=go"}, extra...)
}

// parse parses the flags of this example.
func parse(t *testing.T, args ...string) *run.Runner {
	t.Helper()
	fs := flag.NewFlagSet("mnist", flag.ContinueOnError)
	r, err := run.Parse(example, fs, args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return r
}

// trainRun trains a single run with the given flags.
func trainRun(t *testing.T, args ...string) *run.Result {
	t.Helper()
	rep, err := parse(t, args...).Run()
	if err != nil {
		t.Fatal(err)
	}
	return rep.Results[0][0]
}

func TestDataErrors(t *testing.T) {
	_, _, err := mnistdata.Load(filepath.Join(t.TempDir(), "nowhere"))
	if err == nil || !strings.Contains(err.Error(), "-data") {
		t.Errorf("missing folder: want an error suggesting -data, got %v", err)
	}
	dir := t.TempDir()
	for _, name := range mnistdata.Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not MNIST"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = mnistdata.Load(dir)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt files: want an error saying so, got %v", err)
	}
	if err := os.Remove(filepath.Join(dir, mnistdata.Files[3])); err != nil {
		t.Fatal(err)
	}
	_, _, err = mnistdata.Load(dir)
	if err == nil || !strings.Contains(err.Error(), mnistdata.Files[3]) {
		t.Errorf("missing file: want an error naming it, got %v", err)
	}
}

func TestDataOrderIsAFunctionOfStep(t *testing.T) {
	train, _ := tinyData(t)
	a := mnistdata.NewTrainDataset(train, 48, 7)
	for range 25 { // crosses epochs
		_, _, _, _ = a.Yield()
	}
	_, x1, y1, _ := a.Yield()
	b := mnistdata.NewTrainDataset(train, 48, 7)
	b.Seek(25)
	_, x2, y2, _ := b.Yield()
	if !sameTensors(t, x1[0], x2[0]) || !sameTensors(t, y1[0], y2[0]) {
		t.Error("the batch of step 25 differs between a dataset read from the start and one that seeked to it")
	}
}

// TestCheckpointResumeBitIdentical depends on the pure-Go backend's determinism: a run interrupted after 3
// steps and resumed from its checkpoint must end with the same bits as an uninterrupted 6-step run.
func TestCheckpointResumeBitIdentical(t *testing.T) {
	for _, method := range []string{"forward", "db"} {
		t.Run(method, func(t *testing.T) {
			out := t.TempDir()
			full := trainRun(t, tinyArgs("-method="+method, "-out="+out)...)
			dir := filepath.Join(t.TempDir(), "ckpt")
			trainRun(t, tinyArgs("-method="+method, "-checkpoint="+dir, "-steps=3")...)
			resumed := trainRun(t, tinyArgs("-method="+method, "-checkpoint="+dir)...)
			if got := optimizers.GetGlobalStep(resumed.Ctx); got != 6 {
				t.Fatalf("resumed run ended at global step %d, want 6", got)
			}
			compareVariables(t, full.Ctx, resumed.Ctx)
			if len(resumed.Curve) != 2 || resumed.Curve[1].Step != 6 || resumed.Curve[1].TestAccuracy != full.TestAccuracy {
				t.Errorf("resumed curve %+v, want points at steps 3 and 6 ending at test accuracy %g", resumed.Curve,
					full.TestAccuracy)
			}
			if st, err := os.Stat(filepath.Join(dir, "mnist_curves.png")); err != nil || st.Size() == 0 {
				t.Errorf("no PNG of the curves in the checkpoint folder: %v", err)
			}
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
	out := t.TempDir()
	rep, err := parse(t, tinyArgs("-compare=sgd,forward,forward:gr_every=2", "-seeds=2", "-out="+out)...).Run()
	if err != nil {
		t.Fatal(err)
	}
	table := run.FormatTable(rep.Rows)
	for _, want := range []string{"| SGD |", "| F-GR |", "| F-GR gr_every=2 |", "±", "(1.00×)", "/2 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, name := range []string{"mnist_compare.md", "mnist_compare.json", "mnist_compare_accuracy.png",
		"mnist_compare_metrics.png"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	// The GR metrics are recorded for the gr methods only.
	if p := rep.Results[1][0].Curve[0]; p.GradNorm == nil || !(*p.GradNorm > 0) || p.Curvature == nil {
		t.Errorf("F-GR curve point without GR metrics: %+v", p)
	}
	if p := rep.Results[0][0].Curve[0]; p.GradNorm != nil {
		t.Errorf("SGD curve point with GR metrics: %+v", p)
	}
}

func TestUnknownMethod(t *testing.T) {
	_, err := run.Parse(example, flag.NewFlagSet("mnist", flag.ContinueOnError), []string{"-method=nope"})
	if err == nil || !strings.Contains(err.Error(), "forward") {
		t.Errorf("want an error listing the valid methods, got %v", err)
	}
}

// data returns the training labels of a run's data for the given flags and seed, and the clean labels of
// the same subset.
func trainLabels(t *testing.T, seed int64, args ...string) (noisy, clean []int32) {
	t.Helper()
	ctx, err := parse(t, args...).Context()
	if err != nil {
		t.Fatal(err)
	}
	d, err := data(nil, ctx, seed)
	if err != nil {
		t.Fatal(err)
	}
	noisy = d.TrainEval.(*mnistdata.EvalDataset).Split().Labels
	ctx.SetParam(mnistdata.ParamLabelNoise, 0.0)
	if d, err = data(nil, ctx, seed); err != nil {
		t.Fatal(err)
	}
	return noisy, d.TrainEval.(*mnistdata.EvalDataset).Split().Labels
}

// Label noise flips exactly round(p·n) labels, each to another class, the same for every method of a seed.
func TestLabelNoise(t *testing.T) {
	tinyData(t)
	for _, c := range []struct {
		n    int
		p    float64
		want int
	}{{2000, 0.4, 800}, {999, 0.25, 250}, {10, 0.05, 1}} {
		size := fmt.Sprint("-train_size=", c.n)
		noise := fmt.Sprint("-label_noise=", c.p)
		noisy, clean := trainLabels(t, 5, "-method=sgd", size, noise, "-batch=8")
		if len(noisy) != c.n {
			t.Fatalf("%d training labels, want %d", len(noisy), c.n)
		}
		flipped := 0
		for i := range noisy {
			if noisy[i] != clean[i] {
				flipped++
			}
			if noisy[i] < 0 || noisy[i] > 9 {
				t.Fatalf("label %d out of range", noisy[i])
			}
		}
		if flipped != c.want {
			t.Errorf("n=%d, p=%g: %d labels flipped, want %d", c.n, c.p, flipped, c.want)
		}
		other, _ := trainLabels(t, 5, "-method=forward", size, noise, "-batch=8")
		if !slices.Equal(noisy, other) {
			t.Errorf("n=%d, p=%g: the noisy labels differ between sgd and forward with the same seed", c.n, c.p)
		}
		if c.n >= 999 {
			if next, _ := trainLabels(t, 6, "-method=sgd", size, noise); slices.Equal(noisy, next) {
				t.Errorf("seeds 5 and 6 give the same labels")
			}
		}
	}
	ctx, _ := parse(t, "-label_noise=1").Context()
	if _, err := data(nil, ctx, 1); err == nil || !strings.Contains(err.Error(), "[0, 1)") {
		t.Errorf("-label_noise=1: error %v, want one giving the valid range", err)
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

// -val holds out round(f·n) examples of the seed's noisy training subset: the two parts are disjoint, together
// they are the subset (images with their noisy labels), the validation part is the same for every method of a
// seed; a run reports its validation accuracy, and -val outside [0, 1) is an error naming the flag.
func TestValidationSplit(t *testing.T) {
	tinyData(t)
	ctx, err := parse(t, "-method=sgd", "-train_size=500", "-label_noise=0.4", "-val=0.2").Context()
	if err != nil {
		t.Fatal(err)
	}
	d, err := data(nil, ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if d.Val == nil {
		t.Fatal("-val=0.2: no validation dataset")
	}
	train, val := d.TrainEval.(*mnistdata.EvalDataset).Split(), d.Val.(*mnistdata.EvalDataset).Split()
	if train.Len() != 400 || val.Len() != 100 {
		t.Fatalf("%d training and %d validation examples, want 400 and 100", train.Len(), val.Len())
	}
	ctx.SetParam(run.ParamVal, 0.0)
	whole, err := data(nil, ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	all := whole.TrainEval.(*mnistdata.EvalDataset).Split()
	if whole.Val != nil {
		t.Fatal("-val=0: a validation dataset")
	}
	// Each example of the subset (image + noisy label) is in exactly one part.
	key := func(s *mnistdata.Split, i int) string {
		return fmt.Sprint(s.Labels[i], s.Images[i*mnistdata.ImageSize:(i+1)*mnistdata.ImageSize])
	}
	count := map[string]int{}
	for i := range all.Len() {
		count[key(all, i)]++
	}
	for _, part := range []*mnistdata.Split{train, val} {
		for i := range part.Len() {
			count[key(part, i)]--
		}
	}
	for k, c := range count {
		if c != 0 {
			t.Fatalf("example %.40s… is %d times too often in the subset compared to the two parts", k, c)
		}
	}
	res := trainRun(t, tinyArgs("-method=forward", "-val=0.25", "-label_noise=0.4", "-plot=")...)
	if res.ValAccuracy == nil || *res.ValAccuracy < 0 || *res.ValAccuracy > 1 {
		t.Fatalf("validation accuracy %v, want a value in [0, 1]", res.ValAccuracy)
	}
	for _, bad := range []string{"-val=1", "-val=-0.1", "-val=0.0001"} {
		ctx, err := parse(t, "-method=sgd", "-train_size=500", bad).Context()
		if err == nil {
			_, err = data(nil, ctx, 1)
		}
		if err == nil || !strings.Contains(err.Error(), "-val") {
			t.Errorf("%s: error %v, want one naming -val", bad, err)
		}
	}
}
