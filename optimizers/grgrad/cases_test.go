package grgrad_test

import (
	"testing"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

var (
	convOps = []backends.OpType{backends.OpTypeConvGeneral}
	groups  = "GoMLX v0.26.0's pure-Go ConvGeneral panics with channel or batch groups (index out of range)"
	padOps  = []backends.OpType{backends.OpTypePad}
)

// nhwc is the axes of a 2D convolution with channels last (GoMLX's layers' default).
var nhwc = ConvolveAxesConfig{InputBatch: 0, InputChannels: 3, InputSpatial: []int{1, 2},
	KernelInputChannels: 2, KernelOutputChannels: 3, KernelSpatial: []int{0, 1},
	OutputBatch: 0, OutputChannels: 3, OutputSpatial: []int{1, 2}}

func conv(strides []int, paddings [][2]int, inDil, kDil []int, groups, batchGroups int) func(in []*Node) *Node {
	return func(in []*Node) *Node {
		return ConvGeneral(in[0], in[1], nhwc, strides, paddings, inDil, kDil, groups, batchGroups)
	}
}

func convCases() []opCase {
	return []opCase{
		// As layers.Convolution(...).Strides(2).PadSame() builds it.
		{name: "Convolve strides 2 PadSame", dims: [][]int{{2, 5, 6, 2}, {3, 3, 2, 3}}, gomlx: true, needs: convOps,
			fn: func(in []*Node) *Node { return Convolve(in[0], in[1]).Strides(2).PadSame().Done() }},
		{name: "Convolve 1x1 strides 2 (ResNet shortcut)", dims: [][]int{{2, 4, 4, 2}, {1, 1, 2, 3}}, gomlx: true, needs: convOps,
			fn: func(in []*Node) *Node { return Convolve(in[0], in[1]).Strides(2).NoPadding().Done() }},
		{name: "Convolve kernel dilation 2 PadSame", dims: [][]int{{1, 6, 5, 2}, {3, 2, 2, 2}}, needs: convOps,
			fn: func(in []*Node) *Node { return Convolve(in[0], in[1]).Strides(1).Dilations(2).PadSame().Done() }},
		// Strides 2 without padding leave the last row unread: the transposes get negative paddings.
		{name: "ConvGeneral strides 2 input not covered", dims: [][]int{{1, 6, 7, 1}, {3, 3, 1, 2}}, needs: convOps,
			fn: conv([]int{2, 3}, nil, nil, nil, 1, 1)},
		{name: "ConvGeneral input dilation 2, asymmetric padding", dims: [][]int{{1, 3, 4, 2}, {2, 3, 2, 2}}, needs: convOps,
			fn: conv([]int{1, 2}, [][2]int{{1, 0}, {2, 1}}, []int{2, 2}, []int{1, 1}, 1, 1)},
		{name: "ConvGeneral strides, input and kernel dilation", dims: [][]int{{1, 4, 4, 1}, {2, 2, 1, 2}}, needs: convOps,
			fn: conv([]int{2, 1}, [][2]int{{0, 1}, {1, 1}}, []int{2, 1}, []int{1, 2}, 1, 1)},
		{name: "ConvGeneral channel groups 2", dims: [][]int{{2, 4, 4, 4}, {3, 3, 2, 4}}, gomlx: true, needs: convOps, notOnGo: groups,
			fn: conv([]int{1, 1}, [][2]int{{1, 1}, {1, 1}}, nil, nil, 2, 1)},
		{name: "ConvGeneral batch groups 2", dims: [][]int{{4, 4, 3, 2}, {2, 2, 2, 4}}, needs: convOps, notOnGo: groups,
			fn: conv([]int{1, 1}, [][2]int{{0, 1}, {1, 0}}, nil, nil, 1, 2)},
		{name: "ConvGeneral 1D channels first", dims: [][]int{{2, 3, 7}, {4, 3, 3}}, gomlx: true, needs: convOps,
			fn: func(in []*Node) *Node {
				a := ConvolveAxesConfig{InputBatch: 0, InputChannels: 1, InputSpatial: []int{2},
					KernelInputChannels: 1, KernelOutputChannels: 0, KernelSpatial: []int{2},
					OutputBatch: 0, OutputChannels: 1, OutputSpatial: []int{2}}
				return ConvGeneral(in[0], in[1], a, []int{2}, [][2]int{{1, 1}}, nil, nil, 1, 1)
			}},
	}
}

func otherCases() []opCase {
	positive := func(in []*tensors.Tensor) {
		tensors.MustMutableFlatData(in[0], func(d []float64) {
			for i := range d {
				d[i] = 0.5 + d[i]*d[i]
			}
		})
	}
	zeros := func(in []*tensors.Tensor) {
		tensors.MustMutableFlatData(in[0], func(d []float64) { d[1], d[5], d[6], d[13] = 0, 0, 0, 0 })
	}
	pool := []backends.OpType{backends.OpTypeReduceWindow, backends.OpTypeSelectAndScatterMax, backends.OpTypePad}
	return []opCase{
		{name: "Pad interior and negative", dims: [][]int{{3, 4}}, needs: padOps,
			fn: func(in []*Node) *Node {
				return Square(Pad(in[0], Const(in[0].Graph(), 0.5), PadAxis{Start: 1, End: -1, Interior: 2}, PadAxis{Start: -1, End: 2}))
			}},
		{name: "Slice strided", dims: [][]int{{5, 6}}, gomlx: true,
			fn: func(in []*Node) *Node {
				return Square(Slice(in[0], AxisRange(1, 5).Stride(2), AxisRange(0, 6).Stride(3)))
			}},
		{name: "Concatenate and Slice", dims: [][]int{{3, 4}, {3, 2}},
			fn: func(in []*Node) *Node {
				c := Concatenate([]*Node{in[0], Square(in[1])}, 1)
				return Mul(Slice(c, AxisRange(), AxisRange(2, 6)), Slice(c, AxisRange(), AxisRange(0, 4)))
			}},
		{name: "Reverse", dims: [][]int{{3, 4, 2}}, needs: []backends.OpType{backends.OpTypeReverse},
			fn: func(in []*Node) *Node { return Mul(Reverse(in[0], 0, 2), in[0]) }},
		{name: "Rsqrt", dims: [][]int{{7}}, prepare: positive, fn: func(in []*Node) *Node { return Rsqrt(in[0]) }},
		{name: "Expm1", dims: [][]int{{7}}, fn: func(in []*Node) *Node { return Expm1(in[0]) }},
		{name: "Clamp scalar bounds", dims: [][]int{{9}},
			fn: func(in []*Node) *Node {
				g := in[0].Graph()
				return Mul(Clamp(Const(g, -0.4), in[0], Const(g, 0.5)), in[0])
			}},
		{name: "Clamp tensor bounds", dims: [][]int{{6}, {6}, {6}},
			fn: func(in []*Node) *Node {
				lo, hi := MulScalar(Abs(in[1]), -1), Abs(in[2])
				return Square(Clamp(lo, in[0], hi))
			}},
		{name: "ReduceProduct with zeros", dims: [][]int{{3, 5, 2}}, prepare: zeros,
			fn: func(in []*Node) *Node { return ReduceMultiply(in[0], 1) }},
		{name: "ReduceProduct all axes", dims: [][]int{{2, 3}}, fn: func(in []*Node) *Node { return ReduceAllMultiply(in[0]) }},
		{name: "Round Floor Ceil Sign", dims: [][]int{{8}},
			fn: func(in []*Node) *Node {
				x := MulScalar(in[0], 3)
				return Mul(in[0], Add(Add(Round(x), Floor(x)), Add(Ceil(x), Sign(x))))
			}},
		{name: "MaxPool 2x2", dims: [][]int{{2, 4, 4, 2}}, gomlx: true, needs: pool,
			fn: func(in []*Node) *Node { return Square(MaxPool(in[0]).Window(2).Done()) }},
		{name: "MaxPool 3x3 strides 2 PadSame", dims: [][]int{{1, 5, 6, 2}}, gomlx: true, needs: pool,
			fn: func(in []*Node) *Node { return Square(MaxPool(in[0]).Window(3).Strides(2).PadSame().Done()) }},
		{name: "MinPool 2x3 strides 1", dims: [][]int{{1, 4, 5, 1}}, gomlx: true,
			needs: []backends.OpType{backends.OpTypeReduceWindow, backends.OpTypeSelectAndScatterMin, backends.OpTypePad},
			fn:    func(in []*Node) *Node { return Square(MinPool(in[0]).WindowPerAxis(2, 3).Strides(1).Done()) }},
		{name: "MeanPool 2x2 (gradient: Pad)", dims: [][]int{{1, 4, 4, 2}}, gomlx: true,
			needs: []backends.OpType{backends.OpTypeReduceWindow, backends.OpTypePad},
			fn:    func(in []*Node) *Node { return Square(MeanPool(in[0]).Window(2).Done()) }},
		{name: "BatchNormForTraining", dims: [][]int{{3, 2, 4}, {4}, {4}}, gomlx: true,
			needs: []backends.OpType{backends.OpTypeBatchNormForTraining},
			fn: func(in []*Node) *Node {
				y, _, _ := InternalBatchNormForTraining(in[0], in[1], in[2], 1e-3, -1)
				return Square(y)
			}},
		// GoMLX's gradient ignores what flows back through the batch mean and variance (batchnorm.New
		// only feeds them to its moving averages, under StopGradient); grgrad's includes it.
		{name: "BatchNormForTraining, mean and variance used", dims: [][]int{{3, 2, 4}, {4}, {4}},
			needs: []backends.OpType{backends.OpTypeBatchNormForTraining},
			fn: func(in []*Node) *Node {
				y, mean, variance := InternalBatchNormForTraining(in[0], in[1], in[2], 1e-3, -1)
				return Concatenate([]*Node{Reshape(Square(y), -1), mean, Square(variance)}, 0)
			}},
	}
}

// Each op's gradient against central differences of the loss (and GoMLX's gradient where it has
// one), and its second derivatives against differences of gradients.
func TestConvGeneralGradients(t *testing.T) { runOpCases(t, convCases()) }

func TestOpGradients(t *testing.T) { runOpCases(t, otherCases()) }
