package gr

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamASAMEta is η, ASAM's offset of the normalization operator, read by FromContext. Default: DefaultASAMEta.
const ParamASAMEta = "gr_asam_eta"

const (
	// DefaultASAMRho is ASAM's default ρ, 0.5, the default of the authors' code (github.com/SamsungLabs/ASAM).
	// ASAM's ρ is larger than SAM's because the perturbation is measured relative to |θ|.
	DefaultASAMRho = 0.5

	// DefaultASAMEta is ASAM's default η, 0.01, as in the paper and the authors' code.
	DefaultASAMEta = 0.01
)

func init() { Register("asam", ASAM) }

// ASAM returns adaptive SAM (Kwon, Kim, Park & Choi, "ASAM: Adaptive Sharpness-Aware Minimization for
// Scale-Invariant Learning of Deep Neural Networks", ICML 2021). The ball of radius ρ is taken in the
// coordinates of the normalization operator T = diag(|θ| + η), elementwise over every trainable variable:
//
//	g = ∇L(θ + e),   e = ρ T²g₁/(‖Tg₁‖ + δ),   T = |θ| + η
//
// This is the update of the authors' code (SamsungLabs/ASAM, asam.py: t_w = |w| + η; grad ← t_w·grad;
// norm = ‖grad‖ + 1e-16; e = ρ·t_w·grad/norm). Differences: the authors apply T to parameters whose name
// contains "weight" only (biases get T = 1); here T applies to every trainable variable. δ = NormStabilizer
// (1e-12) keeps a zero gradient finite (e = 0). With ρ = 0 it is exactly the base optimizer.
// Hyperparameters: ρ (Rho), default DefaultASAMRho (0.5); η (Eta), default DefaultASAMEta (0.01). Cost: two
// gradient evaluations per step. Needs NewTrainer. Penalty metric: ρ‖Tg₁‖ (g ≈ g₁ + ρHT²g₁/‖Tg₁‖, its
// gradient with T held fixed).
func ASAM(base optimizers.Interface) *Config {
	return NewMethod("ASAM", asamGrad)(base).Declare(rhoParam(DefaultASAMRho),
		Hyperparameter{Key: ParamASAMEta, Name: "Eta (η)", Default: DefaultASAMEta, Max: math.Inf(1)}).Penalty(asamPenalty)
}

// Eta sets η, ASAM's offset in T = |θ| + η; valid range [0, +∞). Default: DefaultASAMEta (0.01).
func (c *Config) Eta(eta float64) *Config { return c.set(ParamASAMEta, "Eta (η)", eta) }

// asamT returns T = |θ| + η and Tg₁.
func asamT(s *Step) (t, tg []*Node) {
	t, tg = make([]*Node, len(s.Theta())), make([]*Node, len(s.Theta()))
	for i, theta := range s.Theta() {
		t[i] = graph.AddScalar(graph.Abs(theta), s.ParamFloat(ParamASAMEta))
		tg[i] = graph.Mul(t[i], castTo(s.Grad()[i], theta))
	}
	return t, tg
}

func asamGrad(s *Step) []*Node {
	t, tg := asamT(s)
	c := graph.Div(s.Param(ParamRho), graph.AddScalar(grvec.GlobalNorm(tg), NormStabilizer))
	e := make([]*Node, len(tg)) // ρ T²g₁/(‖Tg₁‖ + δ)
	for i := range tg {
		e[i] = graph.Mul(t[i], tg[i])
	}
	return s.GradAt(grvec.ScaleVec(c, e))
}

// asamPenalty is ρ‖Tg₁‖.
func asamPenalty(s *Step) *Node {
	_, tg := asamT(s)
	return graph.Mul(s.Param(ParamRho), grvec.GlobalNorm(tg))
}
