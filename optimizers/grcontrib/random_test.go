package grcontrib_test

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resumeSeed seeds the random-number state of the runs that resume compares with.
const resumeSeed = 11

// seeded returns a new context whose random-number state is seeded.
func seeded(seed int64) *context.Context {
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(seed); err != nil {
		panic(err)
	}
	return ctx
}

// rngState reads the context's random-number state (a copy).
func rngState(t *testing.T, ctx *context.Context) *tensors.Tensor {
	v := ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
	require.NotNil(t, v, "the context's random-number state")
	return tensors.FromValue(tensors.MustCopyFlatData[uint64](v.MustValue()))
}

// normalDraws reads back what Step.RandomNormal draws from state for θ = (w [3], b []) in float64: n
// consecutive calls (e.g. one per group), each z = (z_w, z_b), computed by GoMLX's own generator.
func normalDraws(t *testing.T, state *tensors.Tensor, n int) [][]float64 {
	b, err := grbackend.New()
	require.NoError(t, err)
	outs := MustExecOnceN(b, func(s *Node) []*Node {
		var out []*Node
		for range n {
			var zw, zb *Node
			s, zw = RandomNormal(s, shapes.Make(tensors.FromValue(0.0).DType(), 3))
			s, zb = RandomNormal(s, shapes.Make(tensors.FromValue(0.0).DType()))
			out = append(out, zw, zb)
		}
		return out
	}, state)
	draws := make([][]float64, n)
	for k := range n {
		draws[k] = append(tensors.MustCopyFlatData[float64](outs[2*k]), outs[2*k+1].Value().(float64))
	}
	return draws
}

// rwpReference is one m-RWP gradient of p in float64 for the draws z = (z_w, z_b): ε_w = σ(‖w‖ + δ)z_w (w is a
// vector), ε_b = σ(|b| + δ)z_b, g = (1 − λ)g₁ + λ∇L(θ + ε).
func rwpReference(p *logistic, theta, z []float64, sigma, lambda float64) []float64 {
	d := len(p.w0)
	eps := make([]float64, len(theta))
	sw := norm(theta[:d]) + gr.NormStabilizer
	for i := range d {
		eps[i] = sigma * sw * z[i]
	}
	eps[d] = sigma * (math.Abs(theta[d]) + gr.NormStabilizer) * z[d]
	return axpby(1-lambda, p.grad(theta), lambda, p.grad(axpby(1, theta, 1, eps)))
}

// halves splits p's 12 examples into the two groups (or micro-batches) of 6 that Groups(2) and
// AccumulateGradients(2) see.
func halves(p *logistic) [2]*logistic {
	var h [2]*logistic
	for k := range h {
		h[k] = &logistic{x: p.x[6*k : 6*k+6], y: p.y[6*k : 6*k+6], w0: p.w0, b0: p.b0}
	}
	return h
}

// rwpHalvesReference is the mean of the two halves' RWP gradients at theta, half k with the draws z[k].
func rwpHalvesReference(p *logistic, theta []float64, z [][]float64, sigma, lambda float64) []float64 {
	h := halves(p)
	return axpby(0.5, rwpReference(h[0], theta, z[0], sigma, lambda), 0.5, rwpReference(h[1], theta, z[1], sigma, lambda))
}

// TestRWPSteps: RWP over 3 steps against float64, with the draws read back from the context's generator
// before each step: a new draw every step, reproducible from the seed.
func TestRWPSteps(t *testing.T) {
	p := newLogistic(7)
	const lr, sigma, lambda = 0.5, 0.3, 0.6
	b, err := grbackend.New()
	require.NoError(t, err)
	ctx := seeded(3)
	trainer := gr.NewTrainer(b, ctx, p.modelFn, logLoss,
		grcontrib.RWP(sgd(lr)).Set(grcontrib.ParamRWPSigma, sigma).Set(grcontrib.ParamRWPLambda, lambda).Done(), nil, nil)
	x, y := p.tensors()
	theta := p.theta0()
	var previous []float64
	for step := range 3 {
		z := normalDraws(t, rngState(t, ctx), 1)[0]
		assert.NotEqual(t, previous, z, "a new draw at step %d", step)
		previous = z
		theta = axpby(1, theta, -lr, rwpReference(p, theta, z, sigma, lambda))
		_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
		assert.Less(t, relErr(thetaOf(ctx), theta), 1e-12, "step %d", step)
	}

	again, _ := p.run(t, seeded(3), grcontrib.RWP(sgd(lr)).Set(grcontrib.ParamRWPSigma, sigma).
		Set(grcontrib.ParamRWPLambda, lambda).Done(), 3, true)
	assert.Equal(t, thetaOf(ctx), again[2], "the same seed gives the same run")
	other, _ := p.run(t, seeded(4), grcontrib.RWP(sgd(lr)).Set(grcontrib.ParamRWPSigma, sigma).
		Set(grcontrib.ParamRWPLambda, lambda).Done(), 3, true)
	assert.Greater(t, relErr(other[2], again[2]), 1e-9, "another seed draws other numbers")
}

// TestRWPGroups: with Groups(2) each group gets its own draw (the second continues the generator where the
// first left it) and the gradient is the mean of the groups' RWP gradients, against float64.
func TestRWPGroups(t *testing.T) {
	p := newLogistic(8)
	const lr, sigma, lambda = 0.5, 0.3, 0.5
	ctx := seeded(5)
	b, err := grbackend.New()
	require.NoError(t, err)
	trainer := gr.NewTrainer(b, ctx, p.modelFn, logLoss,
		grcontrib.RWP(sgd(lr)).Set(grcontrib.ParamRWPSigma, sigma).Set(grcontrib.ParamRWPLambda, lambda).Groups(2).Done(), nil, nil)
	z := normalDraws(t, rngState(t, ctx), 2)
	require.NotEqual(t, z[0], z[1])
	theta := p.theta0()
	g := rwpHalvesReference(p, theta, z, sigma, lambda)
	x, y := p.tensors()
	_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.NoError(t, err)
	assert.Less(t, relErr(thetaOf(ctx), axpby(1, theta, -lr, g)), 1e-12)
}

// TestRWPResumeAndEvery: the generator's state is checkpointed (a resumed run is bit-identical to an
// uninterrupted one), and under Every(2) the graph per phase and the graph of both phases give the same
// trajectory (the state advances by the draws of the step's phase only).
func TestRWPResumeAndEvery(t *testing.T) {
	p := newLogistic(9)
	newOpt := func() optimizers.Interface {
		return grcontrib.RWP(optimizers.Adam().LearningRate(0.05).Done()).Set(grcontrib.ParamRWPSigma, 0.2).Done()
	}
	uninterrupted, _ := p.run(t, seeded(resumeSeed), newOpt(), 4, true)
	_, resumed := p.resume(t, newOpt, 2, 4)
	assert.Equal(t, uninterrupted[3], resumed)

	every := func() optimizers.Interface {
		return grcontrib.RWP(sgd(0.5)).Set(grcontrib.ParamRWPSigma, 0.2).Every(2).Done()
	}
	perPhase, _ := p.run(t, seeded(6), every(), 5, true)
	bothPhases, _ := p.run(t, seeded(6), every(), 5, false)
	assert.Equal(t, perPhase, bothPhases)
}

// TestWSAMOneStep: one WSAM step against g = g₁ + (γ/(1 − γ))(∇L(θ + ρg₁/‖g₁‖) − g₁) in float64; γ = 1/2 is
// SAM; γ = 1 is out of range; the curvature metric is SAM's (the perturbation is along g₁) and the penalty
// is (γ/(1 − γ))ρ‖g₁‖.
func TestWSAMOneStep(t *testing.T) {
	p := newLogistic(10)
	const lr, rho, gamma = 0.5, 0.3, 0.8
	theta0 := p.theta0()
	g1 := p.grad(theta0)
	gp := p.grad(axpby(1, theta0, 1, rescale(rho, g1)))
	w := gamma / (1 - gamma)
	want := axpby(1, theta0, -lr, axpby(1-w, g1, w, gp))
	got, m := p.run(t, context.New(), grcontrib.WSAM(sgd(lr)).Rho(rho).Set(grcontrib.ParamWSAMGamma, gamma).Done(), 1, true)
	assert.Less(t, relErr(got[0], want), 1e-12)
	n := len(m[0])
	assert.InDelta(t, w*rho*norm(g1), m[0][n-3], 1e-12, "penalty")

	half, _ := p.run(t, context.New(), grcontrib.WSAM(sgd(lr)).Rho(rho).Set(grcontrib.ParamWSAMGamma, 0.5).Done(), 1, true)
	sam, samM := p.run(t, context.New(), gr.SAM(sgd(lr)).Rho(rho).Done(), 1, true)
	assert.Less(t, relErr(half[0], sam[0]), 1e-12, "γ = 1/2 is SAM")
	assert.Equal(t, samM[0][n-2], m[0][n-2], "curvature metric")
	assert.NotZero(t, m[0][n-2])

	_, err := grcontrib.WSAM(sgd(lr)).Set(grcontrib.ParamWSAMGamma, 1.0).Build()
	assert.ErrorContains(t, err, "Gamma (γ) [gr_wsam_gamma] must be a finite number in [0, 1), got 1")
}

// TestCurvatureOnlyAlongG1: methods whose perturbation is not along g₁ (RWP, FriendlySAM, ASAM) report no
// curvature metric (it stays 0) instead of a wrong one; those that perturb along g₁ report it.
func TestCurvatureOnlyAlongG1(t *testing.T) {
	p := newLogistic(12)
	for name, tc := range map[string]struct {
		opt  optimizers.Interface
		zero bool
	}{
		"rwp":         {grcontrib.RWP(sgd(0.1)).Done(), true},
		"friendlysam": {grcontrib.FriendlySAM(sgd(0.1)).Done(), true},
		"asam":        {gr.ASAM(sgd(0.1)).Done(), true},
		"gsam":        {grcontrib.GSAM(sgd(0.1)).Done(), false},
		"looksam":     {grcontrib.LookSAM(sgd(0.1)).Done(), false},
	} {
		_, m := p.run(t, seeded(1), tc.opt, 2, true)
		curvature := m[1][len(m[1])-2]
		if tc.zero {
			assert.Zero(t, curvature, name)
		} else {
			assert.Greater(t, curvature, 0.0, name)
		}
	}
}

// TestRWPAccumulation: with AccumulateGradients(2) each micro-batch draws its own numbers (the second
// continues the generator where the first left it) and the step applies the mean of the two micro-batches'
// RWP gradients, against float64.
func TestRWPAccumulation(t *testing.T) {
	p := newLogistic(13)
	const lr, sigma, lambda = 0.5, 0.3, 0.5
	ctx := seeded(9)
	b, err := grbackend.New()
	require.NoError(t, err)
	trainer := gr.NewTrainer(b, ctx, p.modelFn, logLoss,
		grcontrib.RWP(sgd(lr)).Set(grcontrib.ParamRWPSigma, sigma).Set(grcontrib.ParamRWPLambda, lambda).Done(), nil, nil)
	require.NoError(t, trainer.AccumulateGradients(2))
	z := normalDraws(t, rngState(t, ctx), 2)
	theta := p.theta0()
	g := rwpHalvesReference(p, theta, z, sigma, lambda)
	for _, half := range halves(p) {
		x, y := half.tensors()
		_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
	}
	assert.Less(t, relErr(thetaOf(ctx), axpby(1, theta, -lr, g)), 1e-12)
}
