package grgrad

import (
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// batchNormForTrainingVJP is the gradient of (y, μ, σ²) = BatchNormForTraining(x, γ, β), the op under
// batchnorm.New in training mode (y = γ·x̂ + β, x̂ = (x − μ)/√(σ² + ε), μ and σ² the mean and biased
// variance over all axes but the feature axis, N elements each), written with differentiable ops
// instead of GoMLX's BatchNormGradient op (which has no gradient):
//
//	∂β = Σ v_y,  ∂γ = Σ v_y·x̂,
//	∂x = (g − mean(g) − x̂·mean(g·x̂))/√(σ² + ε) + v_μ/N + 2·v_σ²·(x − μ)/N,  g = γ·v_y.
//
// μ, σ² and x̂ are recomputed from x, so that the gradient of this gradient reaches x through them.
func batchNormForTrainingVJP(node *Node, vjps []*Node, _ shapes.Shape) []*Node {
	r := reader{node: node}
	epsilon, featureAxis := r.float32("epsilon"), r.int("featureAxis")
	if r.err != nil {
		panic(errors.Wrap(r.err, "grgrad: the gradient of BatchNormForTraining")) // unreachable: Install checked the fields
	}
	x, gamma := node.Inputs()[0], node.Inputs()[1]
	vy, vMean, vVar := vjps[0], vjps[1], vjps[2]
	var axes []int
	n := 1
	for a := range x.Rank() {
		if a != featureAxis {
			axes, n = append(axes, a), n*x.Shape().Dimensions[a]
		}
	}
	// perFeature reshapes a [C] vector to broadcast along x's feature axis.
	keep := make([]int, x.Rank())
	for a := range keep {
		keep[a] = 1
	}
	keep[featureAxis] = x.Shape().Dimensions[featureAxis]
	perFeature := func(c *Node) *Node { return Reshape(c, keep...) }
	mean := ReduceMean(x, axes...)
	centered := Sub(x, perFeature(mean))
	variance := ReduceMean(Square(centered), axes...)
	inv := perFeature(Rsqrt(AddScalar(variance, epsilon)))
	xHat := Mul(centered, inv)

	g := Mul(vy, perFeature(gamma))
	dx := Mul(inv, Sub(Sub(g, perFeature(ReduceMean(g, axes...))),
		Mul(xHat, perFeature(ReduceMean(Mul(g, xHat), axes...)))))
	dx = Add(dx, perFeature(DivScalar(vMean, float64(n))))
	dx = Add(dx, Mul(centered, perFeature(MulScalar(vVar, 2/float64(n)))))
	return []*Node{dx, ReduceSum(Mul(vy, xHat), axes...), ReduceSum(vy, axes...)}
}
