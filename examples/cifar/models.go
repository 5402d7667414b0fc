package main

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/layers/batchnorm"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/cifar/dconv"
	"github.com/gradreg/gradreg/examples/internal/resnet"
)

// Context hyperparameters read by the model function.
const (
	paramModel      = "cifar_model"       // mlp|cnn|resnet20|resnet56|wrn16-4|wrn28-10
	paramConv       = "cifar_conv"        // gomlx|dconv (resolved from -conv=auto before training)
	paramAugment    = "cifar_augment"     // random crop (4-pixel zero padding) + horizontal flip
	paramNumClasses = "cifar_num_classes" // 10 or 100
)

// modelNames lists the values of -model.
var modelNames = []string{"mlp", "cnn", "resnet20", "resnet56", "wrn16-4", "wrn28-10"}

// isCNN reports whether the model uses convolutions.
func isCNN(model string) bool { return model != "mlp" }

// modelList is modelNames joined by "|".
func modelList() string { return strings.Join(modelNames, "|") }

// checkModel validates a -model value.
func checkModel(model string) error {
	for _, m := range modelNames {
		if m == model {
			return nil
		}
	}
	return errors.Errorf("unknown -model (%s) %q: valid values are %s", paramModel, model, modelList())
}

// Per-channel mean and standard deviation of the CIFAR-10 training images (in [0, 1]).
var (
	channelMean = []float32{0.4914, 0.4822, 0.4465}
	channelStd  = []float32{0.2470, 0.2435, 0.2616}
)

// modelFn builds the model named by paramModel on images [batch, 32, 32, 3] in [0, 1]; it returns logits.
func modelFn(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
	x := inputs[0]
	g := x.Graph()
	if context.GetParamOr(ctx, paramAugment, true) && ctx.IsTraining(g) {
		x = augment(ctx, x)
	}
	mean := graph.Reshape(graph.ConvertDType(graph.Const(g, channelMean), x.DType()), 1, 1, 1, 3)
	std := graph.Reshape(graph.ConvertDType(graph.Const(g, channelStd), x.DType()), 1, 1, 1, 3)
	x = graph.Div(graph.Sub(x, mean), std)
	numClasses := context.GetParamOr(ctx, paramNumClasses, 10)
	model := context.GetParamOr(ctx, paramModel, "mlp")
	if model != "mlp" && context.GetParamOr(ctx, paramConv, "gomlx") == "gomlx" {
		return []*graph.Node{nativeModel(ctx, x, model, numClasses)}
	}
	m := &modelBuilder{}
	switch model {
	case "mlp":
		x = graph.Reshape(x, x.Shape().Dimensions[0], -1)
		for i, width := range []int{512, 256} {
			x = layers.Dense(ctx.Inf("dense_%d", i), x, true, width)
			x = activations.Relu(x)
		}
	case "cnn":
		x = m.smallCNN(ctx, x)
	case "resnet20", "resnet56":
		x = m.resNet(ctx, x, resNetDepth(model))
	case "wrn16-4", "wrn28-10":
		depth, width := wideResNetSize(model)
		x = m.wideResNet(ctx, x, depth, width)
	default:
		panic(checkModel(model))
	}
	return []*graph.Node{layers.Dense(ctx.In("logits"), x, true, numClasses)}
}

// resNetDepth is the depth of -model=resnet20 or resnet56.
func resNetDepth(model string) int { return map[string]int{"resnet20": 20, "resnet56": 56}[model] }

// wideResNetSize is the depth and width factor of -model=wrn<depth>-<width>.
func wideResNetSize(model string) (depth, width int) {
	_, _ = fmt.Sscanf(model, "wrn%d-%d", &depth, &width)
	return depth, width
}

// nativeModel is a convolutional model (-conv=gomlx) from GoMLX's own layers, returning logits: the ResNets
// and Wide ResNets of examples/internal/resnet (layers.Convolution, batchnorm.New, graph.MeanPool), and the
// small CNN with layers.Convolution, batchnorm.New and graph.MaxPool. Its gradients are GoMLX's; double
// backpropagation through it needs optimizers/grgrad's (installed by default, -gradients=grgrad).
func nativeModel(ctx *context.Context, x *graph.Node, model string, numClasses int) *graph.Node {
	switch model {
	case "cnn":
		hctx := ctx.WithInitializer(initializers.HeFn(ctx))
		for i, ch := range []int{16, 32} {
			cctx := hctx.Inf("conv_%d", i)
			x = layers.Convolution(cctx, x).Channels(ch).KernelSize(3).PadSame().UseBias(false).Done()
			x = activations.Relu(batchnorm.New(cctx.In("bn"), x, -1).Momentum(0.9).Epsilon(1e-5).Done())
			x = graph.MaxPool(x).Window(2).Done()
		}
		x = graph.Reshape(x, x.Shape().Dimensions[0], -1)
		x = activations.Relu(layers.Dense(ctx.In("dense"), x, true, 128))
		return layers.Dense(ctx.In("logits"), x, true, numClasses)
	case "resnet20", "resnet56":
		return resnet.New(ctx, x, numClasses).Depth(resNetDepth(model)).Width(16).Shortcut(resnet.ShortcutZeros).Done()
	case "wrn16-4", "wrn28-10":
		depth, width := wideResNetSize(model)
		return resnet.New(ctx, x, numClasses).PreActivation(true).Depth(depth).Width(16 * width).Done()
	}
	panic(checkModel(model))
}

// modelBuilder builds the convolutional models on dconv (-conv=dconv): im2col convolutions, pooling and
// batch norm from ops every backend has, the pure-Go one included, and twice differentiable with GoMLX's
// own gradients.
type modelBuilder struct{}

// convLayer is a bias-free k×k convolution to outChannels with stride and "same" padding, He-initialized.
func (m *modelBuilder) convLayer(ctx *context.Context, x *graph.Node, outChannels, k, stride int) *graph.Node {
	inChannels := x.Shape().Dimensions[3]
	kernel := ctx.WithInitializer(initializers.HeFn(ctx)).
		VariableWithShape("weights", shapes.Make(x.DType(), k, k, inChannels, outChannels)).
		ValueGraph(x.Graph())
	padding := (k - 1) / 2
	return dconv.Conv2D(x, kernel, stride, padding)
}

// globalAvgPool averages over the spatial axes: [batch, h, w, c] → [batch, c].
func (m *modelBuilder) globalAvgPool(x *graph.Node) *graph.Node {
	return dconv.GlobalAvgPool(x)
}

// batchNorm is batch normalization over the channels: GoMLX's layer keeps the moving averages (used in
// evaluation) and in training the output is recomputed here so that its gradient flows through the batch
// mean and variance, as in the standard formulation (GoMLX's differentiable path stops it there), with
// the same value, differentiable to any order with GoMLX's own gradients.
func (m *modelBuilder) batchNorm(ctx *context.Context, x *graph.Node) *graph.Node {
	ctx = ctx.In("bn")
	const eps = 1e-5
	y := batchnorm.New(ctx, x, -1).Momentum(0.9).Epsilon(eps).UseBackendInference(false).Done()
	if !ctx.IsTraining(x.Graph()) {
		return y
	}
	bnCtx := ctx.In("batch_normalization")
	scale := bnCtx.GetVariable("scale").ValueGraph(x.Graph())
	offset := bnCtx.GetVariable("offset").ValueGraph(x.Graph())
	mean := graph.ReduceAndKeep(x, graph.ReduceMean, 0, 1, 2)
	centered := graph.Sub(x, mean)
	variance := graph.ReduceAndKeep(graph.Square(centered), graph.ReduceMean, 0, 1, 2)
	normalized := graph.Div(centered, graph.Sqrt(graph.AddScalar(variance, eps)))
	c := x.Shape().Dimensions[3]
	return graph.Add(graph.Mul(normalized, graph.Reshape(scale, 1, 1, 1, c)), graph.Reshape(offset, 1, 1, 1, c))
}

// smallCNN is a small CNN for the pure-Go backend: conv16-pool-conv32-pool-dense128.
func (m *modelBuilder) smallCNN(ctx *context.Context, x *graph.Node) *graph.Node {
	for i, ch := range []int{16, 32} {
		x = m.convLayer(ctx.Inf("conv_%d", i), x, ch, 3, 1)
		x = activations.Relu(m.batchNorm(ctx.Inf("conv_%d", i), x))
		x = dconv.MaxPool(x, 2)
	}
	x = graph.Reshape(x, x.Shape().Dimensions[0], -1)
	return activations.Relu(layers.Dense(ctx.In("dense"), x, true, 128))
}

// resNet is the CIFAR ResNet of He et al. (2016), depth = 6n+2: a 3×3 conv to 16 channels, then three
// stages of n basic blocks with 16, 32 and 64 channels (stride 2 at the start of stages 2 and 3),
// shortcut option A (subsampling and zero channels, no parameters), global average pooling.
func (m *modelBuilder) resNet(ctx *context.Context, x *graph.Node, depth int) *graph.Node {
	n := (depth - 2) / 6
	x = m.convLayer(ctx.In("stem"), x, 16, 3, 1)
	x = activations.Relu(m.batchNorm(ctx.In("stem"), x))
	for stage, ch := range []int{16, 32, 64} {
		for block := range n {
			bctx := ctx.Inf("stage%d_block%d", stage, block)
			stride := 1
			if stage > 0 && block == 0 {
				stride = 2
			}
			shortcut := x
			if stride != 1 || x.Shape().Dimensions[3] != ch {
				shortcut = dconv.PadChannels(dconv.Subsample(x, stride), ch-x.Shape().Dimensions[3])
			}
			y := m.convLayer(bctx.In("conv1"), x, ch, 3, stride)
			y = activations.Relu(m.batchNorm(bctx.In("conv1"), y))
			y = m.convLayer(bctx.In("conv2"), y, ch, 3, 1)
			y = m.batchNorm(bctx.In("conv2"), y)
			x = activations.Relu(graph.Add(y, shortcut))
		}
	}
	return m.globalAvgPool(x)
}

// wideResNet is WRN-depth-width of Zagoruyko & Komodakis (2016), depth = 6n+4: pre-activation wide basic
// blocks with 16·width, 32·width and 64·width channels, 1×1 convolution shortcuts where the shape
// changes, no dropout.
func (m *modelBuilder) wideResNet(ctx *context.Context, x *graph.Node, depth, width int) *graph.Node {
	n := (depth - 4) / 6
	x = m.convLayer(ctx.In("stem"), x, 16, 3, 1)
	for stage, ch := range []int{16 * width, 32 * width, 64 * width} {
		for block := range n {
			bctx := ctx.Inf("stage%d_block%d", stage, block)
			stride := 1
			if stage > 0 && block == 0 {
				stride = 2
			}
			pre := activations.Relu(m.batchNorm(bctx.In("bn1"), x))
			shortcut := x
			if stride != 1 || x.Shape().Dimensions[3] != ch {
				shortcut = m.convLayer(bctx.In("shortcut"), pre, ch, 1, stride)
			}
			y := m.convLayer(bctx.In("conv1"), pre, ch, 3, stride)
			y = activations.Relu(m.batchNorm(bctx.In("bn2"), y))
			y = m.convLayer(bctx.In("conv2"), y, ch, 3, 1)
			x = graph.Add(y, shortcut)
		}
	}
	x = activations.Relu(m.batchNorm(ctx.In("final"), x))
	return m.globalAvgPool(x)
}

// augment applies, per image, a random crop of the image zero-padded by 4 pixels on each side and a
// random horizontal flip. It is a single Gather (with a mask for the padding), so it runs on every backend.
func augment(ctx *context.Context, x *graph.Node) *graph.Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w := dims[0], dims[1], dims[2]
	const pad = 4
	u := ctx.RandomUniform(g, shapes.Make(dtypes.Float32, b, 3))
	shift := func(col int) *graph.Node { // integer in [-pad, pad], shaped [b, 1, 1]
		s := graph.Floor(graph.MulScalar(graph.Slice(u, graph.AxisRange(), graph.AxisElem(col)), 2*pad+1))
		return graph.Reshape(graph.ConvertDType(graph.AddScalar(s, -pad), dtypes.Int32), b, 1, 1)
	}
	dy, dx := shift(0), shift(1)
	flip := graph.BroadcastToDims(graph.Reshape(graph.GreaterThan(graph.Slice(u, graph.AxisRange(), graph.AxisElem(2)),
		graph.Scalar(g, dtypes.Float32, 0.5)), b, 1, 1), b, h, w)
	gridShape := shapes.Make(dtypes.Int32, b, h, w)
	bi := graph.Iota(g, gridShape, 0)
	row := graph.Add(graph.Iota(g, gridShape, 1), dy)
	col := graph.Iota(g, gridShape, 2)
	col = graph.Where(flip, graph.SubScalar(graph.Neg(col), -(w-1)), col) // w-1-col
	col = graph.Add(col, dx)
	zero := graph.ScalarZero(g, dtypes.Int32)
	valid := graph.LogicalAnd(
		graph.LogicalAnd(graph.GreaterOrEqual(row, zero), graph.LessThan(row, graph.Scalar(g, dtypes.Int32, h))),
		graph.LogicalAnd(graph.GreaterOrEqual(col, zero), graph.LessThan(col, graph.Scalar(g, dtypes.Int32, w))))
	row = graph.Clip(row, zero, graph.Scalar(g, dtypes.Int32, h-1))
	col = graph.Clip(col, zero, graph.Scalar(g, dtypes.Int32, w-1))
	indices := graph.Stack([]*graph.Node{bi, row, col}, -1) // [b, h, w, 3]
	out := graph.Gather(x, indices)                         // [b, h, w, c]
	mask := graph.ConvertDType(graph.InsertAxes(valid, -1), x.DType())
	return graph.StopGradient(graph.Mul(out, mask))
}
