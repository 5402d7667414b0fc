package grgrad

import (
	"slices"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// The pure-Go backend (GoMLX v0.26.0) has no Pad and no Reverse op, which GoMLX's gradient of Slice and
// the gradient of a convolution use. padZeros and reverse build them from ops it has, on a backend that
// lacks them, so that Slice (and Concatenate, whose gradient is a Slice) and convolutions are
// differentiable twice there too.

// has reports whether the backend of x's graph has the op.
func has(x *Node, op backends.OpType) bool {
	return x.Graph().Backend().Capabilities().Operations[op]
}

// padZeros is Pad(x, 0, config) for a configuration without negative padding.
func padZeros(x *Node, config []backends.PadAxis) *Node {
	if has(x, backends.OpTypePad) {
		return Pad(x, ScalarZero(x.Graph(), x.DType()), config...)
	}
	zeros := func(dims []int) *Node { return Zeros(x.Graph(), shapes.Make(x.DType(), dims...)) }
	for axis, c := range config {
		dims := x.Shape().Dimensions
		if c.Interior > 0 && dims[axis] > 1 {
			// [.., n, ..] → [.., n, 1+interior, ..] with zeros after each element → [.., n·(1+interior), ..],
			// less the zeros after the last element.
			n := dims[axis]
			withAxis := slices.Insert(slices.Clone(dims), axis+1, 1)
			z := slices.Clone(withAxis)
			z[axis+1] = c.Interior
			spread := Concatenate([]*Node{Reshape(x, withAxis...), zeros(z)}, axis+1)
			flatDims := slices.Clone(dims)
			flatDims[axis] = n * (1 + c.Interior)
			specs := make([]SliceAxisSpec, x.Rank())
			for a := range specs {
				specs[a] = AxisRange()
			}
			specs[axis] = AxisRange(0, dilate(n, 1+c.Interior))
			x = Slice(Reshape(spread, flatDims...), specs...)
			dims = x.Shape().Dimensions
		}
		parts := []*Node{x}
		if c.Start > 0 {
			z := slices.Clone(dims)
			z[axis] = c.Start
			parts = slices.Insert(parts, 0, zeros(z))
		}
		if c.End > 0 {
			z := slices.Clone(dims)
			z[axis] = c.End
			parts = append(parts, zeros(z))
		}
		if len(parts) > 1 {
			x = Concatenate(parts, axis)
		}
	}
	return x
}

// sliceVJP is the gradient of y = Slice(x, starts, limits, strides): v put back in place, zeros
// elsewhere (GoMLX's, with padZeros for Pad).
func sliceVJP(node, v *Node, _ shapes.Shape) []*Node {
	r := reader{node: node}
	starts, strides := r.ints("starts"), r.ints("strides")
	if r.err != nil {
		panic(errors.Wrap(r.err, "grgrad: the gradient of Slice")) // unreachable: Install checked the fields
	}
	x := node.Inputs()[0]
	config := make([]backends.PadAxis, x.Rank())
	for a := range config {
		stride := 1
		if a < len(strides) {
			stride = max(strides[a], 1)
		}
		config[a].Start, config[a].Interior = starts[a], stride-1
		config[a].End = x.Shape().Dimensions[a] - starts[a] - dilate(v.Shape().Dimensions[a], stride)
	}
	return []*Node{padZeros(v, config)}
}

// reverse is Reverse(x, axes…); on a backend without Reverse, a product with the anti-diagonal
// matrix along each axis (fine for a convolution kernel's small spatial axes).
func reverse(x *Node, axes ...int) *Node {
	if has(x, backends.OpTypeReverse) {
		return Reverse(x, axes...)
	}
	for _, axis := range axes {
		n := x.Shape().Dimensions[axis]
		j := make([][]float64, n)
		for i := range j {
			j[i] = make([]float64, n)
			j[i][n-1-i] = 1
		}
		anti := ConvertDType(Const(x.Graph(), j), x.DType())
		// DotGeneral puts the reversed axis last; move it back.
		y := DotGeneral(x, []int{axis}, nil, anti, []int{0}, nil)
		perm := make([]int, 0, x.Rank())
		for a := range x.Rank() - 1 {
			perm = append(perm, a)
		}
		perm = slices.Insert(perm, axis, x.Rank()-1)
		x = TransposeAllAxes(y, perm...)
	}
	return x
}
