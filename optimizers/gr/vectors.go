package gr

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Node is an alias for graph.Node, the type of every value here.
type Node = graph.Node

// Helpers on "vectors": one tensor per trainable variable, seen as one long vector (e.g. Step.Theta,
// Step.Grad, the offsets of Step.GradAt). They are named apart from graph's ops on purpose: graph.Dot is a
// matrix product, InnerProduct the global inner product of two such vectors. They accept mixed dtypes:
// scalars are converted to each tensor's dtype, the second vector to the first's dtypes (e.g. a float32
// gradient added to bfloat16 weights gives bfloat16), and InnerProduct and GlobalNorm accumulate in the
// compute dtype (float32 for half-precision tensors).

// castTo returns s converted to x's dtype.
func castTo(s, x *Node) *Node {
	if s.DType() == x.DType() {
		return s
	}
	return graph.ConvertDType(s, x.DType())
}

// computeDType is the dtype of reductions and scalars for tensors of dtype dt: dt, or float32 for a
// half-precision dtype.
func computeDType(dt dtypes.DType) dtypes.DType {
	if dt == dtypes.BFloat16 || dt == dtypes.Float16 {
		return dtypes.Float32
	}
	return dt
}

// ScaleVec returns a·x, for a scalar a.
func ScaleVec(a *Node, x []*Node) []*Node {
	out := make([]*Node, len(x))
	for i, xi := range x {
		out[i] = graph.Mul(castTo(a, xi), xi)
	}
	return out
}

// Axpby returns a·x + b·y, for scalars a and b, in x's dtypes.
func Axpby(a *Node, x []*Node, b *Node, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Add(graph.Mul(castTo(a, x[i]), x[i]), graph.Mul(castTo(b, x[i]), castTo(y[i], x[i])))
	}
	return out
}

// AddVec returns x + y, in x's dtypes.
func AddVec(x, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Add(x[i], castTo(y[i], x[i]))
	}
	return out
}

// SubVec returns x − y, in x's dtypes.
func SubVec(x, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Sub(x[i], castTo(y[i], x[i]))
	}
	return out
}

// InnerProduct returns the global inner product Σᵢ⟨xᵢ, yᵢ⟩, a scalar accumulated in the compute dtype of x (x's dtype, or float32 for
// half-precision tensors). x must not be empty.
func InnerProduct(x, y []*Node) *Node {
	acc := computeDType(x[0].DType())
	total := graph.ScalarZero(x[0].Graph(), acc)
	for i := range x {
		xi := graph.ConvertDType(x[i], acc)
		yi := graph.ConvertDType(y[i], acc)
		total = graph.Add(total, graph.ReduceAllSum(graph.Mul(xi, yi)))
	}
	return total
}

// GlobalNorm returns the global L2 norm ‖x‖ = √InnerProduct(x, x).
func GlobalNorm(x []*Node) *Node {
	return graph.Sqrt(InnerProduct(x, x))
}

// Rescale returns r·x/(‖x‖ + δ), δ = NormStabilizer: x rescaled to the norm r (0 for x = 0), e.g. SAM's
// perturbation ρg₁/(‖g₁‖ + δ).
func Rescale(r *Node, x []*Node) []*Node {
	return ScaleVec(RescaleFactor(r, x), x)
}

// RescaleFactor returns r/(‖x‖ + δ), the scalar by which Rescale multiplies x, e.g. for Step.GradAlong.
func RescaleFactor(r *Node, x []*Node) *Node {
	n := GlobalNorm(x)
	return graph.Div(castTo(r, n), graph.AddScalar(n, NormStabilizer))
}
