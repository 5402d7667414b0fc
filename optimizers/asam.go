package optimizers

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// ParamEta is η, ASAM's offset of the normalization operator, read by FromContext. Default: DefaultEta.
const ParamEta = "gr_eta"

const (
	// DefaultASAMRho is ASAM's default ρ, 0.5, the default of the authors' code (github.com/SamsungLabs/ASAM).
	// ASAM's ρ is larger than SAM's because the perturbation is measured relative to |θ|.
	DefaultASAMRho = 0.5

	// DefaultEta is ASAM's default η, 0.01, as in the paper and the authors' code.
	DefaultEta = 0.01
)

func init() {
	registerMethod("asam", ASAM)
	readParamIfSet(ParamEta, (*Config).Eta)
}

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
// Defaults: ρ = DefaultASAMRho (0.5), η = DefaultEta (0.01). Cost: two gradient evaluations per step.
// Needs NewTrainer. Gamma, Epsilon and Normalized do not apply.
func ASAM(base optimizers.Interface) *Config {
	c := newConfig(base, "ASAM", true, asamGrad)
	c.rho = DefaultASAMRho
	c.eta = DefaultEta
	return c
}

// Eta sets η, ASAM's offset in T = |θ| + η; valid range [0, +∞). Default: DefaultEta (0.01).
// Other methods ignore it.
func (c *Config) Eta(eta float64) *Config {
	c.checkRange("Eta (η)", eta, 0, math.Inf(1), false)
	c.eta = eta
	return c
}

func asamGrad(s *Step) []*Node {
	tg := make([]*Node, len(s.grad)) // T g₁
	for i, theta := range s.theta {
		t := graph.AddScalar(graph.Abs(theta), s.cfg.eta)
		tg[i] = graph.Mul(t, s.grad[i])
	}
	c := graph.Div(s.scalar(s.cfg.rho), graph.AddScalar(norm(s.loss, tg), NormStabilizer))
	e := make([]*Node, len(tg)) // ρ T²g₁/(‖Tg₁‖ + δ)
	for i, theta := range s.theta {
		t := graph.AddScalar(graph.Abs(theta), s.cfg.eta)
		e[i] = graph.Mul(castTo(c, theta), graph.Mul(t, tg[i]))
	}
	return s.GradAt(e)
}
