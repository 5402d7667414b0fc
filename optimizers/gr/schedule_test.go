package gr_test

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// identitySchedule returns the configured value: a schedule that changes nothing.
var identitySchedule = gr.NewSchedule("identity", func(_ *gr.Step, value *gr.Node) *gr.Node { return value })

// TestConstantHyperparametersInVariables: a hyperparameter read through its variable mechanism with a schedule
// that returns the configured value trains bit for bit like the plain constant, for methods of every kind and
// with the options; the variable under Scope/hyperparameters holds the configured value.
func TestConstantHyperparametersInVariables(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(61, 12, 3, 4, 0.01)
	for _, tc := range []struct {
		key string
		cfg func() *gr.Config
	}{
		{gr.ParamGamma, func() *gr.Config { return gr.ForwardDifference(sgd(0.3)).Gamma(0.07).Every(2).WarmUp(2) }},
		{gr.ParamEpsilon, func() *gr.Config { return gr.CentralDifference(sgd(0.3)).Epsilon(0.02).Groups(2) }},
		{gr.ParamGamma, func() *gr.Config { return gr.DoubleBackprop(sgd(0.3)).Gamma(0.03) }},
		{gr.ParamRho, func() *gr.Config { return gr.SAM(sgd(0.3)).Rho(0.2).ZeroWarmUp(1) }},
		{gr.ParamRho, func() *gr.Config { return gr.ASAM(sgd(0.3)).Rho(0.4) }},
	} {
		plain := p.run(t, context.New(), tc.cfg().Done(), 4, true, nil)
		ctx := context.New()
		opt := tc.cfg().Schedule(tc.key, identitySchedule).Done()
		scheduled := p.run(t, ctx, opt, 4, true, nil)
		assert.Equal(t, plain, scheduled, "%s %s", opt.(*gr.Regularized).Method(), tc.key)
		v := gr.HyperparameterVar(ctx, opt.(*gr.Regularized), tc.key)
		require.NotNil(t, v, tc.key)
		assert.Equal(t, opt.(*gr.Regularized).Params()[tc.key], v.MustValue().Value(), tc.key)
	}
}

// TestRhoFollowsLearningRate: SAM with ρ following GoMLX's learning rate (FollowLearningRate, the GSAM paper's
// schedule), with the learning-rate variable changed between steps as a schedule would, follows the float64
// recursion θ ← θ − lr_t·∇L(θ + ρ_t g₁/‖g₁‖), ρ_t = ρ_min + (ρ − ρ_min)(lr_t − lr_min)/(lr_max − lr_min), and
// the ρ variable holds ρ_t after each step.
func TestRhoFollowsLearningRate(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(62, 12, 3, 4, 0.01)
	const rho, rhoMin, lrMax, lrMin = 0.2, 0.02, 0.4, 0.0
	opt := gr.SAM(sgd(lrMax)).Rho(rho).Schedule(gr.ParamRho, gr.FollowLearningRate(lrMax, lrMin, rhoMin)).Done()
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, nil, nil)
	x, y := p.tensors()
	theta := p.theta0()
	lrs := []float64{lrMax, 0.3, 0.1, 0.05}
	for step, lr := range lrs {
		if step > 0 {
			ctx.In(optimizers.Scope).GetVariable(optimizers.ParamLearningRate).MustSetValue(tensors.FromValue(lr))
		}
		_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
		rhoT := rhoMin + (rho-rhoMin)*(lr-lrMin)/(lrMax-lrMin)
		theta = axpy(-lr, samReference(p, "sam", theta, samParams{rho: rhoT}), theta)
		assert.Less(t, relErr(variableValues(ctx, "W", "v"), theta), 1e-12, "step %d", step)
		assert.InDelta(t, rhoT, gr.HyperparameterVar(ctx, opt.(*gr.Regularized), gr.ParamRho).MustValue().Value(), 1e-15)
	}
}

// TestGammaAnnealed: F-GR with γ on a schedule (LinearWarmUp, StepWarmUp) follows
// the float64 recursion with γ_t; LinearWarmUp(γ) equals WarmUp for a GR method (whose correction is
// proportional to γ) up to rounding.
func TestGammaAnnealed(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(63, 12, 3, 4, 0.01)
	const gamma, eps, lr, steps = 0.1, 0.05, 0.3, 5
	for _, tc := range []struct {
		name  string
		fn    gr.Schedule
		gamma func(t int) float64
	}{
		{"linear warm-up", gr.LinearWarmUp(3), func(t int) float64 { return gamma * math.Min(1, float64(t)/3) }},
		{"step warm-up", gr.StepWarmUp(2), func(t int) float64 { return gamma * float64(min(1, t/2)) }},
	} {
		got := p.run(t, context.New(), gr.ForwardDifference(sgd(lr)).Gamma(gamma).Epsilon(eps).Schedule(gr.ParamGamma, tc.fn).Done(), steps, true, nil)
		theta := p.theta0()
		for step := range steps {
			theta = axpy(-lr, referenceGradient(p, "forward", theta, tc.gamma(step), eps, false, false), theta)
			assert.Less(t, relErr(got[step], theta), 1e-10, "%s: step %d", tc.name, step)
		}
	}
	warm := p.run(t, context.New(), gr.ForwardDifference(sgd(lr)).Gamma(gamma).WarmUp(3).Done(), steps, true, nil)
	sched := p.run(t, context.New(), gr.ForwardDifference(sgd(lr)).Gamma(gamma).Schedule(gr.ParamGamma, gr.LinearWarmUp(3)).Done(), steps, true, nil)
	assert.Less(t, relErr(sched[steps-1], warm[steps-1]), 1e-12)
}

// TestScheduleOfUndeclaredHyperparameter: Schedule of a hyperparameter the method does not have, or of a bool one, is an error of
// Build naming both.
func TestScheduleOfUndeclaredHyperparameter(t *testing.T) {
	parallelOnXLA(t)
	_, err := gr.SAM(sgd(0.1)).Schedule(gr.ParamGamma, identitySchedule).Build()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `gr.SAM: Schedule("gr_gamma"): SAM has no float64 hyperparameter "gr_gamma"`)
	_, err = gr.ForwardDifference(sgd(0.1)).Schedule(gr.ParamNormalized, identitySchedule).Build()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no float64 hyperparameter "gr_normalized"`)
}
