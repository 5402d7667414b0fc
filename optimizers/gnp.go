package optimizers

import (
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// ParamAlpha is α, GNP's weight of the perturbed gradient, read by FromContext. Default: DefaultAlpha.
const ParamAlpha = "gr_alpha"

const (
	// DefaultGNPRho is GNP's default ρ (r in the paper), 0.1, from the authors' CIFAR recipes
	// (github.com/zhaoyang-0204/gnp, recipes/resnet-cifar.sh).
	DefaultGNPRho = 0.1

	// DefaultAlpha is GNP's default α, 0.8, from the same recipes.
	DefaultAlpha = 0.8
)

func init() {
	registerMethod("gnp", GNP)
	readParamIfSet(ParamAlpha, (*Config).Alpha)
}

// GNP returns gradient-norm penalty (Zhao, Zhang & Hu, "Penalizing Gradient Norm for Efficiently Improving
// Generalization in Deep Learning", ICML 2022): a finite-difference estimate of the gradient of
// L + λ‖∇L‖, written with α = λ/ρ as
//
//	g = (1 − α)g₁ + α∇L(θ + e),   e = ρ g₁/(‖g₁‖ + δ)
//
// δ = NormStabilizer (1e-12) keeps a zero gradient finite (e = 0, g = 0). α = 1 is exactly SAM with the
// same ρ; α = 0 is exactly the base optimizer (the second gradient is still computed). Defaults:
// ρ = DefaultGNPRho (0.1), α = DefaultAlpha (0.8). Cost: two gradient evaluations per step.
// Needs NewTrainer. Gamma, Epsilon and Normalized do not apply.
func GNP(base optimizers.Interface) *Config {
	c := newConfig(base, "GNP", true, gnpGrad)
	c.rho = DefaultGNPRho
	c.alpha = DefaultAlpha
	return c
}

// Alpha sets α, GNP's weight of the perturbed gradient; valid range [0, 1]. Default: DefaultAlpha (0.8).
// Other methods ignore it.
func (c *Config) Alpha(alpha float64) *Config {
	c.checkRange("Alpha (α)", alpha, 0, 1, false)
	c.alpha = alpha
	return c
}

func gnpGrad(s *Step) []*Node {
	alpha := s.scalar(s.cfg.alpha)
	return axpby(oneMinus(alpha), s.grad, alpha, s.GradAt(samPerturbation(s)))
}
