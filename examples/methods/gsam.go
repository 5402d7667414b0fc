package methods

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers"
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
// Choices: ρ is constant (the paper schedules ρ with the learning rate: set it per run); the projection
// divides by ‖g_p‖² + δ where pytorch_optimizer writes cos·‖g₁‖/(‖g_p‖ + δ) with cos = ⟨g₁, g_p⟩/(‖g₁‖‖g_p‖ + δ)
// (equal up to δ). Cost: two gradient evaluations per step. No penalty metric.
func GSAM(base optimizers.Interface) *gr.Config {
	return newGSAM(base).Param(gr.ParamRho, 0.05, 0, inf).Declare(alpha(ParamGSAMAlpha, 0.4))
}

var newGSAM = gr.NewMethod("GSAM", func(s *gr.Step) []*Node {
	g1 := s.Grad()
	gp := s.GradAlong(gr.RescaleFactor(s.Param(gr.ParamRho), g1))
	proj := Div(gr.InnerProduct(g1, gp), AddScalar(gr.InnerProduct(gp, gp), gr.NormStabilizer))
	vertical := gr.Axpby(s.Scalar(1), g1, Neg(proj), gp) // g₁ − proj·g_p
	return gr.Axpby(s.Scalar(1), gp, Neg(s.Param(ParamGSAMAlpha)), vertical)
})
