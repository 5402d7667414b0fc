// Command quickstart shows what gradient regularization does, in seconds and offline: it trains the same
// small MLP twice on generated data with noisy labels, with plain SGD and with F-GR (gr.ForwardDifference),
// and prints the test loss and accuracy of both.
//
// The data: points of 4 Gaussian classes in 16 dimensions (unit noise around means drawn from N(0, I));
// 40 % of the 256 training labels are replaced by a random other class, the 2048 test labels are clean.
// In 500 steps SGD fits nearly every training label, the wrong ones too, and its test loss grows; F-GR's
// penalty (γ/2)‖∇L‖² fits fewer of them and ends with a lower test loss and a higher test accuracy. Usage:
//
//	go run ./examples/quickstart [-steps=500] [-gamma=2] [-epsilon=0.05] [-lr=0.1] [-noise=0.4] [-seed=1]
//
// The measured outcome over seeds is in docs/examples.md. The backend is grbackend.New's choice
// ($GOMLX_BACKEND, else an installed XLA plugin, else pure Go).
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/datasets"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

var (
	flagSteps   = flag.Int("steps", 500, "training steps per method")
	flagGamma   = flag.Float64("gamma", 2, "GR weight γ (≥ 0)")
	flagEpsilon = flag.Float64("epsilon", 0.05, "finite-difference step ε (> 0)")
	flagLR      = flag.Float64("lr", 0.1, "SGD learning rate (> 0)")
	flagNoise   = flag.Float64("noise", 0.4, "fraction of training labels replaced by a wrong class, in [0, 1)")
	flagSeed    = flag.Uint64("seed", 1, "data and initialization seed")
)

const (
	inputDim  = 16
	classes   = 4
	hidden    = 128
	trainSize = 256
	testSize  = 2048
	batchSize = 32
)

// makeData draws n points of the classes (means fixed by seed, unit Gaussian noise around them) with their
// labels, a fraction noise of them replaced by a random other class.
func makeData(seed uint64, n int, noise float64, rng *rand.Rand) (x [][]float32, y [][]int32) {
	teacher := rand.New(rand.NewPCG(seed, 99))
	means := make([][]float64, classes)
	for c := range means {
		means[c] = make([]float64, inputDim)
		for k := range means[c] {
			means[c][k] = teacher.NormFloat64()
		}
	}
	for range n {
		c := rng.IntN(classes)
		xi := make([]float32, inputDim)
		for k := range xi {
			xi[k] = float32(means[c][k] + rng.NormFloat64())
		}
		label := c
		if rng.Float64() < noise {
			label = (c + 1 + rng.IntN(classes-1)) % classes
		}
		x, y = append(x, xi), append(y, []int32{int32(label)})
	}
	return
}

func modelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	h := activations.Relu(layers.DenseWithBias(ctx.In("hidden"), inputs[0], hidden))
	return []*Node{layers.DenseWithBias(ctx.In("output"), h, classes)}
}

// result is what one training measured.
type result struct {
	name                string
	testLoss, testAcc   float64
	trainAcc, sharpness float64
	elapsed             time.Duration
}

// trainOne trains one model with opt and measures it.
func trainOne(backend backends.Backend, name string, opt optimizers.Interface, trainDS, trainEval,
	testDS train.Dataset) (*result, error) {
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(int64(*flagSeed)); err != nil { // Same initialization for every method.
		return nil, err
	}
	start := time.Now()
	trainer := gr.NewTrainer(backend, ctx, modelFn, losses.SparseCategoricalCrossEntropyLogits, opt, nil,
		[]metrics.Interface{metrics.NewSparseCategoricalAccuracy("Accuracy", "acc")})
	index := func(name string) int {
		return slices.IndexFunc(trainer.EvalMetrics(), func(m metrics.Interface) bool { return m.Name() == name })
	}
	lossAt, accAt := index("Mean Loss"), index("Accuracy")
	loop := train.NewLoop(trainer)
	fmt.Printf("training %s, %d steps...\n", name, *flagSteps)
	trainDS.Reset()
	if _, err := loop.RunSteps(trainDS, *flagSteps); err != nil {
		return nil, fmt.Errorf("training %s: %v", name, err)
	}
	r := &result{name: name, elapsed: time.Since(start)}
	for _, e := range []struct {
		ds        train.Dataset
		loss, acc *float64
	}{{testDS, &r.testLoss, &r.testAcc}, {trainEval, nil, &r.trainAcc}} {
		e.ds.Reset()
		m, err := trainer.Eval(e.ds)
		if err != nil {
			return nil, fmt.Errorf("evaluating %s: %v", name, err)
		}
		if e.loss != nil {
			*e.loss = scalar(m[lossAt])
		}
		*e.acc = scalar(m[accAt])
	}
	return r, nil
}

func scalar(t *tensors.Tensor) float64 { return shapes.ConvertTo[float64](t.Value()) }

// checkFlags returns an error naming the first flag out of its range.
func checkFlags() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case *flagSteps <= 0:
		return fmt.Errorf("-steps must be > 0, got %d", *flagSteps)
	case !finite(*flagLR) || *flagLR <= 0:
		return fmt.Errorf("-lr must be a finite number > 0, got %g", *flagLR)
	case !finite(*flagGamma) || *flagGamma < 0:
		return fmt.Errorf("-gamma must be a finite number ≥ 0, got %g", *flagGamma)
	case !finite(*flagEpsilon) || *flagEpsilon <= 0:
		return fmt.Errorf("-epsilon must be a finite number > 0, got %g", *flagEpsilon)
	case !(*flagNoise >= 0 && *flagNoise < 1):
		return fmt.Errorf("-noise must be in [0, 1), got %g", *flagNoise)
	}
	return nil
}

func main() {
	flag.Parse()
	if flag.NArg() > 0 {
		fail(2, fmt.Errorf("unexpected arguments %q: flags only", flag.Args()))
	}
	if err := checkFlags(); err != nil {
		fail(2, err)
	}
	// Optional, once, before any graph is built: GoMLX then differentiates matrix products into matrix
	// products (the same gradients, less CPU per training step of an MLP; see package grgrad).
	// $GRADREG_GRADIENTS=gomlx keeps GoMLX's own (grbackend.New applies it).
	if os.Getenv(grbackend.GradientsEnvVar) == "" {
		if err := grgrad.Install(); err != nil {
			fail(1, err)
		}
	}
	backend, err := grbackend.New()
	if err != nil {
		fail(2, err)
	}
	rng := rand.New(rand.NewPCG(*flagSeed, 1))
	xTrain, yTrain := makeData(*flagSeed, trainSize, *flagNoise, rng)
	xTest, yTest := makeData(*flagSeed, testSize, 0, rng)
	trainDS, err := datasets.InMemoryFromData(backend, "train", []any{xTrain}, []any{yTrain})
	if err != nil {
		fail(1, err)
	}
	trainEval := trainDS.Copy().BatchSize(trainSize, false)
	// The points are drawn in random order already; GoMLX v0.26.0's InMemoryDataset.Shuffle draws from
	// math/rand's global source, not from WithRand's, so it would make runs differ: batches in data order.
	trainDS.BatchSize(batchSize, true).Infinite(true)
	testDS, err := datasets.InMemoryFromData(backend, "test", []any{xTest}, []any{yTest})
	if err != nil {
		fail(1, err)
	}
	testDS.BatchSize(testSize, false)

	newSGD := func() optimizers.Interface {
		return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(*flagLR).Done()
	}
	var results []*result
	for _, m := range []struct {
		name string
		opt  optimizers.Interface
	}{
		{"SGD", newSGD()},
		{fmt.Sprintf("F-GR (γ=%g, ε=%g)", *flagGamma, *flagEpsilon),
			gr.ForwardDifference(newSGD()).Gamma(*flagGamma).Epsilon(*flagEpsilon).Done()},
	} {
		r, err := trainOne(backend, m.name, m.opt, trainDS, trainEval, testDS)
		if err != nil {
			fail(1, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\n%d training points, %.0f%% of their labels wrong; %d clean test points:\n", trainSize,
		100**flagNoise, testSize)
	fmt.Printf("%-22s %10s %14s %15s %8s\n", "method", "test loss", "test accuracy", "train accuracy", "time")
	for _, r := range results {
		fmt.Printf("%-22s %10.4f %13.1f%% %14.1f%% %8s\n", r.name, r.testLoss, 100*r.testAcc, 100*r.trainAcc,
			r.elapsed.Round(100*time.Millisecond))
	}
	fmt.Println("(train accuracy is against the noisy labels: 100% would be every label memorized, the wrong ones too)")
}

// fail prints err without a stack trace and exits with code.
func fail(code int, err error) {
	fmt.Fprintf(os.Stderr, "quickstart: %v\n", err)
	os.Exit(code)
}
