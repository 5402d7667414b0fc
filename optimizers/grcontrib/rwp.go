package grcontrib

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// Context keys of RWP's own hyperparameters.
const (
	ParamRWPSigma  = "gr_rwp_sigma"  // σ, scale of the random perturbation relative to the weights' norms
	ParamRWPLambda = "gr_rwp_lambda" // λ, weight of the perturbed gradient
)

func init() { gr.Register("rwp", RWP) }

// RWP returns mixed random weight perturbation (m-RWP; Li et al., "Revisiting Random Weight Perturbation for
// Efficiently Improving Generalization", TMLR 2024): the gradient at randomly perturbed weights mixed with g₁,
//
//	g = (1 − λ)g₁ + λ∇L(θ + ε),   ε = σ·s⊙z,   z ~ N(0, I) (Step.RandomNormal, a new draw every step)
//
// where s is the weights' scale, filter by filter as in the authors' code: for a variable of rank ≥ 2,
// s[..., j] = ‖θ[..., j]‖ over all axes but the last (GoMLX keeps a layer's output units on the last
// axis, where PyTorch keeps them on the first); for a vector or scalar, s = ‖θ‖ + δ. Hyperparameters: σ
// (gr_rwp_sigma, default 0.01), λ (gr_rwp_lambda, default 0.5, range [0, 1]), the authors' defaults. Choice:
// both gradients on the same batch (the authors split it in two halves). Cost: two gradient evaluations per
// step. The perturbation is not along g₁, so RWP reports no curvature metric; no penalty metric.
func RWP(base optimizers.Interface) *gr.Config {
	return newRWP(base).Declare(
		gr.Hyperparameter{Key: ParamRWPSigma, Name: "Sigma (σ)", Default: 0.01, Max: inf},
		gr.Hyperparameter{Key: ParamRWPLambda, Name: "Lambda (λ)", Default: 0.5, Max: 1})
}

var newRWP = gr.NewMethod("RWP", func(s *gr.Step) []*Node {
	z := s.RandomNormal()
	eps := make([]*Node, len(z))
	for i, theta := range s.Theta() {
		eps[i] = Mul(Mul(ConvertDType(s.Param(ParamRWPSigma), z[i].DType()), rwpScale(theta, z[i].DType())), z[i])
	}
	lambda := s.Param(ParamRWPLambda)
	return grvec.Axpby(OneMinus(lambda), s.Grad(), lambda, s.GradAt(eps))
})

// rwpScale is s: the norm of each filter (all axes but the last) for rank ≥ 2, else ‖θ‖ + δ.
func rwpScale(theta *Node, dtype dtypes.DType) *Node {
	t := ConvertDType(theta, dtype)
	if t.Rank() < 2 {
		return AddScalar(Sqrt(ReduceAllSum(Square(t))), gr.NormStabilizer)
	}
	axes := make([]int, t.Rank()-1)
	for i := range axes {
		axes[i] = i
	}
	return Sqrt(ReduceAndKeep(Square(t), ReduceSum, axes...))
}
