package grcontrib

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamESAMBeta is the context key of ESAM's β, the probability that a variable is perturbed.
const ParamESAMBeta = "gr_esam_beta"

func init() { gr.Register("esam", ESAM) }

// ESAM returns SAM with ESAM's stochastic weight perturbation (SWP; Du et al., "Efficient Sharpness-aware
// Minimization for Improved Training of Neural Networks", ICLR 2022): on each step every trainable variable
// j is perturbed with probability β (m_j ~ Bernoulli(β), one draw per variable, from Step.RandomUniform), and
// the perturbation of the drawn ones is scaled by 1/β, so that it is unbiased:
//
//	d = m⊙g₁,   e = ρd/(β(‖d‖ + δ)),   g = ∇L(θ + e)
//
// The variables not drawn are not perturbed and do not count in ‖d‖; every variable gets ∇L(θ + e). This is the
// authors' code (github.com/dydjw9/Efficient_SAM, utils/Esam.py: a tensor is skipped with probability 1 − β,
// scale ρ/(‖g‖·β) over the tensors kept). With β = 1 (a mask of ones) it is SAM exactly; with m = 0 the step is
// the base step. Hyperparameters: ρ (gr_rho, default 0.05), β (gr_esam_beta, default 0.6, range (0, 1]), the
// authors' CIFAR runs (run.sh). Not implemented: ESAM's sharpness-sensitive data selection (the second pass on
// the examples whose loss rose most), and SWP's saving: PyTorch skips the gradients of the variables not drawn,
// a GoMLX graph computes them all. Cost: two gradient evaluations per step and one uniform draw per weight
// (only the first element of each variable's draw is used). No penalty metric.
func ESAM(base optimizers.Interface) *gr.Config {
	return newESAM(base).Declare(rho(0.05),
		gr.Hyperparameter{Key: ParamESAMBeta, Name: "Beta (β)", Default: 0.6, Max: 1, MinOpen: true})
}

var newESAM = gr.NewMethod("ESAM", func(s *gr.Step) []*Node {
	beta := s.Param(ParamESAMBeta)
	u := s.RandomUniform()
	d := make([]*Node, len(u))
	for j, gj := range s.Grad() {
		first := Reshape(Slice(Reshape(u[j], -1), AxisRange(0, 1))) // one draw per variable
		kept := LessThan(first, ConvertDType(beta, first.DType()))
		d[j] = Where(kept, gj, ZerosLike(gj))
	}
	return s.GradAt(grvec.Rescale(Div(s.Param(gr.ParamRho), beta), d))
})
