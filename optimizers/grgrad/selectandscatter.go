package grgrad

import (
	"math"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// selectAndScatterVJP returns the gradient of z = SelectAndScatterMax(x, s) (Min when isMin), the
// gradient of a max-pooling y = MaxPool(x): z adds each sᵥᵥ to the element of x that window w
// selects (its first maximum). z is linear in s, so ∂s is, for every window, v at the element the
// window selects: the derivative of the max-pooling in the direction v. ∂x is zero (the selection is
// piecewise constant in x). It is built from strided Slices, comparisons and Where, one per element
// of the window, all differentiable, so max-pooling is twice differentiable.
func selectAndScatterVJP(isMin bool) VJP {
	return func(node *Node, vjps []*Node, _ shapes.Shape) []*Node {
		r := reader{node: node}
		window, strides, paddings := r.ints("windowDimensions"), r.ints("windowStrides"), r.pairs("paddings")
		if r.err != nil {
			panic(errors.Wrap(r.err, "grgrad: the gradient of SelectAndScatter")) // unreachable: Install checked the fields
		}
		x := StopGradient(node.Inputs()[0])
		return []*Node{nil, windowSelect(x, vjps[0], window, strides, paddings, isMin)}
	}
}

// windowSelect returns, for each window of x (as ReduceWindow with these windows, strides and
// paddings sees them), the element of u at the position of the window's first maximum of x (minimum
// when isMin).
func windowSelect(x, u *Node, window, strides []int, paddings [][2]int, isMin bool) *Node {
	rank := x.Rank()
	if len(paddings) > 0 {
		config := make([]backends.PadAxis, rank)
		for a, p := range paddings {
			config[a] = backends.PadAxis{Start: p[0], End: p[1]}
		}
		fill := math.Inf(-1)
		if isMin {
			fill = math.Inf(1)
		}
		x = Pad(x, Scalar(x.Graph(), x.DType(), fill), config...)
		u = Pad(u, ScalarZero(u.Graph(), u.DType()), config...)
	}
	dims := x.Shape().Dimensions
	out := make([]int, rank)
	for a := range out {
		out[a] = (dims[a]-window[a])/strides[a] + 1
	}
	var best, selected *Node
	offset := make([]int, rank)
	for {
		specs := make([]SliceAxisSpec, rank)
		for a := range specs {
			specs[a] = AxisRange(offset[a], offset[a]+(out[a]-1)*strides[a]+1).Stride(strides[a])
		}
		xk, uk := Slice(x, specs...), Slice(u, specs...)
		if best == nil {
			best, selected = xk, uk
		} else {
			var take *Node
			if isMin {
				take = LessThan(xk, best)
			} else {
				take = GreaterThan(xk, best)
			}
			best, selected = Where(take, xk, best), Where(take, uk, selected)
		}
		// Next offset in the window, row-major (the order in which XLA's select sees the elements).
		a := rank - 1
		for ; a >= 0; a-- {
			offset[a]++
			if offset[a] < window[a] {
				break
			}
			offset[a] = 0
		}
		if a < 0 {
			return selected
		}
	}
}
