package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// DefaultUSAMRho is USAM's default ρ, 0.05: equal to DefaultEpsilon, so that USAM at its defaults is
// ForwardDifference with γ = ε = DefaultEpsilon.
const DefaultUSAMRho = DefaultEpsilon

func init() { Register("usam", USAM) }

// USAM returns unnormalized SAM (as studied by Andriushchenko & Flammarion, "Towards Understanding
// Sharpness-Aware Minimization", ICML 2022): the ascent step is ρ times the gradient itself, not normalized,
//
//	g = ∇L(θ + ρg₁)
//
// It is exactly ForwardDifference with γ = ε = ρ (the F-GR correction γ[∇L(θ + εg₁) − g₁]/ε plus g₁), so
// it performs gradient regularization with γ = ρ. No norm divides, so a zero gradient needs no
// stabilizer. With ρ = 0 it is exactly the base optimizer. Its one hyperparameter is ρ (Rho), default
// DefaultUSAMRho (0.05). Cost: two gradient evaluations per step. Needs NewTrainer. Penalty metric:
// (ρ/2)‖g₁‖², the GR penalty with γ = ρ.
func USAM(base optimizers.Interface) *Config {
	return NewMethod("USAM", usamGrad)(base).Declare(rhoParam(DefaultUSAMRho)).Penalty(usamPenalty).stableAs(ParamRho)
}

func usamGrad(s *Step) []*Node {
	return s.GradAlong(s.Param(ParamRho))
}

// usamPenalty is (ρ/2)‖g₁‖².
func usamPenalty(s *Step) *Node {
	return graph.Mul(graph.MulScalar(s.Param(ParamRho), 0.5), grvec.InnerProduct(s.Grad(), s.Grad()))
}
