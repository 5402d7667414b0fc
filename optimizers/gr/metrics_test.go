package gr_test

import (
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metricsRun trains steps steps with gr.Metrics and returns, per step, (‖g‖, penalty, curvature, sharpness).
func (p *problem) metricsRun(t *testing.T, opt optimizers.Interface, linear bool, steps int) [][4]float64 {
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(linear), squaredLoss, opt, gr.Metrics(), nil)
	x, y := p.tensors()
	var out [][4]float64
	for range steps {
		m, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
		require.Len(t, m, 7) // loss+, ~loss+, ~loss, then ours.
		out = append(out, [4]float64{m[3].Value().(float64), m[4].Value().(float64), m[5].Value().(float64),
			m[6].Value().(float64)})
	}
	// Recorded in variables (hence in checkpoints).
	v := ctx.GetVariableByScopeAndName(gr.Scope+"/metrics", gr.MetricCurvature)
	require.NotNil(t, v)
	assert.Equal(t, out[steps-1][2], v.MustValue().Value().(float64))
	return out
}

func dotVec(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// TestCurvatureOnQuadratic: on a quadratic loss the curvature metric is exactly g₁ᵀHg₁ (H from the float64
// reference) for every method and any ε; ‖g‖ and the penalty match too.
func TestCurvatureOnQuadratic(t *testing.T) {
	p := newProblem(31, 12, 3, 4, 0)
	theta0 := p.theta0()
	g1 := p.grad(theta0, true)
	wantCurv := dotVec(g1, p.hvp(theta0, g1, true))
	require.Greater(t, wantCurv, 1e-3)
	for _, method := range allMethods {
		for _, eps := range []float64{1e-3, 0.3} {
			m := p.metricsRun(t, buildCfg(method, sgd(0.1), 0.2, eps).Done(), true, 1)[0]
			assert.InDelta(t, normVec(g1), m[0], 1e-12*normVec(g1), "%s ‖g‖", method)
			assert.InDelta(t, 0.1*dotVec(g1, g1), m[1], 1e-12*dotVec(g1, g1), "%s penalty", method)
			assert.InDelta(t, wantCurv, m[2], 1e-9*wantCurv, "%s ε=%g curvature", method, eps)
			assert.InDelta(t, wantCurv/dotVec(g1, g1), m[3], 1e-9*wantCurv/dotVec(g1, g1), "%s ε=%g sharpness",
				method, eps)
		}
	}
	// SAM-family methods perturb along g₁ too (ASAM does not: its estimate is directional).
	for name, cfg := range map[string]*gr.Config{
		"sam": gr.SAM(sgd(0.1)).Rho(0.2), "usam": gr.USAM(sgd(0.1)).Rho(0.2), "gnp": gr.GNP(sgd(0.1)).Rho(0.2),
	} {
		m := p.metricsRun(t, cfg.Done(), true, 1)[0]
		assert.InDelta(t, wantCurv, m[2], 1e-9*wantCurv, "%s curvature", name)
	}
}

// TestCurvatureFormula: on the tanh model the forward method's curvature is g₁ᵀ(∇L(θ + εg₁) − g₁)/ε and
// DB's is g₁ᵀHg₁; with Every(2) the skip step keeps the last value while ‖g‖ is fresh; with WarmUp the
// penalty uses γ_t.
func TestCurvatureFormula(t *testing.T) {
	p := newProblem(32, 12, 3, 4, 0.01)
	theta0 := p.theta0()
	g1 := p.grad(theta0, false)
	const eps = 0.04
	fd := dotVec(g1, axpy(-1, g1, p.grad(axpy(eps, g1, theta0), false))) / eps
	m := p.metricsRun(t, gr.ForwardDifference(sgd(0.1)).Epsilon(eps).Every(2).Done(), false, 2)
	assert.InDelta(t, fd, m[0][2], 1e-9*abs(fd))
	assert.Equal(t, m[0][2], m[1][2], "skip step keeps the curvature")
	assert.NotEqual(t, m[0][0], m[1][0], "‖g‖ is fresh on skip steps")

	exact := dotVec(g1, p.hvp(theta0, g1, false))
	mdb := p.metricsRun(t, gr.DoubleBackprop(sgd(0.1)).Done(), false, 1)
	assert.InDelta(t, exact, mdb[0][2], 1e-9*abs(exact))
	assert.Greater(t, abs(fd-exact), 1e-6*abs(exact), "the finite difference is not exact off a quadratic")

	mw := p.metricsRun(t, gr.ForwardDifference(sgd(0.1)).Gamma(0.2).WarmUp(4).Done(), false, 2)
	assert.Equal(t, 0.0, mw[0][1], "γ_0 = 0")
	assert.Greater(t, mw[1][1], 0.0)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
