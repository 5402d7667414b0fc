package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamGNPAlpha is α, GNP's weight of the perturbed gradient, read by FromContext. Default: DefaultGNPAlpha.
const ParamGNPAlpha = "gr_gnp_alpha"

const (
	// DefaultGNPRho is GNP's default ρ (r in the paper), 0.1, from the authors' CIFAR recipes
	// (github.com/zhaoyang-0204/gnp, recipes/resnet-cifar.sh).
	DefaultGNPRho = 0.1

	// DefaultGNPAlpha is GNP's default α, 0.8, from the same recipes.
	DefaultGNPAlpha = 0.8
)

func init() { Register("gnp", GNP) }

// GNP returns gradient-norm penalty (Zhao, Zhang & Hu, "Penalizing Gradient Norm for Efficiently Improving
// Generalization in Deep Learning", ICML 2022): a finite-difference estimate of the gradient of
// L + λ‖∇L‖, written with α = λ/ρ as
//
//	g = (1 − α)g₁ + α∇L(θ + e),   e = ρ g₁/(‖g₁‖ + δ)
//
// δ = NormStabilizer (1e-12) keeps a zero gradient finite (e = 0, g = 0). α = 1 is exactly SAM with the
// same ρ; α = 0 is exactly the base optimizer (the second gradient is still computed). Hyperparameters:
// ρ (Rho), default DefaultGNPRho (0.1); α (Alpha), default DefaultGNPAlpha (0.8). Cost: two gradient
// evaluations per step. Needs NewTrainer. Penalty metric: λ‖g₁‖ = αρ‖g₁‖.
func GNP(base optimizers.Interface) *Config {
	return NewMethod("GNP", gnpGrad)(base).Declare(rhoParam(DefaultGNPRho),
		Hyperparameter{Key: ParamGNPAlpha, Name: "Alpha (α)", Default: DefaultGNPAlpha, Max: 1}).Penalty(gnpPenalty)
}

// Alpha sets α, the hyperparameter named "Alpha (α)" of the method: GNP's weight of the perturbed gradient
// (ParamGNPAlpha; valid range [0, 1], default DefaultGNPAlpha, 0.8), or the α of another method that declares
// one under that name with its own key (GSAM and LookSAM in optimizers/grcontrib).
func (c *Config) Alpha(alpha float64) *Config { return c.set(ParamGNPAlpha, "Alpha (α)", alpha) }

func gnpGrad(s *Step) []*Node {
	alpha := s.Param(ParamGNPAlpha)
	return grvec.Axpby(graph.OneMinus(alpha), s.Grad(), alpha, s.GradAlong(samStep(s)))
}

// gnpPenalty is αρ‖g₁‖.
func gnpPenalty(s *Step) *Node { return graph.Mul(s.Param(ParamGNPAlpha), samPenalty(s)) }
