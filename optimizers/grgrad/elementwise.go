package grgrad

import (
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// rsqrtVJP is the gradient of y = 1/√x: ∂x = −½·y³·v.
func rsqrtVJP(node, v *Node, _ shapes.Shape) []*Node {
	return []*Node{Mul(v, MulScalar(Mul(node, Square(node)), -0.5))}
}

// expm1VJP is the gradient of y = eˣ − 1: ∂x = (y + 1)·v.
func expm1VJP(node, v *Node, _ shapes.Shape) []*Node {
	return []*Node{Mul(v, AddScalar(node, 1))}
}

// clampVJP is the gradient of y = Clamp(lo, x, hi) (JAX's clamp rule): v flows to x where lo < x < hi,
// to lo where x < lo, to hi where x > hi (at a tie, to none: a subgradient). lo and hi may be scalars.
func clampVJP(node, v *Node, _ shapes.Shape) []*Node {
	lo, x, hi := node.Inputs()[0], node.Inputs()[1], node.Inputs()[2]
	zeros := ZerosLike(v)
	bound := func(b, selected *Node) *Node {
		g := Where(selected, v, zeros)
		if b.IsScalar() && !x.IsScalar() {
			return ReduceAllSum(g)
		}
		return g
	}
	return []*Node{
		bound(lo, GreaterThan(lo, x)),
		Where(LogicalAnd(GreaterThan(x, lo), LessThan(x, hi)), v, zeros),
		bound(hi, LessThan(hi, x)),
	}
}

// zeroVJP is the gradient of the rounding operations (Round, Floor, Ceil) and of Sign: zero wherever
// it is defined.
func zeroVJP(node, _ *Node, _ shapes.Shape) []*Node {
	return make([]*Node, len(node.Inputs()))
}
