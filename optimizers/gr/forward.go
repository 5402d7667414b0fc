package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

func init() { Register("forward", ForwardDifference) }

// ForwardDifference returns F-GR, gradient regularization by a forward finite difference (ascent first):
//
//	g = (1 − γ/ε)g₁ + (γ/ε)∇L(θ + εg₁) = g₁ + γ[∇L(θ + εg₁) − g₁]/ε ≈ g₁ + γHg₁
//
// Error O(ε). Cost: two gradient evaluations per step. With γ = ε it is unnormalized SAM, ∇L(θ + εg₁).
// Karakida et al. find it cheaper than DoubleBackprop and better at generalization.
// Defaults: γ = DefaultGamma, ε = DefaultEpsilon; see Config.Normalized for the normalized step.
// Needs NewTrainer.
func ForwardDifference(base optimizers.Interface) *Config {
	return NewMethod("ForwardDifference", forwardGrad)(base).Declare(gammaParam, epsilonParam, normalizedParam).
		stableAs(ParamGamma)
}

func forwardGrad(s *Step) []*Node {
	h := s.fdStep()
	c := s.fdCoefficient(h) // γ/h
	ascent := s.GradAlong(h)
	return grvec.Axpby(graph.OneMinus(c), s.Grad(), c, ascent)
}
