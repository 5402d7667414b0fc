package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

func init() { Register("central", CentralDifference) }

// CentralDifference returns gradient regularization by a central finite difference:
//
//	g = g₁ + (γ/2ε)[∇L(θ + εg₁) − ∇L(θ − εg₁)] ≈ g₁ + γHg₁
//
// Error O(ε²). Cost: three gradient evaluations per step. Defaults: γ = DefaultGamma, ε = DefaultEpsilon.
// Needs NewTrainer.
func CentralDifference(base optimizers.Interface) *Config {
	return NewMethod("CentralDifference", centralGrad)(base).Declare(gammaParam, epsilonParam, normalizedParam).
		stableAs(ParamGamma)
}

func centralGrad(s *Step) []*Node {
	h := s.fdStep()
	half := graph.MulScalar(s.fdCoefficient(h), 0.5) // γ/2h
	ascent := s.GradAlong(h)
	descent := s.GradAlong(graph.Neg(h))
	return grvec.AddVec(s.Grad(), grvec.ScaleVec(half, grvec.SubVec(ascent, descent)))
}
