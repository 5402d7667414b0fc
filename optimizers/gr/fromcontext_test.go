package gr_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// documentedDefaults are the defaults the doc comments of the built-in methods and of those of
// optimizers/grcontrib (imported here, so registered) state, written out here independently of the declarations.
var documentedDefaults = map[string]map[string]any{
	"db":       {gr.ParamGamma: 0.05},
	"forward":  {gr.ParamGamma: 0.05, gr.ParamEpsilon: 0.05, gr.ParamNormalized: false},
	"backward": {gr.ParamGamma: 0.05, gr.ParamEpsilon: 0.05, gr.ParamNormalized: false},
	"central":  {gr.ParamGamma: 0.05, gr.ParamEpsilon: 0.05, gr.ParamNormalized: false},
	"sam":      {gr.ParamRho: 0.05},
	"usam":     {gr.ParamRho: 0.05},
	"gnp":      {gr.ParamRho: 0.1, gr.ParamGNPAlpha: 0.8},
	"asam":     {gr.ParamRho: 0.5, gr.ParamASAMEta: 0.01},

	"gsam":        {gr.ParamRho: 0.05, grcontrib.ParamGSAMAlpha: 0.4},
	"looksam":     {gr.ParamRho: 0.1, grcontrib.ParamLookSAMAlpha: 0.7},
	"friendlysam": {gr.ParamRho: 0.05, grcontrib.ParamFriendlySAMSigma: 1.0, grcontrib.ParamFriendlySAMLambda: 0.9},
	"wsam":        {gr.ParamRho: 0.05, grcontrib.ParamWSAMGamma: 0.9},
	"rwp":         {grcontrib.ParamRWPSigma: 0.01, grcontrib.ParamRWPLambda: 0.5},
	"esam":        {gr.ParamRho: 0.05, grcontrib.ParamESAMBeta: 0.6},
}

// optionDefaults are the documented defaults of the options every method has.
var optionDefaults = map[string]any{gr.ParamEvery: 1, gr.ParamWarmUp: 0, gr.ParamZeroWarmUp: 0, gr.ParamGroups: 1,
	gr.ParamGuardNonFinite: true, gr.ParamWarnUnstable: true, gr.ParamExclude: ""}

// TestRegisterParamsKeepsEachMethodsDefaults: through GoMLX's -set parser, with only gr_method=M every
// hyperparameter and option of the optimizer FromContext builds is M's documented default; with one key set,
// that key has the set value and every other keeps its default.
func TestRegisterParamsKeepsEachMethodsDefaults(t *testing.T) {
	for _, m := range gr.Methods() {
		if m == "none" {
			continue
		}
		own, documented := documentedDefaults[m]
		require.True(t, documented, "method %q has no documented defaults in this test", m)
		want := map[string]any{gr.ParamMethod: m}
		for k, v := range own {
			want[k] = v
		}
		for k, v := range optionDefaults {
			want[k] = v
		}
		assert.Equal(t, want, paramsFromSettings(t, "gr_method="+m), m)
		for key, def := range want {
			if key == gr.ParamMethod {
				continue
			}
			text, value := anotherValue(key, def)
			got := paramsFromSettings(t, fmt.Sprintf("gr_method=%s;%s=%s", m, key, text))
			wantSet := map[string]any{}
			for k, v := range want {
				wantSet[k] = v
			}
			wantSet[key] = value
			assert.Equal(t, wantSet, got, "%s with %s=%s", m, key, text)
		}
	}
}

// paramsFromSettings is the GoMLX way: RegisterParams, -set parsed by commandline.ParseContextSettings,
// FromContext; it returns Params().
func paramsFromSettings(t *testing.T, settings string) map[string]any {
	ctx := context.New()
	gr.RegisterParams(ctx)
	_, err := commandline.ParseContextSettings(ctx, settings)
	require.NoError(t, err, settings)
	opt, err := gr.FromContext(ctx, sgd(0.1))
	require.NoError(t, err, settings)
	return opt.(*gr.Regularized).Params()
}

// anotherValue returns a valid value different from def, as -set text and as the value Params should return.
func anotherValue(key string, def any) (string, any) {
	switch d := def.(type) {
	case bool:
		return fmt.Sprint(!d), !d
	case int:
		v := map[string]int{gr.ParamEvery: 3, gr.ParamWarmUp: 2, gr.ParamZeroWarmUp: 4, gr.ParamGroups: 2}[key]
		if v == 0 {
			v = d + 1
		}
		return fmt.Sprint(v), v
	case float64:
		v := d * 0.5
		if d == 0 {
			v = 0.25
		}
		return fmt.Sprint(v), v
	case string:
		return "bias", "bias"
	}
	panic(fmt.Sprintf("key %s: unexpected default %T", key, def))
}

// TestRegisterParams: the registered values: the common default with its type, unset for a key whose default
// depends on the method, and a value ctx already had is kept. -set rejects a value of the wrong type at parse
// time for a typed key and FromContext rejects it (naming the key) for an unset one.
func TestRegisterParams(t *testing.T) {
	ctx := context.New()
	ctx.SetParam(gr.ParamGamma, 0.2) // The program's own default.
	gr.RegisterParams(ctx)
	get := func(key string) any { v, _ := ctx.GetParam(key); return v }
	assert.Equal(t, "none", get(gr.ParamMethod))
	assert.Equal(t, 0.2, get(gr.ParamGamma))
	assert.Equal(t, 0.05, get(gr.ParamEpsilon))
	assert.Equal(t, "", get(gr.ParamRho), "ρ's default depends on the method")
	assert.Equal(t, 1, get(gr.ParamEvery))
	for _, k := range gr.ParamKeys() {
		_, found := ctx.GetParam(k)
		assert.True(t, found, k)
	}

	_, err := commandline.ParseContextSettings(context.New(), "gr_method=sam")
	assert.ErrorContains(t, err, "not known", "without RegisterParams GoMLX rejects the key")
	ctx = context.New()
	gr.RegisterParams(ctx)
	_, err = commandline.ParseContextSettings(ctx, "gr_every=2.5")
	assert.Error(t, err, "gr_every is an int")
	_, err = commandline.ParseContextSettings(ctx, "gr_method=sam;gr_rho=big")
	require.NoError(t, err)
	_, err = gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, `Rho (ρ) [gr_rho] must be a float64, got "big"`)
	_, err = commandline.ParseContextSettings(ctx, "gr_rho=-0.1")
	require.NoError(t, err)
	_, err = gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, "gr.SAM: Rho (ρ) [gr_rho] must be a finite number in [0, +∞), got -0.1")
	_, err = commandline.ParseContextSettings(ctx, "gr_rho=0.1;gr_warmup=3;gr_zero_warmup=2")
	require.NoError(t, err)
	_, err = gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, "gr_warmup and gr_zero_warmup are both set (3, 2)")
}

// TestFromContextNone: gr_method "none" gives the base optimizer's step exactly.
func TestFromContextNone(t *testing.T) {
	ctx := context.New()
	gr.RegisterParams(ctx)
	opt, err := gr.FromContext(ctx, sgd(0.3))
	require.NoError(t, err)
	assert.Equal(t, "none", opt.(*gr.Regularized).Method())
	assert.Equal(t, map[string]any{gr.ParamMethod: "none"}, opt.(*gr.Regularized).Params())
	p := newProblem(31, 8, 3, 4, 0.01)
	got, _ := p.trainSteps(t, opt, false, 2)
	want, _ := p.trainSteps(t, sgd(0.3), false, 2)
	assert.Equal(t, want, got)
}

// TestParamsOfBuilder: Params of an optimizer built with the builder: the registered method name, the set
// values, the schedules by name and the options.
func TestParamsOfBuilder(t *testing.T) {
	opt := gr.GNP(sgd(0.1)).Alpha(0.3).Every(4).WarmUp(10).Schedule(gr.ParamRho, gr.LinearWarmUp(100)).
		Exclude("bias").Done().(*gr.Regularized)
	assert.Equal(t, map[string]any{gr.ParamMethod: "gnp", gr.ParamRho: 0.1, "gr_rho_schedule": "LinearWarmUp(100)",
		gr.ParamGNPAlpha: 0.3, gr.ParamEvery: 4, gr.ParamWarmUp: 10, gr.ParamZeroWarmUp: 0, gr.ParamGroups: 1,
		gr.ParamGuardNonFinite: true, gr.ParamWarnUnstable: true, gr.ParamExclude: "bias"}, opt.Params())
	masked := gr.SAM(sgd(0.1)).Mask(func(*context.Variable) bool { return true }).Done().(*gr.Regularized)
	assert.Equal(t, "custom", masked.Params()["gr_mask"])
}

// resumeRun is a training program in the order of GoMLX's examples/mnist: context with RegisterParams, -set,
// FromContext, NewTrainer, then the checkpoint (which loads the saved parameters, except those given with
// -set, and the variables). It trains steps steps, saves, and returns θ and the optimizer's Params logged
// right after the checkpoint loaded (checked equal to those after training).
func resumeRun(t *testing.T, p *problem, dir, settings string, steps int) ([]float64, map[string]any) {
	ctx := context.New()
	gr.RegisterParams(ctx)
	paramsSet, err := commandline.ParseContextSettings(ctx, settings)
	require.NoError(t, err)
	opt, err := gr.FromContext(ctx, sgd(0.2))
	require.NoError(t, err)
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, nil, nil)
	handler, err := checkpoints.Build(ctx).Dir(dir).ExcludeParams(paramsSet...).Done()
	require.NoError(t, err)
	if optimizers.GetGlobalStep(ctx) > 0 {
		trainer.SetContext(ctx.Reuse())
	}
	logged := opt.(*gr.Regularized).Params() // Where a program logs it: after the checkpoint loaded.
	x, y := p.tensors()
	for range steps {
		_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
	}
	require.NoError(t, handler.Save())
	require.Equal(t, opt.(*gr.Regularized).Params(), logged, "Params logged after the checkpoint loaded is what was trained")
	return variableValues(ctx, "W", "v"), logged
}

// TestResumeKeepsTheMethod: a checkpoint written by F-GR (γ = 0.1, ε = 0.02), resumed by a program that
// builds its optimizer before the checkpoint loads gr_method and the hyperparameters into the context, takes
// F-GR steps with the checkpoint's values: the result equals the uninterrupted F-GR run bit for bit. A method
// given with -set on resume (excluded from loading, as GoMLX's examples do) is the one trained.
func TestResumeKeepsTheMethod(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(32, 10, 3, 4, 0.01)
	uninterrupted, _ := p.trainSteps(t, gr.ForwardDifference(sgd(0.2)).Gamma(0.1).Epsilon(0.02).Done(), false, 3)
	base, _ := p.trainSteps(t, sgd(0.2), false, 3)
	require.Greater(t, relErr(base, uninterrupted), 1e-6, "F-GR and SGD steps differ")

	dir := t.TempDir()
	_, params := resumeRun(t, p, dir, "gr_method=forward;gr_gamma=0.1;gr_epsilon=0.02", 1)
	assert.Equal(t, "forward", params[gr.ParamMethod])
	resumed, params := resumeRun(t, p, dir, "", 2)
	assert.Equal(t, uninterrupted, resumed, "the resumed run takes F-GR steps with the checkpoint's γ and ε")
	assert.Equal(t, "forward", params[gr.ParamMethod])
	assert.Equal(t, 0.1, params[gr.ParamGamma])
	assert.Equal(t, 0.02, params[gr.ParamEpsilon])

	// An explicit -set on resume wins (GoMLX's examples exclude the -set keys from loading).
	_, params = resumeRun(t, p, dir, "gr_method=sam", 1)
	assert.Equal(t, "sam", params[gr.ParamMethod])
	assert.Equal(t, 0.05, params[gr.ParamRho])
}

// TestIntegerAndOpenBounds: an int hyperparameter rejects fractions and accepts integral float64 values (as
// JSON gives them); an open bound excludes its end; errors write the interval.
func TestIntegerAndOpenBounds(t *testing.T) {
	newM := gr.NewMethod("M", func(s *gr.Step) []*gr.Node { return s.Grad() })
	m := func() *gr.Config {
		return newM(sgd(0.1)).Declare(
			gr.Hyperparameter{Key: "gr_m_n", Name: "N", Default: 3, Min: 1, Max: math.Inf(1)},
			gr.Hyperparameter{Key: "gr_m_w", Name: "W", Default: 0.5, Min: 0, Max: 1, MaxOpen: true},
			gr.Hyperparameter{Key: "gr_m_e", Name: "E", Default: 0.5, Min: 0, Max: 1, MinOpen: true})
	}
	for _, tc := range []struct {
		cfg  *gr.Config
		want string
	}{
		{m().Set("gr_m_n", 2.5), "N [gr_m_n] must be an integer in [1, +∞), got 2.5"},
		{m().Set("gr_m_n", 0), "N [gr_m_n] must be an integer in [1, +∞), got 0"},
		{m().Set("gr_m_w", 1.0), "W [gr_m_w] must be a finite number in [0, 1), got 1"},
		{m().Set("gr_m_e", 0.0), "E [gr_m_e] must be a finite number in (0, 1], got 0"},
		{m().Set("gr_m_n", "3"), "N [gr_m_n] must be a number"},
	} {
		_, err := tc.cfg.Build()
		assert.ErrorContains(t, err, tc.want)
	}
	_, err := m().Set("gr_m_n", 4.0).Set("gr_m_w", 0.999).Set("gr_m_e", 1.0).Build()
	require.NoError(t, err)
	_, err = newM(sgd(0.1)).Declare(gr.Hyperparameter{Key: "gr_m_x", Default: []int{1}}).Build()
	assert.ErrorContains(t, err, "must be a float64, an int, a bool or a string")
}

// TestRegisterNamesTheFailedCondition: each of Register's conditions has its own message.
func TestRegisterNamesTheFailedCondition(t *testing.T) {
	newM := gr.NewMethod("M", func(s *gr.Step) []*gr.Node { return s.Grad() })
	ok := func(base optimizers.Interface) *gr.Config { return newM(base) }
	for _, tc := range []struct {
		name string
		ctor func(optimizers.Interface) *gr.Config
		want string
	}{
		{"", ok, "the method name is empty"},
		{"none", ok, `the method name "none" is reserved`},
		{"m_nil", nil, `gr.Register("m_nil"): the constructor is nil`},
		{"sam", ok, `gr.Register("sam"): a method is already registered under this name`},
		{"m_bad", func(base optimizers.Interface) *gr.Config {
			return newM(base).Declare(gr.Hyperparameter{Key: "gr_m_bad", Default: -1.0, Max: 1})
		},
			`gr.Register("m_bad"): the method's declarations are invalid: gr.M: gr_m_bad must be a finite number in [0, 1], got -1`},
		{"m_rho", func(base optimizers.Interface) *gr.Config {
			return newM(base).Declare(gr.Hyperparameter{Key: gr.ParamRho, Default: 0.5, Max: 1})
		}, `key gr_rho is declared as a float64 in [0, 1], but method "asam" declares it as a float64 in [0, +∞)`},
	} {
		func() {
			defer func() {
				r := recover()
				require.NotNil(t, r, tc.name)
				assert.ErrorContains(t, r.(error), tc.want, tc.name)
			}()
			gr.Register(tc.name, tc.ctor)
		}()
	}
	assert.NotContains(t, gr.Methods(), "m_bad")
	assert.NotContains(t, gr.Methods(), "m_rho")
}

// ExampleRegisterParams is the GoMLX way to configure a program: RegisterParams makes gradreg's keys known to
// -set, and an unset key keeps the chosen method's default (SAM's ρ is 0.05, ASAM's 0.5).
func ExampleRegisterParams() {
	for _, settings := range []string{"gr_method=sam", "gr_method=sam;gr_rho=0.1", "gr_method=asam"} {
		ctx := context.New()
		gr.RegisterParams(ctx)
		if _, err := commandline.ParseContextSettings(ctx, settings); err != nil { // The -set flag.
			panic(err)
		}
		opt, err := gr.FromContext(ctx, optimizers.StochasticGradientDescent().Done())
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: gr_rho = %v\n", settings, opt.(*gr.Regularized).Params()[gr.ParamRho])
	}
	// Output:
	// gr_method=sam: gr_rho = 0.05
	// gr_method=sam;gr_rho=0.1: gr_rho = 0.1
	// gr_method=asam: gr_rho = 0.5
}
