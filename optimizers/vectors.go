package optimizers

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Node is an alias for graph.Node, the type of every value here.
type Node = graph.Node

// Helpers on "vectors": one tensor per trainable variable, seen as one long vector.

// castTo returns the scalar s converted to x's dtype (variables may differ from the loss dtype).
func castTo(s, x *Node) *Node {
	if s.DType() == x.DType() {
		return s
	}
	return graph.ConvertDType(s, x.DType())
}

// scale returns a·x.
func scale(a *Node, x []*Node) []*Node {
	out := make([]*Node, len(x))
	for i, xi := range x {
		out[i] = graph.Mul(castTo(a, xi), xi)
	}
	return out
}

// axpby returns a·x + b·y.
func axpby(a *Node, x []*Node, b *Node, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Add(graph.Mul(castTo(a, x[i]), x[i]), graph.Mul(castTo(b, y[i]), y[i]))
	}
	return out
}

// add returns x + y.
func add(x, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Add(x[i], y[i])
	}
	return out
}

// sub returns x − y.
func sub(x, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Sub(x[i], y[i])
	}
	return out
}

// dot returns Σᵢ⟨xᵢ, yᵢ⟩, accumulated in the dtype of like.
func dot(like *Node, x, y []*Node) *Node {
	total := graph.ScalarZero(like.Graph(), like.DType())
	for i := range x {
		term := graph.ReduceAllSum(graph.Mul(x[i], y[i]))
		total = graph.Add(total, castTo(term, like))
	}
	return total
}

// norm returns the global L2 norm ‖x‖ over all tensors, in the dtype of like.
func norm(like *Node, x []*Node) *Node {
	return graph.Sqrt(dot(like, x, x))
}

// oneMinus returns 1 − c.
func oneMinus(c *Node) *Node {
	return graph.Sub(graph.OnesLike(c), c)
}
