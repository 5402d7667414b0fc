package grgrad

import (
	"slices"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// reduceProductVJP is the gradient of y = Π x over some axes: ∂xᵢ = v·Πⱼ≠ᵢ xⱼ, the product of the
// others computed as a product of exclusive prefix and suffix products (as JAX does), never as y/xᵢ:
// exact where some xⱼ are zero, and itself differentiable.
func reduceProductVJP(node, v *Node, _ shapes.Shape) []*Node {
	axes, err := readInts(node, "axes")
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of ReduceProduct")) // unreachable: Install checked the fields
	}
	x := node.Inputs()[0]
	dims := x.Shape().Dimensions
	if len(axes) == 0 { // GoMLX's ReduceMultiply with no axes reduces all of them
		for a := range x.Rank() {
			axes = append(axes, a)
		}
	}
	// Kept axes first, reduced axes last, flattened to [m, n].
	var perm, keptDims []int
	m, n := 1, 1
	for a := range x.Rank() {
		if !slices.Contains(axes, a) {
			perm, keptDims, m = append(perm, a), append(keptDims, dims[a]), m*dims[a]
		}
	}
	for _, a := range axes {
		perm, n = append(perm, a), n*dims[a]
	}
	t := Reshape(TransposeAllAxes(x, perm...), m, n)
	others := Mul(scanProduct(t, n, true), scanProduct(t, n, false))
	g := Mul(others, Reshape(v, m, 1))
	transposedDims := make([]int, len(perm))
	inverse := make([]int, len(perm))
	for i, a := range perm {
		transposedDims[i], inverse[a] = dims[a], i
	}
	return []*Node{TransposeAllAxes(Reshape(g, transposedDims...), inverse...)}
}

// scanProduct returns, for t of shape [m, n], the exclusive prefix products Πⱼ<ᵢ tⱼ (or, when not
// prefix, the suffix products Πⱼ>ᵢ tⱼ) along the last axis, in log₂ n steps of shifted products.
func scanProduct(t *Node, n int, prefix bool) *Node {
	m := t.Shape().Dimensions[0]
	ones := func(k int) *Node { return Ones(t.Graph(), shapes.Make(t.DType(), m, k)) }
	// shift moves t by k along the last axis, filling with ones: towards the end for prefix products.
	shift := func(t *Node, k int) *Node {
		if k >= n {
			return ones(n)
		}
		if prefix {
			return Concatenate([]*Node{ones(k), Slice(t, AxisRange(), AxisRange(0, n-k))}, 1)
		}
		return Concatenate([]*Node{Slice(t, AxisRange(), AxisRange(k, n)), ones(k)}, 1)
	}
	c := shift(t, 1) // exclusive: each element sees the ones before it
	for k := 1; k < n; k *= 2 {
		c = Mul(c, shift(c, k))
	}
	return c
}
