package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

func init() { Register("backward", BackwardDifference) }

// BackwardDifference returns B-GR, gradient regularization by a backward finite difference (descent first):
//
//	g = (1 + γ/ε)g₁ − (γ/ε)∇L(θ − εg₁) = g₁ + γ[g₁ − ∇L(θ − εg₁)]/ε ≈ g₁ + γHg₁
//
// Error O(ε). Cost: two gradient evaluations per step. Karakida et al. show its implicit bias is weaker
// than F-GR's. Defaults: γ = DefaultGamma, ε = DefaultEpsilon. Needs NewTrainer.
func BackwardDifference(base optimizers.Interface) *Config {
	return NewMethod("BackwardDifference", backwardGrad)(base).Declare(gammaParam, epsilonParam, normalizedParam).
		stableAs(ParamGamma)
}

func backwardGrad(s *Step) []*Node {
	h := s.fdStep()
	c := s.fdCoefficient(h) // γ/h
	descent := s.GradAlong(graph.Neg(h))
	return grvec.Axpby(graph.OnePlus(c), s.Grad(), graph.Neg(c), descent)
}
