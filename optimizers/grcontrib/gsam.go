package grcontrib

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamGSAMAlpha is the context key of GSAM's α (Config.Alpha sets it too).
const ParamGSAMAlpha = "gr_gsam_alpha"

func init() { gr.Register("gsam", GSAM) }

// GSAM returns surrogate-gap guided SAM (Zhuang et al., "Surrogate Gap Minimization Improves Sharpness-Aware
// Training", ICLR 2022): the SAM gradient minus α times the component of g₁ orthogonal to it,
//
//	g_p = ∇L(θ + e),  e = ρg₁/(‖g₁‖ + δ),  g = g_p − α[g₁ − (⟨g₁, g_p⟩/(‖g_p‖² + δ)) g_p]
//
// Hyperparameters: ρ (gr_rho, default 0.05), α (gr_gsam_alpha, default 0.4 as pytorch_optimizer, range [0, 1]).
// Choices: ρ is constant here; GSAMScheduled gives the paper's schedule, ρ following the learning rate; the projection
// divides by ‖g_p‖² + δ where pytorch_optimizer writes cos·‖g₁‖/(‖g_p‖ + δ) with cos = ⟨g₁, g_p⟩/(‖g₁‖‖g_p‖ + δ)
// (equal up to δ). Cost: two gradient evaluations per step. No penalty metric.
func GSAM(base optimizers.Interface) *gr.Config {
	return newGSAM(base).Declare(rho(0.05), alpha(ParamGSAMAlpha, 0.4))
}

// GSAMScheduled returns GSAM with the paper's ρ schedule (Zhuang et al. 2022, Section 5): ρ moves with the
// learning rate lr_t between ρ_min, at lr_t = lrMin, and the configured ρ (Rho), at lr_t = lrMax,
//
//	ρ_t = ρ_min + (ρ − ρ_min)(lr_t − lrMin)/(lrMax − lrMin)
//
// with lr_t GoMLX's learning-rate variable, which a learning-rate schedule (e.g. cosineschedule) writes:
// gr.FollowLearningRate on ρ (see gr.Config.Schedule). lrMax must be the base optimizer's initial learning rate.
// The paper's runs decay lr from lrMax to lrMin = 0 with ρ from ρ_max to ρ_min (e.g. 0.04 → 0.02).
func GSAMScheduled(base optimizers.Interface, lrMax, lrMin, rhoMin float64) *gr.Config {
	return GSAM(base).Schedule(gr.ParamRho, gr.FollowLearningRate(lrMax, lrMin, rhoMin))
}

var newGSAM = gr.NewMethod("GSAM", func(s *gr.Step) []*Node {
	g1 := s.Grad()
	gp := s.GradAlong(grvec.RescaleFactor(s.Param(gr.ParamRho), g1))
	proj := Div(grvec.InnerProduct(g1, gp), AddScalar(grvec.InnerProduct(gp, gp), gr.NormStabilizer))
	vertical := grvec.Axpby(s.Scalar(1), g1, Neg(proj), gp) // g₁ − proj·g_p
	return grvec.Axpby(s.Scalar(1), gp, Neg(s.Param(ParamGSAMAlpha)), vertical)
})
