// Package resnet is the small ResNets of the examples, built from GoMLX's own layers: layers.Convolution,
// batchnorm.New and graph.MeanPool. The input is any image batch [batch, height, width, channels]
// (channels last: 28×28×1 Fashion-MNIST, 32×32×3 CIFAR), so one model package serves every image example.
//
// Two families, as in the papers that define them:
//
//   - the CIFAR ResNet of He et al. (2016), "Deep Residual Learning for Image Recognition", section 4.2:
//     depth 6n+2; a 3×3 convolution to Width channels, then three stages of n basic blocks
//     (conv3×3-BN-ReLU-conv3×3-BN, added to the shortcut, then ReLU) with Width, 2·Width and 4·Width
//     channels, stride 2 at the first block of stages 2 and 3, global average pooling, a dense layer to
//     the classes. ResNet-20 is New(ctx, x, 10).Depth(20).Width(16); its 0.27 M parameters are those of the
//     paper with ShortcutZeros (option A).
//   - the Wide ResNet of Zagoruyko & Komodakis (2016), WRN-d-k: PreActivation(true), depth 6n+4,
//     a 3×3 convolution to 16 channels, pre-activation blocks (BN-ReLU-conv-BN-ReLU-conv) with Width(16·k),
//     2·Width and 4·Width channels, projection shortcuts, a final BN-ReLU.
//     WRN-16-4 is New(ctx, x, 10).PreActivation(true).Depth(16).Width(64): 2,748,890 parameters, the paper's 2.7 M.
//
// Every convolution is bias-free (the batch norm that follows has an offset) and He-initialized
// (initializers.HeFn). Batch norm is GoMLX's layer with PyTorch's constants (momentum 0.9, ε = 1e-5): in
// training it normalizes by the batch's mean and variance, the gradient flowing through both, and updates
// the moving averages that evaluation uses.
//
// Backends: the model needs the ops BatchNormForTraining, ConvGeneral's gradient (Reverse, Pad) and
// ReduceWindow, which XLA has (GOMLX_BACKEND=xla:cpu or xla:cuda) and GoMLX's pure-Go backend lacks.
// First-order methods (SGD, SAM, F-GR, B-GR) train it with GoMLX's own gradients; double backpropagation
// (gr.DoubleBackprop) differentiates the gradient of the convolutions, the batch norm and the pooling
// again, which GoMLX v0.26.0's gradients do not allow: call grgrad.Install() (package
// optimizers/grgrad; the examples' runner does by default) first. On Fashion-MNIST (ResNet-8, width 16,
// batch 128, XLA CPU) a DB step costs about 6× an SGD step and 3.8× an F-GR step (docs/experiments.md).
//
// Cost: forward FLOPs are dominated by the 3×3 convolutions, 2·9·C²·H·W per convolution of C channels on
// an H×W map; each stage halves H and W and doubles C, so the stages cost about the same.
package resnet

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/layers/batchnorm"
)

// Shortcut is how a block's shortcut matches the shape of its output when the stride or the number of
// channels changes.
type Shortcut int

const (
	// ShortcutProjection is a strided 1×1 convolution followed by batch norm (He et al.'s option B; for
	// PreActivation, a strided 1×1 convolution of the pre-activated input, as in Wide ResNets).
	ShortcutProjection Shortcut = iota

	// ShortcutZeros subsamples the input with the block's stride and appends zero channels (He et al.'s
	// option A, no parameters; the CIFAR ResNets of the paper).
	ShortcutZeros
)

// String names the shortcut ("projection" or "zeros").
func (s Shortcut) String() string {
	switch s {
	case ShortcutProjection:
		return "projection"
	case ShortcutZeros:
		return "zeros"
	}
	return fmt.Sprintf("Shortcut(%d)", int(s))
}

// Builder configures a ResNet; create it with New, set options, and call Done.
type Builder struct {
	ctx           *context.Context
	x             *graph.Node
	classes       int
	depth, width  int
	stages        int
	preActivation bool
	shortcut      Shortcut
	bnMomentum    float64
	bnEpsilon     float64
}

// New returns a builder of a ResNet on images x, shaped [batch, height, width, channels], with classes
// logits. The defaults are ResNet-20 of He et al.: Depth(20), Width(16), Stages(3),
// PreActivation(false), ShortcutZeros. Variables are created in ctx's scope (sub-scopes "stem",
// "stage<i>_block<j>", "final", "logits").
func New(ctx *context.Context, x *graph.Node, classes int) *Builder {
	return &Builder{ctx: ctx, x: x, classes: classes, depth: 20, width: 16, stages: 3, shortcut: ShortcutZeros,
		bnMomentum: 0.9, bnEpsilon: 1e-5}
}

// Depth sets the number of weighted layers: 6n+2 (n blocks per stage, 3 stages) for the plain ResNet,
// 6n+4 for PreActivation; with Stages(s) it is 2·s·n+2 (or +4). Default 20.
func (b *Builder) Depth(depth int) *Builder { b.depth = depth; return b }

// Width sets the channels of the first stage (16 in He et al.; 16·k for WRN-d-k); stage i has
// Width·2^i. Default 16.
func (b *Builder) Width(width int) *Builder { b.width = width; return b }

// Stages sets the number of stages (each after the first halves the height and width). Default 3.
func (b *Builder) Stages(stages int) *Builder { b.stages = stages; return b }

// PreActivation selects Wide-ResNet blocks (BN-ReLU before each convolution, a final BN-ReLU, projection
// shortcuts). Default false.
func (b *Builder) PreActivation(pre bool) *Builder { b.preActivation = pre; return b }

// Shortcut selects the shortcut where shapes change (ignored with PreActivation, which always projects).
// Default ShortcutZeros.
func (b *Builder) Shortcut(s Shortcut) *Builder { b.shortcut = s; return b }

// BatchNorm sets the momentum of batch norm's moving averages and its ε. Default 0.9 and 1e-5 (PyTorch's).
func (b *Builder) BatchNorm(momentum, epsilon float64) *Builder {
	b.bnMomentum, b.bnEpsilon = momentum, epsilon
	return b
}

// BlocksPerStage returns n, the number of blocks of each stage that Depth and Stages give, or an error
// naming the valid depths.
func (b *Builder) BlocksPerStage() (int, error) {
	extra := 2
	if b.preActivation {
		extra = 4
	}
	if b.stages < 1 {
		return 0, fmt.Errorf("resnet: Stages must be ≥ 1, got %d", b.stages)
	}
	if b.width < 1 {
		return 0, fmt.Errorf("resnet: Width must be ≥ 1, got %d", b.width)
	}
	if b.classes < 1 {
		return 0, fmt.Errorf("resnet: classes must be ≥ 1, got %d", b.classes)
	}
	if b.bnMomentum < 0 || b.bnMomentum >= 1 || b.bnEpsilon <= 0 {
		return 0, fmt.Errorf("resnet: BatchNorm(momentum=%g, epsilon=%g): want momentum in [0, 1) and epsilon > 0",
			b.bnMomentum, b.bnEpsilon)
	}
	per := 2 * b.stages
	n := (b.depth - extra) / per
	if n < 1 || n*per+extra != b.depth {
		return 0, fmt.Errorf("resnet: Depth %d is not %d·n+%d with n ≥ 1 (%d stages%s): valid depths are %d, %d, %d, ...",
			b.depth, per, extra, b.stages, map[bool]string{true: ", pre-activation", false: ""}[b.preActivation],
			per+extra, 2*per+extra, 3*per+extra)
	}
	return n, nil
}

// Done builds the model and returns the logits, shaped [batch, classes]. It panics with the error of
// BlocksPerStage for an invalid configuration, or if x is not [batch, height, width, channels].
func (b *Builder) Done() *graph.Node {
	n, err := b.BlocksPerStage()
	if err != nil {
		panic(err)
	}
	if b.x.Rank() != 4 {
		panic(fmt.Errorf("resnet: images must be [batch, height, width, channels], got shape %s", b.x.Shape()))
	}
	ctx := b.ctx.WithInitializer(initializers.HeFn(b.ctx))
	stem := b.width
	if b.preActivation {
		stem = 16 // Zagoruyko & Komodakis, table 1: a 3×3 convolution to 16 channels, whatever the width k
	}
	x := b.conv(ctx.In("stem"), b.x, stem, 3, 1)
	if !b.preActivation {
		x = activations.Relu(b.batchNorm(ctx.In("stem"), x))
	}
	for stage := range b.stages {
		channels := b.width << stage
		for block := range n {
			stride := 1
			if stage > 0 && block == 0 {
				stride = 2
			}
			bctx := ctx.Inf("stage%d_block%d", stage, block)
			if b.preActivation {
				x = b.preActBlock(bctx, x, channels, stride)
			} else {
				x = b.basicBlock(bctx, x, channels, stride)
			}
		}
	}
	if b.preActivation {
		x = activations.Relu(b.batchNorm(ctx.In("final"), x))
	}
	dims := x.Shape().Dimensions
	x = graph.MeanPool(x).WindowPerAxis(dims[1], dims[2]).Done() // global average pooling: [batch, 1, 1, C]
	x = graph.Reshape(x, dims[0], dims[3])
	return layers.Dense(b.ctx.In("logits"), x, true, b.classes)
}

// basicBlock is He et al.'s basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).
func (b *Builder) basicBlock(ctx *context.Context, x *graph.Node, channels, stride int) *graph.Node {
	shortcut := x
	if stride != 1 || x.Shape().Dimensions[3] != channels {
		if b.shortcut == ShortcutZeros {
			shortcut = zerosShortcut(x, channels, stride)
		} else {
			shortcut = b.batchNorm(ctx.In("shortcut"), b.conv(ctx.In("shortcut"), x, channels, 1, stride))
		}
	}
	y := b.conv(ctx.In("conv1"), x, channels, 3, stride)
	y = activations.Relu(b.batchNorm(ctx.In("conv1"), y))
	y = b.conv(ctx.In("conv2"), y, channels, 3, 1)
	y = b.batchNorm(ctx.In("conv2"), y)
	return activations.Relu(graph.Add(y, shortcut))
}

// preActBlock is the Wide-ResNet block: conv(relu(bn(conv(relu(bn(x)))))) + shortcut, the shortcut a 1×1
// convolution of relu(bn(x)) where the shape changes.
func (b *Builder) preActBlock(ctx *context.Context, x *graph.Node, channels, stride int) *graph.Node {
	pre := activations.Relu(b.batchNorm(ctx.In("bn1"), x))
	shortcut := x
	if stride != 1 || x.Shape().Dimensions[3] != channels {
		shortcut = b.conv(ctx.In("shortcut"), pre, channels, 1, stride)
	}
	y := b.conv(ctx.In("conv1"), pre, channels, 3, stride)
	y = activations.Relu(b.batchNorm(ctx.In("bn2"), y))
	y = b.conv(ctx.In("conv2"), y, channels, 3, 1)
	return graph.Add(y, shortcut)
}

// conv is layers.Convolution: k×k, bias-free, "same" padding, the given stride.
func (b *Builder) conv(ctx *context.Context, x *graph.Node, channels, k, stride int) *graph.Node {
	return layers.Convolution(ctx, x).Channels(channels).KernelSize(k).Strides(stride).PadSame().UseBias(false).Done()
}

// batchNorm is batchnorm.New over the channels (the last axis).
func (b *Builder) batchNorm(ctx *context.Context, x *graph.Node) *graph.Node {
	return batchnorm.New(ctx, x, -1).Momentum(b.bnMomentum).Epsilon(b.bnEpsilon).Done()
}

// zerosShortcut is option A: every stride-th pixel, then zero channels up to channels.
func zerosShortcut(x *graph.Node, channels, stride int) *graph.Node {
	if stride != 1 {
		x = graph.Slice(x, graph.AxisRange(), graph.AxisRange().Stride(stride), graph.AxisRange().Stride(stride),
			graph.AxisRange())
	}
	dims := x.Shape().Dimensions
	if extra := channels - dims[3]; extra > 0 {
		zeros := graph.Zeros(x.Graph(), shapes.Make(x.DType(), dims[0], dims[1], dims[2], extra))
		x = graph.Concatenate([]*graph.Node{x, zeros}, 3)
	}
	return x
}
