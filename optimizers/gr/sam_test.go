package gr_test

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// samParams are the hyperparameters of one SAM-family method.
type samParams struct{ rho, alpha, eta float64 }

// samReference is each SAM-family method's gradient computed independently in float64.
func samReference(p *problem, method string, theta []float64, hp samParams) []float64 {
	g1 := p.grad(theta, false)
	at := func(e []float64) []float64 { return p.grad(axpy(1, e, theta), false) }
	sam := func() []float64 { return at(scaleVec(hp.rho/(normVec(g1)+gr.NormStabilizer), g1)) }
	switch method {
	case "sam":
		return sam()
	case "usam":
		return at(scaleVec(hp.rho, g1))
	case "gnp":
		return axpy(hp.alpha, sam(), scaleVec(1-hp.alpha, g1))
	case "asam":
		tg, t2g := make([]float64, len(g1)), make([]float64, len(g1))
		for i := range g1 {
			t := math.Abs(theta[i]) + hp.eta
			tg[i], t2g[i] = t*g1[i], t*t*g1[i]
		}
		return at(scaleVec(hp.rho/(normVec(tg)+gr.NormStabilizer), t2g))
	}
	panic(method)
}

func buildSAM(method string, base optimizers.Interface, hp samParams) optimizers.Interface {
	switch method {
	case "sam":
		return gr.SAM(base).Rho(hp.rho).Done()
	case "usam":
		return gr.USAM(base).Rho(hp.rho).Done()
	case "gnp":
		return gr.GNP(base).Rho(hp.rho).Alpha(hp.alpha).Done()
	case "asam":
		return gr.ASAM(base).Rho(hp.rho).Eta(hp.eta).Done()
	}
	panic(method)
}

var samMethods = []string{"sam", "usam", "gnp", "asam"}

// TestSAMOneStepMatchesFormula: each SAM-family one-step update equals its formula computed independently in
// float64, on the tanh model with its AddLoss term.
func TestSAMOneStepMatchesFormula(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(11, 16, 3, 4, 0.01)
	const lr = 0.3
	theta0 := p.theta0()
	hp := samParams{rho: 0.2, alpha: 0.6, eta: 0.05}
	for _, method := range samMethods {
		t.Run(method, func(t *testing.T) {
			theta1, losses := p.trainSteps(t, buildSAM(method, sgd(lr), hp), false, 1)
			want := axpy(-lr, samReference(p, method, theta0, hp), theta0)
			assert.Less(t, relErr(theta1, want), 1e-8, "θ after one step")
			assert.InDelta(t, p.loss(theta0), losses[0], 1e-12, "reported loss is L(θ)")
			// The step differs from plain SGD's: the test can fail.
			assert.Greater(t, relErr(theta1, axpy(-lr, p.grad(theta0, false), theta0)), 1e-4)
		})
	}
}

// TestSAMFromContext: gr_method, gr_rho, gr_alpha and gr_eta select the method and its hyperparameters.
func TestSAMFromContext(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(12, 12, 3, 4, 0.01)
	theta0 := p.theta0()
	hp := samParams{rho: 0.3, alpha: 0.4, eta: 0.2}
	for _, method := range samMethods {
		ctx := context.New()
		ctx.SetParams(map[string]any{gr.ParamMethod: method, gr.ParamRho: hp.rho, gr.ParamGNPAlpha: hp.alpha,
			gr.ParamASAMEta: hp.eta})
		opt, err := gr.FromContext(ctx, sgd(0.5))
		require.NoError(t, err, method)
		theta1, _ := p.trainSteps(t, opt, false, 1)
		want := axpy(-0.5, samReference(p, method, theta0, hp), theta0)
		assert.Less(t, relErr(theta1, want), 1e-8, method)
	}
}

// TestSAMRhoZeroIsBase: SAM, USAM and ASAM with ρ = 0 are the base step; GNP with α = 0 is the base step.
func TestSAMRhoZeroIsBase(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(13, 10, 3, 4, 0.01)
	base, _ := p.trainSteps(t, sgd(0.2), false, 2)
	for _, method := range []string{"sam", "usam", "asam"} {
		theta, _ := p.trainSteps(t, buildSAM(method, sgd(0.2), samParams{rho: 0, eta: 0.01}), false, 2)
		assert.Less(t, relErr(theta, base), 1e-13, method)
	}
	theta, _ := p.trainSteps(t, buildSAM("gnp", sgd(0.2), samParams{rho: 0.2, alpha: 0}), false, 2)
	assert.Less(t, relErr(theta, base), 1e-13, "GNP α = 0")
}

// TestGNPAlphaOneIsSAM: GNP with α = 1 is SAM with the same ρ.
func TestGNPAlphaOneIsSAM(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(14, 10, 3, 4, 0.01)
	sam, _ := p.trainSteps(t, gr.SAM(sgd(0.2)).Rho(0.15).Done(), false, 2)
	gnp, _ := p.trainSteps(t, gr.GNP(sgd(0.2)).Rho(0.15).Alpha(1).Done(), false, 2)
	assert.Less(t, relErr(gnp, sam), 1e-13)
	base, _ := p.trainSteps(t, sgd(0.2), false, 2)
	assert.Greater(t, relErr(sam, base), 1e-4, "SAM differs from the base step")
}

// TestUSAMIsForwardDifference: USAM with ρ = ε is F-GR with γ = ε.
func TestUSAMIsForwardDifference(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(15, 10, 3, 4, 0.01)
	const eps = 0.08
	usam, _ := p.trainSteps(t, gr.USAM(sgd(0.3)).Rho(eps).Done(), false, 2)
	fgr, _ := p.trainSteps(t, gr.ForwardDifference(sgd(0.3)).Gamma(eps).Epsilon(eps).Done(), false, 2)
	assert.Less(t, relErr(usam, fgr), 1e-12)
	base, _ := p.trainSteps(t, sgd(0.3), false, 2)
	assert.Greater(t, relErr(usam, base), 1e-4, "USAM differs from the base step")
}

// TestSAMZeroGradient: at a point where ∇L = 0 exactly (W = 0, v = 0) the normalized methods stay finite
// (without the stabilizer δ, e = 0/0 = NaN).
func TestSAMZeroGradient(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(16, 8, 3, 4, 0.01)
	for i := range p.w0 {
		p.w0[i] = 0
	}
	for i := range p.v0 {
		p.v0[i] = 0
	}
	require.Zero(t, normVec(p.grad(p.theta0(), false)), "∇L(0) = 0")
	for _, c := range []*gr.Config{gr.SAM(sgd(0.1)), gr.GNP(sgd(0.1)), gr.ASAM(sgd(0.1)), gr.ASAM(sgd(0.1)).Eta(0)} {
		theta, losses := p.trainSteps(t, c.Done(), false, 2)
		for _, x := range append(theta, losses...) {
			require.False(t, math.IsNaN(x) || math.IsInf(x, 0), "weights and losses finite: %v", theta)
		}
		assert.Equal(t, p.theta0(), theta, "a zero gradient leaves θ unchanged")
	}
}

// TestSAMBadInput: invalid ρ, α, η are reported with the parameter's name and valid range.
func TestSAMBadInput(t *testing.T) {
	parallelOnXLA(t)
	nan := math.NaN()
	for _, tc := range []struct {
		cfg  *gr.Config
		want string
	}{
		{gr.SAM(sgd(0.1)).Rho(-0.1), "Rho (ρ) [gr_rho] must be a finite number in [0, +∞)"},
		{gr.USAM(sgd(0.1)).Rho(nan), "Rho (ρ)"},
		{gr.ASAM(sgd(0.1)).Rho(math.Inf(1)), "Rho (ρ)"},
		{gr.GNP(sgd(0.1)).Alpha(1.5), "Alpha (α) [gr_gnp_alpha] must be a finite number in [0, 1]"},
		{gr.GNP(sgd(0.1)).Alpha(-0.1), "Alpha (α)"},
		{gr.GNP(sgd(0.1)).Alpha(nan), "Alpha (α)"},
		{gr.ASAM(sgd(0.1)).Eta(-0.01), "Eta (η) [gr_asam_eta] must be a finite number in [0, +∞)"},
		{gr.ASAM(sgd(0.1)).Eta(nan), "Eta (η)"},
	} {
		_, err := tc.cfg.Build()
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
		assert.Panics(t, func() { tc.cfg.Done() })
	}
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "gnp", gr.ParamGNPAlpha: 2.0})
	_, err := gr.FromContext(ctx, sgd(0.1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gr.GNP: Alpha (α)")
}
