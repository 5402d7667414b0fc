package optimizers

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

func init() { registerMethod("central", CentralDifference) }

// CentralDifference returns gradient regularization by a central finite difference:
//
//	g = g₁ + (γ/2ε)[∇L(θ + εg₁) − ∇L(θ − εg₁)] ≈ g₁ + γHg₁
//
// Error O(ε²). Cost: three gradient evaluations per step. Defaults: γ = DefaultGamma, ε = DefaultEpsilon.
// Needs NewTrainer.
func CentralDifference(base optimizers.Interface) *Config {
	return newConfig(base, "CentralDifference", true, centralGrad)
}

func centralGrad(s *Step) []*Node {
	h := s.fdStep()
	half := graph.MulScalar(s.fdCoefficient(h), 0.5) // γ/2h
	ascent := s.GradAt(scale(h, s.grad))
	descent := s.GradAt(scale(graph.Neg(h), s.grad))
	return add(s.grad, scale(half, sub(ascent, descent)))
}
