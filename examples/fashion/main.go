// Command fashion trains a small ResNet (examples/internal/resnet: GoMLX's layers.Convolution,
// batchnorm.New and graph.MeanPool) on Fashion-MNIST with SGD + momentum, a cosine learning-rate schedule,
// weight decay and host-side augmentation (random crop of the image zero-padded by 2 pixels, horizontal
// flip), optionally with gradient regularization (any method of package gr) or the SAM family, and compares
// methods over paired seeds. It is model + data + a call of the shared runner (examples/internal/run),
// which owns the flags, the training loop, checkpoints, tables and plots.
//
// The data are Debian's package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, files in
// /usr/share/datasets/fashion-mnist; -data=DIR reads them elsewhere); the four files are verified
// completely before training. The model needs XLA (the pure-Go backend lacks batch norm and the
// convolution's gradient):
//
//	export PJRT_PLUGIN_LIBRARY_PATH=/root/.cache/gradreg/xla-cpu GOMLX_BACKEND=xla:cpu
//	go run ./examples/fashion                                   # SGD vs F-GR γ = 0.01, lr 0.2, 3 seeds (docs/experiments.md)
//	go run ./examples/fashion -compare=sgd,forward,db,sam -seeds=5
//	go run ./examples/fashion -method=forward -gamma=0.05 -label_noise=0.4 -checkpoint=/tmp/fashion-fgr
//	go run ./examples/fashion -method=sgd -steps=5              # a smoke test
//
// Every flag of the runner is listed by -h.
package main

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/resnet"
	"github.com/gradreg/gradreg/examples/internal/run"
)

// Context hyperparameters of the model (flags -depth, -width, -augment); the data's are those of
// mnistdata.Fashion (-train_size, -label_noise, -data).
const (
	paramDepth   = "fashion_depth"   // ResNet depth 6n+2
	paramWidth   = "fashion_width"   // channels of the first stage (then 2×, 4×)
	paramAugment = "fashion_augment" // random crop (2-pixel zero padding) + horizontal flip, on the host
)

// Defaults of the model and the data: see docs/experiments.md for why (the cost of a step on XLA CPU).
const (
	defaultDepth     = 8
	defaultWidth     = 16
	defaultTrainSize = 2000
	augmentPad       = 2
)

// Per-pixel mean and standard deviation of the 60,000 Fashion-MNIST training images (in [0, 1]).
const pixelMean, pixelStd = 0.2860, 0.3530

// example is this command for the runner.
var example = &run.Example{
	Name: "fashion",
	Settings: append([]run.Setting{
		{Key: paramDepth, Flag: "depth", Default: defaultDepth, Usage: "ResNet depth 6n+2 (8, 14, 20, ...): " +
			"n basic blocks in each of 3 stages"},
		{Key: paramWidth, Flag: "width", Default: defaultWidth, Usage: "channels of the first stage (the second " +
			"and third have 2× and 4×)"},
		{Key: paramAugment, Flag: "augment", Default: true, Usage: "augment the training images on the host: a " +
			"random crop of the image zero-padded by 2 pixels and a horizontal flip, fixed by the seed and the step"},
	}, mnistdata.Fashion.Settings(defaultTrainSize, 0)...),
	Defaults: map[string]any{
		run.ParamOptimizer:    "momentum",
		run.ParamMomentum:     0.9,
		run.ParamWeightDecay:  5e-4,
		run.ParamLearningRate: 0.2, // chosen on validation data with clean labels (0.02 with -label_noise=0.4 -augment=false)
		run.ParamSchedule:     "cosine",
		run.ParamEpochs:       20,
		run.ParamBatch:        128,
		run.ParamEvalEvery:    80, // a test evaluation (10,000 images) costs about 25 SGD steps
	},
	DefaultMethod:  "sgd",
	DefaultCompare: "sgd,forward:gr_gamma=0.01", // F-GR's γ chosen on validation data with clean labels
	DefaultSeeds:   3,
	Model:          modelFn,
	Loss:           mnistdata.CrossEntropy,
	Data:           data,
	ExplainError:   explainError,
}

func main() { run.Main(example) }

// modelFn is the ResNet on the images [batch, 784] reshaped to [batch, 28, 28, 1] and standardized.
func modelFn(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
	x := inputs[0]
	x = graph.Reshape(x, x.Shape().Dimensions[0], mnistdata.Height, mnistdata.Width, 1)
	x = graph.MulScalar(graph.AddScalar(x, -pixelMean), 1/pixelStd)
	depth := context.GetParamOr(ctx, paramDepth, defaultDepth)
	width := context.GetParamOr(ctx, paramWidth, defaultWidth)
	return []*graph.Node{resnet.New(ctx.In("resnet"), x, 10).Depth(depth).Width(width).Done()}
}

// data checks the model's settings, loads mnistdata.Fashion's datasets, checks the backend, and augments
// the training images per -augment.
func data(be backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
	depth := context.GetParamOr(ctx, paramDepth, defaultDepth)
	width := context.GetParamOr(ctx, paramWidth, defaultWidth)
	if _, err := resnet.New(ctx, nil, 10).Depth(depth).Width(width).BlocksPerStage(); err != nil {
		return nil, errors.WithMessagef(err, "-depth (%s) / -width (%s)", paramDepth, paramWidth)
	}
	d, err := mnistdata.Fashion.Data(ctx, seed)
	if err != nil {
		return nil, err
	}
	if strings.Contains(be.Name(), "SimpleGo") {
		return nil, errors.Errorf("examples/fashion needs XLA: GoMLX's pure-Go backend (%s) lacks the ops "+
			"BatchNorm and Reverse/Pad that the ResNet and its gradient use; set "+
			"PJRT_PLUGIN_LIBRARY_PATH to XLA's CPU plugin and GOMLX_BACKEND=xla:cpu (or -backend=xla:cpu)", be.Name())
	}
	if context.GetParamOr(ctx, paramAugment, true) {
		if _, err := d.Train.(*mnistdata.TrainDataset).Augment(augmentPad, true); err != nil {
			return nil, err
		}
		d.Description += "; augmented (crop pad 2, flip)"
	}
	d.Description += "; " + describeModel(depth, width)
	return d, nil
}

// describeModel names the ResNet, e.g. "ResNet-8, widths 16-32-64".
func describeModel(depth, width int) string {
	return fmt.Sprintf("ResNet-%d, widths %d-%d-%d", depth, width, 2*width, 4*width)
}

// explainError adds what to do to the errors a user can hit.
func explainError(err error) error {
	if strings.Contains(err.Error(), "not implemented in SimpleGo") {
		return errors.WithMessage(err, "the pure-Go backend lacks an op the ResNet needs: use XLA "+
			"(GOMLX_BACKEND=xla:cpu with PJRT_PLUGIN_LIBRARY_PATH set, or xla:cuda)")
	}
	return err
}
