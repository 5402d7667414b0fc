// Command cifar trains ResNets, WideResNets, a small CNN or an MLP on CIFAR-10/100 with SGD + momentum,
// a cosine learning-rate schedule and weight decay, optionally with gradient regularization (any method of
// package gr), the SAM family or flooding, as in Karakida et al. (ICML 2023). It downloads the data with
// GoMLX's examples/cifar package (checksum-verified) unless it is already in -data. It is model + data + a
// call of the shared runner (examples/internal/run): flags, training loop, checkpoints, curves and
// -compare/-seeds tables come from there.
//
//	go run ./examples/cifar -model=mlp -steps=200                       # any backend, the pure-Go one included
//	GOMLX_BACKEND=xla:cuda go run ./examples/cifar -model=resnet20 -method=forward -gamma=0.05 -epsilon=0.05 -epochs=200
//
// See examples/cifar/README.md for the paper's setting on a GPU.
package main

import (
	"github.com/gomlx/gomlx/pkg/ml/train/losses"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// example is this command for the runner; its defaults are the paper's setting.
var example = &run.Example{
	Name: "cifar",
	Settings: []run.Setting{
		{Key: paramDataset, Flag: "dataset", Default: "c10", Usage: "c10 (CIFAR-10) or c100 (CIFAR-100)"},
		{Key: paramData, Flag: "data", Default: defaultDataDir(), Usage: "data directory: the dataset is " +
			"downloaded there (checksum-verified) if missing"},
		{Key: paramModel, Flag: "model", Default: "resnet20", Usage: "model: " + modelList() +
			" (mlp runs anywhere; the CNNs need XLA or -conv=dconv)"},
		{Key: paramConv, Flag: "conv", Default: "auto", Usage: "convolutional models on: gomlx (GoMLX's own layers: " +
			"layers.Convolution, batchnorm.New, pooling; XLA only; DB with -gradients=grgrad), dconv (im2col, every " +
			"backend) or auto (dconv on the pure-Go backend, else gomlx)"},
		{Key: paramAugment, Flag: "augment", Default: true, Usage: "random crop (4-pixel padding) and horizontal flip"},
		{Key: paramEvalExamples, Flag: "eval_examples", Default: 0, Usage: "evaluate on the first this many test " +
			"images (0: all 10 000)"},
		{Key: paramSynthetic, Flag: "synthetic", Default: false, Usage: "random CIFAR-shaped data instead of the " +
			"dataset (timing only; nothing is downloaded)"},
	},
	Defaults: map[string]any{
		run.ParamOptimizer:    "momentum",
		run.ParamMomentum:     0.9,
		run.ParamWeightDecay:  5e-4,
		run.ParamSchedule:     "cosine",
		run.ParamLearningRate: 0.1,
		run.ParamBatch:        128,
		run.ParamEpochs:       200,
		run.ParamSaveEvery:    1000,
	},
	DefaultMethod: "sgd",
	DefaultSeed:   42,
	Model:         modelFn,
	Loss:          losses.SparseCategoricalCrossEntropyLogits,
	Data:          data,
	NewBackend:    theBackend,
	ExplainError:  explainError,
}

func main() { run.Main(example) }
