package main

import (
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gcifar "github.com/gomlx/gomlx/examples/cifar"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

const recordSize = 1 + 32*32*3 // CIFAR-10 binary record: label byte + 3072 pixel bytes

// writeFakeCIFAR10 writes the six CIFAR-10 binary files GoMLX's loader reads, each with its full 10 000
// records: sparse files (Truncate), with the first few records of each holding random labels and
// images whose mean brightness depends on the label, the rest zeros (label 0, black image).
func writeFakeCIFAR10(t *testing.T, dir string) {
	t.Helper()
	sub := filepath.Join(dir, gcifar.C10SubDir)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
		"data_batch_5.bin", "test_batch.bin"}
	for _, name := range names {
		f, err := os.Create(filepath.Join(sub, name))
		if err != nil {
			t.Fatal(err)
		}
		rec := make([]byte, recordSize)
		for range 64 {
			label := rng.IntN(10)
			rec[0] = byte(label)
			for i := 1; i < recordSize; i++ {
				rec[i] = byte(label*20 + rng.IntN(50))
			}
			if _, err := f.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(int64(gcifar.C10ExamplesPerFile * recordSize)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// parse parses the flags of this example.
func parse(t *testing.T, args ...string) *run.Runner {
	t.Helper()
	r, err := run.Parse(example, flag.NewFlagSet("cifar", flag.ContinueOnError), args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return r
}

// -model=mlp trains a few steps end to end on fake files (no network), with a checkpoint, a resume and
// the PNG of the curves.
func TestMLPTrainsOnFakeData(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 60 000 fake images (about 1.5 GB of memory, a few seconds): skipped with -short")
	}
	dir := t.TempDir()
	writeFakeCIFAR10(t, dir)
	ckpt := filepath.Join(dir, "ckpt")
	args := []string{"-data=" + dir, "-model=mlp", "-method=forward", "-batch=16", "-eval_every=2", "-lr=0.0005", "-schedule=constant",
		"-eval_examples=64", "-checkpoint=" + ckpt, "-quiet", "-save_every=2"}
	rep, err := parse(t, append(args, "-steps=4")...).Run()
	if err != nil {
		t.Fatal(err)
	}
	points := rep.Results[0][0].Curve
	if len(points) != 2 || points[1].Step != 4 {
		t.Fatalf("curve points = %+v, want evaluations at steps 2 and 4", points)
	}
	for _, p := range points {
		if !(p.TrainLoss >= 0) || !(p.TestLoss >= 0) || math.IsInf(p.TestLoss, 0) || p.TestAccuracy < 0 ||
			p.TestAccuracy > 1 || p.GradNorm == nil {
			t.Errorf("bad point %+v", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(ckpt, "cifar_curves.png")); err != nil || fi.Size() == 0 {
		t.Errorf("no PNG of the curves in the checkpoint directory: %v", err)
	}
	// Resume to step 6: two more steps, one more evaluation, the earlier points kept.
	rep, err = parse(t, append(args, "-steps=6")...).Run()
	if err != nil {
		t.Fatal(err)
	}
	if points = rep.Results[0][0].Curve; len(points) != 3 || points[2].Step != 6 {
		t.Fatalf("after resume, points = %+v, want steps 2, 4, 6", points)
	}
}

// Errors a user can hit come back as errors that say what to do.
func TestErrors(t *testing.T) {
	be, err := theBackend()
	if err != nil {
		t.Fatal(err)
	}
	ctxFor := func(args ...string) *context.Context {
		ctx, err := parse(t, args...).Context()
		if err != nil {
			t.Fatal(err)
		}
		return ctx
	}
	if _, err := resolveConv(ctxFor("-model=resnet20", "-conv=gomlx"), be); isPureGo(be) {
		if err == nil || !strings.Contains(err.Error(), "-model=mlp") || !strings.Contains(err.Error(), "BatchNormForTraining") {
			t.Errorf("pure-Go backend with -conv=gomlx: error %v, want one naming -model=mlp and the op", err)
		}
	}
	// DB on GoMLX's layers needs grgrad's gradients.
	installed := grgrad.Installed()
	defer func() {
		if installed {
			grgrad.MustInstall()
		} else {
			grgrad.Uninstall()
		}
	}()
	grgrad.Uninstall()
	if _, err := resolveConv(ctxFor("-model=resnet20", "-conv=gomlx", "-method=db"), be); !isPureGo(be) && (err == nil ||
		!strings.Contains(err.Error(), "-gradients=grgrad")) {
		t.Errorf("-method=db with -conv=gomlx and GoMLX's gradients: error %v, want one naming -gradients=grgrad", err)
	}
	if conv, err := resolveConv(ctxFor("-model=resnet20", "-method=db"), be); err != nil || conv != "dconv" {
		t.Errorf("-conv=auto -method=db with GoMLX's gradients: %q, %v; want dconv", conv, err)
	}
	grgrad.MustInstall()
	if conv, err := resolveConv(ctxFor("-model=resnet20", "-method=db"), be); !isPureGo(be) && (err != nil || conv != "gomlx") {
		t.Errorf("-conv=auto -method=db with grgrad on XLA: %q, %v; want gomlx", conv, err)
	}
	if _, err := data(be, ctxFor("-model=resnet21"), 1); err == nil || !strings.Contains(err.Error(), "resnet20") {
		t.Errorf("bad -model: %v", err)
	}
	_, err = data(be, ctxFor("-model=mlp", "-dataset=c1000", "-data="+t.TempDir()), 1)
	if err == nil || !strings.Contains(err.Error(), "c10|c100") {
		t.Errorf("bad -dataset: %v", err)
	}
	_, err = data(be, ctxFor("-model=mlp", "-eval_examples=-1", "-data="+t.TempDir()), 1)
	if err == nil || !strings.Contains(err.Error(), "-eval_examples") {
		t.Errorf("negative -eval_examples: %v", err)
	}
	_, err = data(be, ctxFor("-model=mlp", "-batch=60000", "-data="+t.TempDir()), 1)
	if err == nil || !strings.Contains(err.Error(), "50000 training examples") {
		t.Errorf("-batch above the training set: %v", err)
	}
}

// buildParams builds the model graph on a batch of 2 and returns the number of trainable parameters, or an
// error (a panic) from the backend; with execute, it also compiles the graph and runs it.
func buildParams(t *testing.T, model, conv string, execute bool) (n int, err error) {
	be, err := theBackend()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.New()
	ctx.SetParams(map[string]any{paramModel: model, paramConv: conv, paramAugment: false, paramNumClasses: 10})
	input := shapes.Make(dtypes.Float32, 2, 32, 32, 3)
	err = run.Catch(func() {
		if !execute {
			g := graph.NewGraph(be, "params")
			modelFn(ctx, nil, []*graph.Node{graph.Parameter(g, "x", input)})
			return
		}
		exec := context.MustNewExec(be, ctx, func(ctx *context.Context, x *graph.Node) *graph.Node {
			return modelFn(ctx, nil, []*graph.Node{x})[0]
		})
		_ = exec.MustExec(tensors.FromShape(input))
	})
	return countParams(ctx), err
}

// countParams counts the scalars of the trainable variables.
func countParams(ctx *context.Context) int {
	n := 0
	for v := range ctx.IterVariables() {
		if v.Trainable {
			n += v.Shape().Size()
		}
	}
	return n
}

// Parameter counts of the published architectures (weights, BN scale/offset, final dense with bias).
func TestParamCounts(t *testing.T) {
	want := map[string]int{
		"mlp":      3072*512 + 512 + 512*256 + 256 + 256*10 + 10,
		"cnn":      3*3*3*16 + 2*16 + 3*3*16*32 + 2*32 + 8*8*32*128 + 128 + 128*10 + 10,
		"resnet20": 269722,  // He et al.: 0.27M (272 474 with the BN moving averages)
		"resnet56": 853018,  // 0.85M
		"wrn16-4":  2748890, // 2.7M
	}
	// WRN-28-10 (36.5M parameters) is left out: its graph takes long to build and run on the pure-Go backend.
	for _, model := range []string{"mlp", "cnn", "resnet20", "resnet56", "wrn16-4"} {
		if testing.Short() && model != "mlp" && model != "resnet20" {
			continue
		}
		for _, conv := range []string{"dconv", "gomlx"} {
			if conv == "gomlx" && model == "resnet56" {
				continue // the same builder as resnet20's, deeper
			}
			// On XLA compiling a ResNet takes seconds, so the graph is compiled and run only for the builders no
			// other test runs: this package's dconv models (resnet56 is resnet20's builder, deeper). The MLP is
			// trained by TestMLPTrainsOnFakeData, the GoMLX-layer CNN by TestDBOnGoMLXLayers, and the GoMLX-layer
			// ResNets are examples/internal/resnet's builder, which its tests run.
			execute := conv == "dconv" && model != "mlp" && model != "resnet56"
			n, err := buildParams(t, model, conv, execute)
			if err != nil {
				t.Logf("%s, -conv=%s: graph not buildable on this backend, skipping its count: %.200v", model, conv, err)
				continue
			}
			if n != want[model] {
				t.Errorf("%s, -conv=%s: %d parameters, want %d", model, conv, n, want[model])
			}
		}
	}
}

// On XLA, -method=db trains the small CNN of GoMLX's own layers (layers.Convolution, batchnorm.New,
// graph.MaxPool) with grgrad's gradients (-gradients=grgrad, the runner's default).
func TestDBOnGoMLXLayers(t *testing.T) {
	be, err := theBackend()
	if err != nil {
		t.Fatal(err)
	}
	if isPureGo(be) {
		t.Skip("skipped: GoMLX's batchnorm.New and MaxPool need the XLA backend (GOMLX_BACKEND=xla:cpu)")
	}
	rep, err := parse(t, "-synthetic", "-model=cnn", "-conv=gomlx", "-method=db", "-gamma=0.01", "-lr=0.01", "-batch=8", "-steps=3", "-eval_every=3",
		"-eval_examples=16", "-quiet", "-out="+t.TempDir()).Run()
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Results[0][0].Curve; len(p) != 1 || !(p[0].TrainLoss >= 0) || math.IsInf(p[0].TrainLoss, 0) {
		t.Errorf("curve %+v", p)
	}
}

// The training batches depend only on the seed and the step: the same for two streams of one seed (every
// method of a seed sees the same data), each epoch a permutation of the examples, Seek(k) lands on step k's
// batch, and another seed gives another order.
func TestSeededBatches(t *testing.T) {
	const n, batch = 10, 4
	stream := func(seed int64) *seededBatches {
		images := make([]float32, 2*n)
		labels := make([]int64, n)
		for i := range labels {
			images[2*i], images[2*i+1], labels[i] = float32(i), float32(-i), int64(i)
		}
		ds, err := newSeededBatches(images, []int{2}, labels, batch, seed)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	// steps returns the labels of the first k batches, checking each image against its label.
	steps := func(ds *seededBatches, k int) []int64 {
		var all []int64
		for range k {
			_, x, y, err := ds.Yield()
			if err != nil {
				t.Fatal(err)
			}
			if d := x[0].Shape().Dimensions; len(d) != 2 || d[0] != batch || d[1] != 2 {
				t.Fatalf("image batch dimensions %v, want [%d 2]", d, batch)
			}
			xs, ys := tensors.MustCopyFlatData[float32](x[0]), tensors.MustCopyFlatData[int64](y[0])
			for i, l := range ys {
				if xs[2*i] != float32(l) || xs[2*i+1] != -float32(l) {
					t.Fatalf("image %v yielded with label %d", xs[2*i:2*i+2], l)
				}
			}
			all = append(all, ys...)
		}
		return all
	}
	a, b := steps(stream(7), 10), steps(stream(7), 10)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 7 gave two orders:\n%v\n%v", a, b)
	}
	for e := range 4 { // 40 examples = 4 epochs
		epoch := slices.Clone(a[e*n : (e+1)*n])
		slices.Sort(epoch)
		for i, l := range epoch {
			if l != int64(i) {
				t.Fatalf("epoch %d is not a permutation of the %d examples: %v", e, n, a[e*n:(e+1)*n])
			}
		}
	}
	if slices.Equal(a[:n], a[n:2*n]) {
		t.Errorf("epochs 0 and 1 in the same order %v", a[:n])
	}
	ds := stream(7)
	ds.Seek(3)
	if got := steps(ds, 2); !slices.Equal(got, a[3*batch:5*batch]) {
		t.Errorf("after Seek(3): %v, want steps 3-4 %v", got, a[3*batch:5*batch])
	}
	ds.Reset()
	if got := steps(ds, 1); !slices.Equal(got, a[:batch]) {
		t.Errorf("after Reset: %v, want step 0 %v", got, a[:batch])
	}
	if c := steps(stream(8), 10); slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same order %v", a)
	}
	if _, err := newSeededBatches(make([]float32, 2*n), []int{2}, make([]int64, n), n+1, 1); err == nil ||
		!strings.Contains(err.Error(), "batch 11 must be in [1, 10]") {
		t.Errorf("batch > examples: error %v", err)
	}
}

// With the same seed, the data of two runs (synthetic here) yield the same training batches.
func TestSyntheticDataFollowsTheSeed(t *testing.T) {
	be, err := theBackend()
	if err != nil {
		t.Fatal(err)
	}
	first := func(seed int64) []float32 {
		train, _, err := syntheticData(be, 8, seed, 10)
		if err != nil {
			t.Fatal(err)
		}
		var all []float32
		for range 3 {
			_, x, y, err := train.Yield()
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, tensors.MustCopyFlatData[float32](x[0])[:5]...)
			all = append(all, float32(tensors.MustCopyFlatData[int64](y[0])[0]))
		}
		return all
	}
	if a, b := first(3), first(3); !slices.Equal(a, b) {
		t.Errorf("seed 3 gave two different streams")
	}
	if a, c := first(3), first(4); slices.Equal(a, c) {
		t.Errorf("seeds 3 and 4 gave the same stream")
	}
}
