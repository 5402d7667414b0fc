package grcontrib

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamLookSAMAlpha is the context key of LookSAM's α (Config.Alpha sets it too).
const ParamLookSAMAlpha = "gr_looksam_alpha"

func init() { gr.Register("looksam", LookSAM) }

// LookSAM returns LookSAM (Liu et al., "Towards Efficient and Scalable Sharpness-Aware Minimization", CVPR
// 2022), meant for Every(k) (the paper's k; e.g. Every(5)). On the full steps (t ≡ 0 mod k) it takes the SAM
// gradient g_s = ∇L(θ + ρg₁/(‖g₁‖ + δ)) and stores its component orthogonal to g₁,
// g_v = g_s − (⟨g₁, g_s⟩/(‖g₁‖² + δ))g₁ (method state "looksam_gv"); on the reuse steps, one gradient evaluation:
//
//	g = g₁ + α(‖g₁‖/(‖g_v‖ + δ))g_v
//
// Hyperparameters: ρ (gr_rho, default 0.1), α (gr_looksam_alpha, default 0.7, range [0, 1]), as pytorch_optimizer.
// Choice: global norms over all variables, as the paper's Algorithm 1 (pytorch_optimizer uses per-tensor
// norms, the paper's layer-wise variant). Without Every(k) it is SAM. No penalty metric.
func LookSAM(base optimizers.Interface) *gr.Config {
	return newLookSAM(base).Declare(rho(0.1), alpha(ParamLookSAMAlpha, 0.7)).Reuse(lookSAMReuse)
}

var newLookSAM = gr.NewMethod("LookSAM", func(s *gr.Step) []*Node {
	g1 := s.Grad()
	gs := s.GradAlong(grvec.RescaleFactor(s.Param(gr.ParamRho), g1))
	proj := Div(grvec.InnerProduct(g1, gs), AddScalar(grvec.InnerProduct(g1, g1), gr.NormStabilizer))
	s.SetState("looksam_gv", grvec.Axpby(s.Scalar(1), gs, Neg(proj), g1))
	return gs
})

func lookSAMReuse(s *gr.Step) []*Node {
	gv := s.State("looksam_gv")
	return grvec.AddVec(s.Grad(), grvec.Rescale(Mul(s.Param(ParamLookSAMAlpha), grvec.GlobalNorm(s.Grad())), gv))
}
