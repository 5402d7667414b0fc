package gr_test

import (
	"math"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHyperparameterOfAnotherMethod: a setter of a hyperparameter the method does not have is an error naming
// the method and the parameter.
func TestHyperparameterOfAnotherMethod(t *testing.T) {
	parallelOnXLA(t)
	for _, tc := range []struct {
		cfg  *gr.Config
		want string
	}{
		{gr.ForwardDifference(sgd(0.1)).Rho(0.1), "gr.ForwardDifference: ForwardDifference has no hyperparameter Rho (ρ)"},
		{gr.DoubleBackprop(sgd(0.1)).Epsilon(0.1), "DoubleBackprop has no hyperparameter Epsilon (ε)"},
		{gr.DoubleBackprop(sgd(0.1)).Normalized(true), "DoubleBackprop has no hyperparameter Normalized"},
		{gr.SAM(sgd(0.1)).Gamma(0.1), "SAM has no hyperparameter Gamma (γ)"},
		{gr.SAM(sgd(0.1)).Alpha(0.5), "SAM has no hyperparameter Alpha (α)"},
		{gr.GNP(sgd(0.1)).Eta(0.5), "GNP has no hyperparameter Eta (η)"},
		{gr.ASAM(sgd(0.1)).Set("gr_sigma", 1.0), "ASAM has no hyperparameter gr_sigma"},
		{gr.CentralDifference(sgd(0.1)).Set(gr.ParamGamma, "big"), "Gamma (γ) [gr_gamma] must be a number"},
		{gr.CentralDifference(sgd(0.1)).Set(gr.ParamNormalized, 1.0), "Normalized [gr_normalized] must be a bool"},
	} {
		_, err := tc.cfg.Build()
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
	// Set by key is the named setter.
	p := newProblem(21, 8, 3, 4, 0.01)
	a, _ := p.trainSteps(t, gr.GNP(sgd(0.2)).Set(gr.ParamRho, 0.3).Set(gr.ParamGNPAlpha, 0.5).Done(), false, 1)
	b, _ := p.trainSteps(t, gr.GNP(sgd(0.2)).Rho(0.3).Alpha(0.5).Done(), false, 1)
	assert.Equal(t, b, a)
}

// TestFromContextReadsOnlyTheMethodsKeys: a context that sets every key (a shared config file) gives each
// method its own values; unset keys keep the method's default (ASAM's ρ = 0.5, not SAM's 0.05); keys of other
// methods are not read, so their values (even invalid ones) do not matter.
func TestFromContextReadsOnlyTheMethodsKeys(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(22, 8, 3, 4, 0.01)
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "asam", gr.ParamGamma: -1.0, gr.ParamEpsilon: 0.0,
		gr.ParamGNPAlpha: 7.0, gr.ParamNormalized: true})
	opt, err := gr.FromContext(ctx, sgd(0.3))
	require.NoError(t, err, "keys ASAM does not have are not read")
	fromCtx, _ := p.trainSteps(t, opt, false, 1)
	want, _ := p.trainSteps(t, gr.ASAM(sgd(0.3)).Done(), false, 1)
	assert.Equal(t, want, fromCtx, "ASAM at its defaults ρ = 0.5, η = 0.01")
	theta0 := p.theta0()
	ref := axpy(-0.3, samReference(p, "asam", theta0, samParams{rho: gr.DefaultASAMRho, eta: gr.DefaultASAMEta}), theta0)
	assert.Less(t, relErr(fromCtx, ref), 1e-8)

	ctx.SetParams(map[string]any{gr.ParamMethod: "gnp", gr.ParamGNPAlpha: 0.5, gr.ParamRho: 0.2})
	opt, err = gr.FromContext(ctx, sgd(0.3))
	require.NoError(t, err)
	fromCtx, _ = p.trainSteps(t, opt, false, 1)
	want, _ = p.trainSteps(t, gr.GNP(sgd(0.3)).Rho(0.2).Alpha(0.5).Done(), false, 1)
	assert.Equal(t, want, fromCtx)
}

// TestParamDefaults: the keys FromContext reads for a method, with the method's defaults; ParamKeys lists them
// all.
func TestParamDefaults(t *testing.T) {
	options := map[string]any{gr.ParamEvery: 1, gr.ParamWarmUp: 0, gr.ParamZeroWarmUp: 0}
	for method, own := range map[string]map[string]any{
		"db":      {gr.ParamGamma: gr.DefaultGamma},
		"forward": {gr.ParamGamma: gr.DefaultGamma, gr.ParamEpsilon: gr.DefaultEpsilon, gr.ParamNormalized: false},
		"sam":     {gr.ParamRho: gr.DefaultRho},
		"usam":    {gr.ParamRho: gr.DefaultUSAMRho},
		"gnp":     {gr.ParamRho: gr.DefaultGNPRho, gr.ParamGNPAlpha: gr.DefaultGNPAlpha},
		"asam":    {gr.ParamRho: gr.DefaultASAMRho, gr.ParamASAMEta: gr.DefaultASAMEta},
	} {
		got, err := gr.ParamDefaults(method)
		require.NoError(t, err)
		assert.Equal(t, method, got[gr.ParamMethod])
		for k, v := range own {
			assert.Equal(t, v, got[k], "%s %s", method, k)
		}
		for k, v := range options {
			assert.Equal(t, v, got[k], "%s option %s", method, k)
		}
		// Nothing else: no key of another method (options added later are allowed, by key).
		for k := range got {
			_, isOwn := own[k]
			_, isOption := options[k]
			if !isOwn && !isOption && k != gr.ParamMethod {
				assert.NotContains(t, []string{gr.ParamGamma, gr.ParamEpsilon, gr.ParamNormalized, gr.ParamRho,
					gr.ParamGNPAlpha, gr.ParamASAMEta}, k, "%s: a key of another method", method)
			}
		}
	}
	none, err := gr.ParamDefaults("none")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{gr.ParamMethod: "none"}, none)
	_, err = gr.ParamDefaults("sharp")
	assert.ErrorContains(t, err, `unknown gr_method "sharp"`)

	keys := gr.ParamKeys()
	assert.True(t, slices.IsSorted(keys))
	for _, k := range []string{gr.ParamMethod, gr.ParamGamma, gr.ParamEpsilon, gr.ParamNormalized, gr.ParamRho,
		gr.ParamGNPAlpha, gr.ParamASAMEta, gr.ParamEvery, gr.ParamWarmUp, gr.ParamZeroWarmUp} {
		assert.Contains(t, keys, k)
	}
}

// TestSAMFamilyPenalty: the penalty metric of the SAM family is the family's own penalty, against float64:
// ρ‖g₁‖ (SAM), (ρ/2)‖g₁‖² (USAM), αρ‖g₁‖ (GNP), ρ‖Tg₁‖ (ASAM).
func TestSAMFamilyPenalty(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(23, 10, 3, 4, 0.01)
	theta0 := p.theta0()
	g1 := p.grad(theta0, false)
	const rho, alpha, eta = 0.2, 0.6, 0.05
	tg := make([]float64, len(g1))
	for i := range g1 {
		tg[i] = (math.Abs(theta0[i]) + eta) * g1[i]
	}
	for name, tc := range map[string]struct {
		cfg  *gr.Config
		want float64
	}{
		"sam":  {gr.SAM(sgd(0.1)).Rho(rho), rho * normVec(g1)},
		"usam": {gr.USAM(sgd(0.1)).Rho(rho), rho / 2 * dotVec(g1, g1)},
		"gnp":  {gr.GNP(sgd(0.1)).Rho(rho).Alpha(alpha), alpha * rho * normVec(g1)},
		"asam": {gr.ASAM(sgd(0.1)).Rho(rho).Eta(eta), rho * normVec(tg)},
	} {
		m := p.metricsRun(t, tc.cfg.Done(), false, 1)[0]
		assert.InDelta(t, tc.want, m[1], 1e-12*tc.want, name)
	}
}

// TestClearDeletesGradregVariables: Regularized.Clear deletes the base optimizer's variables and gradreg's own
// (the Every correction, the metrics), and leaves the model's.
func TestClearDeletesGradregVariables(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(24, 8, 3, 4, 0.01)
	ctx := context.New()
	opt := gr.ForwardDifference(optimizers.Adam().Done()).Every(2).Done()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, gr.Metrics(), nil)
	x, y := p.tensors()
	_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.NoError(t, err)
	count := func(prefix string) (n int) {
		for v := range ctx.IterVariables() {
			if v.Scope() == prefix || len(v.Scope()) > len(prefix) && v.Scope()[:len(prefix)+1] == prefix+"/" {
				n++
			}
		}
		return n
	}
	require.Greater(t, count(gr.Scope+"/every"), 0)
	require.Greater(t, count(gr.Scope+"/metrics"), 0)
	require.Greater(t, count("/"+optimizers.AdamDefaultScope), 0)
	require.NoError(t, opt.Clear(ctx))
	assert.Zero(t, count(gr.Scope), "gradreg's variables deleted")
	assert.Zero(t, count("/"+optimizers.AdamDefaultScope), "Adam's variables deleted")
	assert.NotNil(t, ctx.GetVariableByScopeAndName(context.RootScope, "W"), "the model's variables remain")
	assert.NotNil(t, ctx.GetVariableByScopeAndName(context.RootScope, "v"))
}
