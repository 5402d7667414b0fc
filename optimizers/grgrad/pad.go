package grgrad

import (
	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// padVJP is the gradient of y = Pad(x, fill, config) (JAX's _pad_transpose): ∂x is v with the padding
// taken off (a negative padding, a crop, is put back as zeros) and every (interior+1)-th element kept;
// ∂fill is the sum of the rest of v, Σv − Σ∂x.
func padVJP(node, v *Node, _ shapes.Shape) []*Node {
	config, err := readPadAxes(node, "axesConfig")
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of Pad")) // unreachable: Install checked the fields
	}
	x, fill := node.Inputs()[0], node.Inputs()[1]
	dx := unpad(v, x.Shape(), config)
	var dFill *Node
	if fill.Type() != NodeTypeConstant {
		dFill = Sub(ReduceAllSum(v), ReduceAllSum(dx))
	}
	return []*Node{dx, dFill}
}

// unpad undoes Pad(x, ·, config) on v, shaped like Pad's output: the elements of x, of shape xShape.
func unpad(v *Node, xShape shapes.Shape, config []backends.PadAxis) *Node {
	rank := v.Rank()
	zeros := make([]backends.PadAxis, rank)
	anyNegative := false
	for axis, c := range config {
		if c.Start < 0 || c.End < 0 {
			anyNegative = true
			zeros[axis] = backends.PadAxis{Start: max(-c.Start, 0), End: max(-c.End, 0)}
		}
	}
	if anyNegative {
		v = Pad(v, ScalarZero(v.Graph(), v.DType()), zeros...)
	}
	specs := make([]SliceAxisSpec, rank)
	identity := true
	for axis := range specs {
		var c backends.PadAxis
		if axis < len(config) {
			c = config[axis]
		}
		start, stride := max(c.Start, 0), c.Interior+1
		end := start + dilate(xShape.Dimensions[axis], stride)
		specs[axis] = AxisRange(start, end).Stride(stride)
		if start != 0 || stride != 1 || end != v.Shape().Dimensions[axis] {
			identity = false
		}
	}
	if identity {
		return v
	}
	return Slice(v, specs...)
}
