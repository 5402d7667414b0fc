package grcontrib

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// Context keys of FriendlySAM's own hyperparameters.
const (
	ParamFriendlySAMSigma  = "gr_friendlysam_sigma"  // σ, weight of the moving average subtracted from g₁
	ParamFriendlySAMLambda = "gr_friendlysam_lambda" // λ, decay of the moving average
)

func init() { gr.Register("friendlysam", FriendlySAM) }

// FriendlySAM returns F-SAM (Li et al., "Friendly Sharpness-Aware Minimization", CVPR 2024): SAM perturbed
// along g₁ minus σ times m, an exponential moving average of past g₁ (method state "friendlysam_m"):
//
//	d = g₁ − σm_{t−1},  g = ∇L(θ + ρd/(‖d‖ + δ)),  m_t = λm_{t−1} + (1 − λ)g₁  (m_0 = g₁)
//
// Hyperparameters: ρ (gr_rho, default 0.05), σ (gr_friendlysam_sigma, default 1), λ (gr_friendlysam_lambda,
// default 0.9, range [0, 1]), the authors' defaults (github.com/nblt/F-SAM, utils.py). As in their code m starts at the first
// g₁ (the step with global step 0, whose d is g₁) and is updated on every step, also on the reuse steps of
// Every(k). No penalty metric.
func FriendlySAM(base optimizers.Interface) *gr.Config {
	return newFriendlySAM(base).Declare(rho(0.05),
		gr.Hyperparameter{Key: ParamFriendlySAMSigma, Name: "Sigma (σ)", Default: 1.0, Max: inf},
		gr.Hyperparameter{Key: ParamFriendlySAMLambda, Name: "Lambda (λ)", Default: 0.9, Max: 1}).Update(friendlySAMAverage)
}

var newFriendlySAM = gr.NewMethod("FriendlySAM", func(s *gr.Step) []*Node {
	d := grvec.Axpby(s.Scalar(1), s.Grad(), Neg(s.Param(ParamFriendlySAMSigma)), s.State("friendlysam_m"))
	return s.GradAt(grvec.Rescale(s.Param(gr.ParamRho), d))
})

func friendlySAMAverage(s *gr.Step) {
	lambda := Where(Equal(s.GlobalStep(), ZerosLike(s.GlobalStep())), s.Scalar(0), s.Param(ParamFriendlySAMLambda))
	s.SetState("friendlysam_m", grvec.Axpby(lambda, s.State("friendlysam_m"), OneMinus(lambda), s.Grad()))
}
