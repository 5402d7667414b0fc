package grcontrib_test

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logistic is logistic regression in float64: L(w, b) = mean_i log(1 + exp(−y_i(x_i·w + b))), y_i = ±1, a
// non-quadratic loss whose gradient has a closed form, so every perturbed gradient is checked exactly.
type logistic struct {
	x  [][]float64
	y  []float64
	w0 []float64
	b0 float64
}

func newLogistic(seed uint64) *logistic {
	rng := rand.New(rand.NewPCG(seed, 3))
	p := &logistic{b0: 0.3}
	for range 12 {
		row := []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
		p.x = append(p.x, row)
		y := 1.0
		if row[0]-0.5*row[1]+0.8*rng.NormFloat64() < 0 {
			y = -1
		}
		p.y = append(p.y, y)
	}
	p.w0 = []float64{0.4, -0.7, 0.2}
	return p
}

// theta0 is θ = (w, b).
func (p *logistic) theta0() []float64 { return append(append([]float64{}, p.w0...), p.b0) }

// grad is ∇L(θ) in float64: dℓ_i/dz_i = −y_i σ(−y_i z_i).
func (p *logistic) grad(theta []float64) []float64 {
	g := make([]float64, len(theta))
	d := len(p.w0)
	for i, row := range p.x {
		z := theta[d]
		for k := range d {
			z += row[k] * theta[k]
		}
		dz := -p.y[i] / (1 + math.Exp(p.y[i]*z)) / float64(len(p.x))
		for k := range d {
			g[k] += dz * row[k]
		}
		g[d] += dz
	}
	return g
}

func (p *logistic) modelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	g := inputs[0].Graph()
	w := ctx.VariableWithValue("w", tensors.FromFlatDataAndDimensions(p.w0, len(p.w0))).ValueGraph(g)
	b := ctx.VariableWithValue("b", p.b0).ValueGraph(g)
	return []*Node{Add(Dot(inputs[0], w), b)}
}

// logLoss is the per-example log(1 + exp(−y z)); the trainer takes the mean.
func logLoss(labels, predictions []*Node) *Node {
	return Softplus(Neg(Mul(labels[0], predictions[0])))
}

func (p *logistic) tensors() (x, y *tensors.Tensor) {
	var flat []float64
	for _, row := range p.x {
		flat = append(flat, row...)
	}
	return tensors.FromFlatDataAndDimensions(flat, len(p.x), len(p.w0)), tensors.FromFlatDataAndDimensions(p.y, len(p.y))
}

// run trains steps steps with opt in ctx and returns θ = (w, b) and the train metrics after each step; with
// viaGR through gr.TrainStep (one graph per phase of Every), else trainer.TrainStep (both phases in one graph).
func (p *logistic) run(t *testing.T, ctx *context.Context, opt optimizers.Interface, steps int, viaGR bool) (thetas, metrics [][]float64) {
	b, err := grbackend.New()
	require.NoError(t, err)
	trainer := gr.NewTrainer(b, ctx, p.modelFn, logLoss, opt, gr.Metrics(), nil)
	x, y := p.tensors()
	for range steps {
		var m []*tensors.Tensor
		if viaGR {
			m, err = gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		} else {
			m, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		}
		require.NoError(t, err)
		var values []float64
		for _, mi := range m {
			values = append(values, mi.Value().(float64))
		}
		metrics = append(metrics, values)
		thetas = append(thetas, thetaOf(ctx))
	}
	return thetas, metrics
}

func thetaOf(ctx *context.Context) []float64 {
	w := ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue()
	b := ctx.GetVariableByScopeAndName(context.RootScope, "b").MustValue()
	return append(tensors.MustCopyFlatData[float64](w), b.Value().(float64))
}

func sgd(lr float64) optimizers.Interface {
	return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr).Done()
}

// Float64 vector helpers of the references.
func axpby(a float64, x []float64, b float64, y []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = a*x[i] + b*y[i]
	}
	return out
}

func dot(x, y []float64) (s float64) {
	for i := range x {
		s += x[i] * y[i]
	}
	return s
}

func norm(x []float64) float64 { return math.Sqrt(dot(x, x)) }

// rescale is r·x/(‖x‖ + δ).
func rescale(r float64, x []float64) []float64 { return axpby(r/(norm(x)+gr.NormStabilizer), x, 0, x) }

func relErr(a, b []float64) float64 {
	var num, den float64
	for i := range b {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	return num / den
}

// TestGSAMOneStep: one GSAM step against g = g_p − α[g₁ − (⟨g₁, g_p⟩/‖g_p‖²)g_p] in float64.
func TestGSAMOneStep(t *testing.T) {
	p := newLogistic(1)
	const lr, rho, alpha = 0.5, 0.3, 0.4
	theta0 := p.theta0()
	g1 := p.grad(theta0)
	gp := p.grad(axpby(1, theta0, 1, rescale(rho, g1)))
	vertical := axpby(1, g1, -dot(g1, gp)/(dot(gp, gp)+gr.NormStabilizer), gp)
	want := axpby(1, theta0, -lr, axpby(1, gp, -alpha, vertical))
	got, _ := p.run(t, context.New(), grcontrib.GSAM(sgd(lr)).Rho(rho).Alpha(alpha).Done(), 1, true)
	assert.Less(t, relErr(got[0], want), 1e-12)
	sam, _ := p.run(t, context.New(), gr.SAM(sgd(lr)).Rho(rho).Done(), 1, true)
	assert.Greater(t, relErr(got[0], sam[0]), 1e-6, "GSAM differs from SAM")
}

// TestLookSAMEvery: with Every(2), LookSAM's full steps take the SAM gradient and store g_v, its reuse step
// takes g₁ + α(‖g₁‖/‖g_v‖)g_v, against float64 over 3 steps, with one graph per phase and with both phases in
// one graph.
func TestLookSAMEvery(t *testing.T) {
	p := newLogistic(2)
	const lr, rho, alpha = 0.5, 0.2, 0.7
	theta := p.theta0()
	var want [][]float64
	var gv []float64
	for step := range 3 {
		g1 := p.grad(theta)
		var g []float64
		if step%2 == 0 {
			g = p.grad(axpby(1, theta, 1, rescale(rho, g1)))
			gv = axpby(1, g, -dot(g1, g)/(dot(g1, g1)+gr.NormStabilizer), g1)
		} else {
			g = axpby(1, g1, 1, rescale(alpha*norm(g1), gv))
		}
		theta = axpby(1, theta, -lr, g)
		want = append(want, theta)
	}
	for _, viaGR := range []bool{true, false} {
		got, _ := p.run(t, context.New(), grcontrib.LookSAM(sgd(lr)).Rho(rho).Alpha(alpha).Every(2).Done(), 3, viaGR)
		for step := range want {
			assert.Less(t, relErr(got[step], want[step]), 1e-12, "viaGR=%v step %d", viaGR, step)
		}
	}
}

// friendlyReference runs FriendlySAM with Every(k) in float64 and returns θ and m after each step.
func friendlyReference(p *logistic, lr, rho, sigma, lambda float64, k, steps int) (thetas, ms [][]float64) {
	theta := p.theta0()
	m := make([]float64, len(theta))
	var corr []float64
	for step := range steps {
		g1 := p.grad(theta)
		var g []float64
		if step%k != 0 {
			g = axpby(1, g1, 1, corr)
		} else {
			d := axpby(1, g1, -sigma, m)
			g = p.grad(axpby(1, theta, 1, rescale(rho, d)))
			corr = axpby(1, g, -1, g1)
		}
		if step == 0 {
			m = g1
		} else {
			m = axpby(lambda, m, 1-lambda, g1)
		}
		theta = axpby(1, theta, -lr, g)
		thetas, ms = append(thetas, theta), append(ms, m)
	}
	return thetas, ms
}

// TestFriendlySAM: F-SAM against float64 over 3 steps, every step and with Every(2) (the moving average is
// updated on the reuse step too), with one graph per phase and with both phases in one graph.
func TestFriendlySAM(t *testing.T) {
	p := newLogistic(3)
	const lr, rho, sigma, lambda = 0.5, 0.2, 0.8, 0.6
	for _, k := range []int{1, 2} {
		want, _ := friendlyReference(p, lr, rho, sigma, lambda, k, 3)
		for _, viaGR := range []bool{true, false} {
			opt := grcontrib.FriendlySAM(sgd(lr)).Rho(rho).Set(grcontrib.ParamFriendlySAMSigma, sigma).
				Set(grcontrib.ParamFriendlySAMLambda, lambda).Every(k).Done()
			got, _ := p.run(t, context.New(), opt, 3, viaGR)
			for step := range want {
				assert.Less(t, relErr(got[step], want[step]), 1e-12, "k=%d viaGR=%v step %d", k, viaGR, step)
			}
		}
	}
	// σ = 0 is SAM; the default σ = 1 is not.
	sam, _ := p.run(t, context.New(), gr.SAM(sgd(lr)).Rho(rho).Done(), 3, true)
	f0, _ := p.run(t, context.New(), grcontrib.FriendlySAM(sgd(lr)).Rho(rho).Set(grcontrib.ParamFriendlySAMSigma, 0.0).Done(), 3, true)
	f1, _ := p.run(t, context.New(), grcontrib.FriendlySAM(sgd(lr)).Rho(rho).Done(), 3, true)
	assert.Less(t, relErr(f0[2], sam[2]), 1e-13)
	assert.Greater(t, relErr(f1[2], sam[2]), 1e-6)
}

// resume runs steps steps, saves a checkpoint after first of them, resumes in a new context and returns θ
// after the last step.
func (p *logistic) resume(t *testing.T, newOpt func() optimizers.Interface, first, steps int) (*context.Context, []float64) {
	dir := t.TempDir()
	ctx1 := seeded(resumeSeed)
	handler, err := checkpoints.Build(ctx1).Dir(dir).Done()
	require.NoError(t, err)
	p.run(t, ctx1, newOpt(), first, true)
	require.NoError(t, handler.Save())
	ctx2 := context.New()
	_, err = checkpoints.Build(ctx2).Dir(dir).Done()
	require.NoError(t, err)
	got, _ := p.run(t, ctx2.Checked(false), newOpt(), steps-first, true)
	return ctx2, got[len(got)-1]
}

// TestFriendlySAMResume: the moving average is method state in checkpointed variables: a run saved after 2
// steps and resumed for 2 more ends bit-identical to an uninterrupted run, and m equals the float64 m₃.
func TestFriendlySAMResume(t *testing.T) {
	p := newLogistic(4)
	newOpt := func() optimizers.Interface {
		return grcontrib.FriendlySAM(optimizers.Adam().LearningRate(0.05).Done()).Rho(0.2).Done()
	}
	uninterrupted, _ := p.run(t, context.New(), newOpt(), 4, true)
	ctx, resumed := p.resume(t, newOpt, 2, 4)
	assert.Equal(t, uninterrupted[3], resumed)

	// m after the 4 steps, from the weights the run took (its θ before each step), in float64.
	m := make([]float64, 4)
	thetas := append([][]float64{p.theta0()}, uninterrupted[:3]...)
	for step, theta := range thetas {
		if step == 0 {
			m = p.grad(theta)
		} else {
			m = axpby(0.9, m, 0.1, p.grad(theta))
		}
	}
	w := ctx.GetVariableByScopeAndName(gr.Scope+"/state/friendlysam_m", "w")
	b := ctx.GetVariableByScopeAndName(gr.Scope+"/state/friendlysam_m", "b")
	require.NotNil(t, w, "state variable")
	got := append(tensors.MustCopyFlatData[float64](w.MustValue()), b.MustValue().Value().(float64))
	assert.Less(t, relErr(got, m), 1e-12)
}

// customUSAM is USAM written through the public API.
func customUSAM(base optimizers.Interface) *gr.Config {
	return newUSAM(base).Declare(gr.Hyperparameter{Key: gr.ParamRho, Default: gr.DefaultUSAMRho, Max: math.Inf(1)}).Penalty(func(s *gr.Step) *Node {
		return Mul(MulScalar(s.Param(gr.ParamRho), 0.5), grvec.InnerProduct(s.Grad(), s.Grad()))
	})
}

var newUSAM = gr.NewMethod("USAM", func(s *gr.Step) []*Node {
	return s.GradAlong(s.Param(gr.ParamRho))
})

// TestCustomUSAMIsUSAM: USAM written outside the package is bit-identical to gr.USAM, alone and with
// Every(3), WarmUp(2) and the GR metrics (both kinds of graph), none of which its code knows about; its
// stored correction is checkpointed like gr.USAM's.
func TestCustomUSAMIsUSAM(t *testing.T) {
	p := newLogistic(5)
	for _, viaGR := range []bool{true, false} {
		plain, _ := p.run(t, context.New(), gr.USAM(sgd(0.5)).Rho(0.3).Done(), 4, viaGR)
		custom, _ := p.run(t, context.New(), customUSAM(sgd(0.5)).Rho(0.3).Done(), 4, viaGR)
		assert.Equal(t, plain, custom, "viaGR=%v", viaGR)

		plain, plainM := p.run(t, context.New(), gr.USAM(sgd(0.5)).Rho(0.3).Every(3).WarmUp(2).Done(), 5, viaGR)
		custom, customM := p.run(t, context.New(), customUSAM(sgd(0.5)).Rho(0.3).Every(3).WarmUp(2).Done(), 5, viaGR)
		assert.Equal(t, plain, custom, "Every, WarmUp: viaGR=%v", viaGR)
		assert.Equal(t, plainM, customM, "metrics: viaGR=%v", viaGR)
		require.Len(t, customM[0], 7, "loss metrics and the four GR metrics")
	}
	newOpt := func() optimizers.Interface { return customUSAM(sgd(0.5)).Rho(0.3).Every(3).Done() }
	uninterrupted, _ := p.run(t, context.New(), newOpt(), 6, true)
	_, resumed := p.resume(t, newOpt, 4, 6)
	assert.Equal(t, uninterrupted[5], resumed, "the stored correction of step 3 is restored for steps 4 and 5")
}

// TestRegistered: the three methods are gr_method values, FromContext reads their own hyperparameters and
// ParamDefaults lists them with their defaults.
func TestRegistered(t *testing.T) {
	for _, name := range []string{"gsam", "looksam", "friendlysam"} {
		assert.Contains(t, gr.Methods(), name)
	}
	p := newLogistic(6)
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "friendlysam", grcontrib.ParamFriendlySAMSigma: 0.5, gr.ParamGamma: -1.0})
	opt, err := gr.FromContext(ctx, sgd(0.5))
	require.NoError(t, err)
	got, _ := p.run(t, context.New(), opt, 2, true)
	want, _ := p.run(t, context.New(), grcontrib.FriendlySAM(sgd(0.5)).Set(grcontrib.ParamFriendlySAMSigma, 0.5).Done(), 2, true)
	assert.Equal(t, want, got)

	defaults, err := gr.ParamDefaults("friendlysam")
	require.NoError(t, err)
	assert.Equal(t, 0.05, defaults[gr.ParamRho])
	assert.Equal(t, 1.0, defaults[grcontrib.ParamFriendlySAMSigma])
	assert.Equal(t, 0.9, defaults[grcontrib.ParamFriendlySAMLambda])
	assert.Contains(t, gr.ParamKeys(), grcontrib.ParamFriendlySAMLambda)
	_, err = grcontrib.GSAM(sgd(0.1)).Eta(0.1).Build()
	assert.ErrorContains(t, err, "GSAM has no hyperparameter Eta (η)")
}
