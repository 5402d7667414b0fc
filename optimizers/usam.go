package optimizers

import "github.com/gomlx/gomlx/pkg/ml/train/optimizers"

// DefaultUSAMRho is USAM's default ρ, 0.05: equal to DefaultEpsilon, so that USAM at its defaults is
// ForwardDifference with γ = ε = DefaultEpsilon.
const DefaultUSAMRho = DefaultEpsilon

func init() { registerMethod("usam", USAM) }

// USAM returns unnormalized SAM (as studied by Andriushchenko & Flammarion, "Towards Understanding
// Sharpness-Aware Minimization", ICML 2022): the ascent step is ρ times the gradient itself, not normalized,
//
//	g = ∇L(θ + ρg₁)
//
// It is exactly ForwardDifference with γ = ε = ρ (the F-GR correction γ[∇L(θ + εg₁) − g₁]/ε plus g₁), so
// it performs gradient regularization with γ = ρ. No norm divides, so a zero gradient needs no
// stabilizer. With ρ = 0 it is exactly the base optimizer. Default: ρ = DefaultUSAMRho (0.05).
// Cost: two gradient evaluations per step. Needs NewTrainer. Gamma, Epsilon and Normalized do not apply.
func USAM(base optimizers.Interface) *Config {
	c := newConfig(base, "USAM", true, usamGrad)
	c.rho = DefaultUSAMRho
	return c
}

func usamGrad(s *Step) []*Node {
	return s.GradAt(scale(s.scalar(s.cfg.rho), s.grad))
}
