package gr

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamRho is ρ, the perturbation radius of the SAM family (SAM, USAM, GNP, ASAM), read by FromContext.
// When it is not set, each method keeps its own default (DefaultRho, DefaultUSAMRho, DefaultGNPRho,
// DefaultASAMRho).
const ParamRho = "gr_rho"

// DefaultRho is SAM's default ρ, 0.05, the value Foret et al. use for most of their experiments.
const DefaultRho = 0.05

func init() { Register("sam", SAM) }

// SAM returns sharpness-aware minimization (Foret et al., "Sharpness-Aware Minimization for Efficiently
// Improving Generalization", ICLR 2021). The gradient handed to the base optimizer is the gradient at the
// worst point, to first order, of the ball of radius ρ around θ:
//
//	g = ∇L(θ + e),   e = ρ g₁/(‖g₁‖ + δ)
//
// with g₁ = ∇L(θ), ‖·‖ the global L2 norm over all trainable variables and δ = NormStabilizer (1e-12): a
// zero gradient gives e = 0 and g = g₁ = 0 instead of NaN. With ρ = 0 it is exactly the base optimizer.
// Its one hyperparameter is ρ (Rho), default DefaultRho (0.05). Cost: two gradient evaluations per step.
// Needs NewTrainer. Penalty metric: ρ‖g₁‖ (g ≈ g₁ + ∇(ρ‖g₁‖) to first order in ρ).
func SAM(base optimizers.Interface) *Config {
	return NewMethod("SAM", samGrad)(base).Declare(rhoParam(DefaultRho)).Penalty(samPenalty)
}

// Rho sets ρ, the perturbation radius of SAM, USAM, GNP and ASAM; valid range [0, +∞).
// Defaults: DefaultRho (SAM), DefaultUSAMRho, DefaultGNPRho, DefaultASAMRho.
func (c *Config) Rho(rho float64) *Config { return c.set(ParamRho, "Rho (ρ)", rho) }

// rhoParam declares ρ with the method's default.
func rhoParam(def float64) Hyperparameter {
	return Hyperparameter{Key: ParamRho, Name: "Rho (ρ)", Default: def, Max: math.Inf(1)}
}

func samGrad(s *Step) []*Node {
	return s.GradAlong(samStep(s))
}

// samStep returns h = ρ/(‖g₁‖ + δ), so that h·g₁ = e = ρ g₁/(‖g₁‖ + δ) (grvec.Rescale(ρ, g₁)).
func samStep(s *Step) *Node { return grvec.RescaleFactor(s.Param(ParamRho), s.Grad()) }

// samPenalty is ρ‖g₁‖.
func samPenalty(s *Step) *Node { return graph.Mul(s.Param(ParamRho), grvec.GlobalNorm(s.Grad())) }
