package gr_test

import (
	"sync/atomic"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"math"
)

// run trains steps steps with opt and returns θ after each step. With viaGR the steps go through
// gr.TrainStep (one graph per phase), otherwise through trainer.TrainStep (one graph selecting in-graph).
func (p *problem) run(t testing.TB, ctx *context.Context, opt optimizers.Interface, steps int, viaGR bool,
	modelFn train.ModelFn) [][]float64 {
	if modelFn == nil {
		modelFn = p.modelFn(false)
	}
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, squaredLoss, opt, nil, nil)
	x, y := p.tensors()
	var thetas [][]float64
	for range steps {
		var err error
		if viaGR {
			_, err = gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		} else {
			_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		}
		require.NoError(t, err)
		thetas = append(thetas, variableValues(ctx, "W", "v"))
	}
	return thetas
}

// TestEveryOneIsPlain: Every(1) is the plain method, bit for bit.
func TestEveryOneIsPlain(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(11, 12, 3, 4, 0.01)
	for _, method := range allMethods {
		plain := p.run(t, context.New(), build(method, sgd(0.2), 0.05, 0.05, false), 3, false, nil)
		every := p.run(t, context.New(), buildCfg(method, sgd(0.2), 0.05, 0.05).Every(1).Done(), 3, true, nil)
		assert.Equal(t, plain, every, method)
	}
}

func buildCfg(method string, base optimizers.Interface, gamma, eps float64) *gr.Config {
	constructors := map[string]func(optimizers.Interface) *gr.Config{
		"db": gr.DoubleBackprop, "forward": gr.ForwardDifference,
		"backward": gr.BackwardDifference, "central": gr.CentralDifference,
	}
	cfg := constructors[method](base).Gamma(gamma)
	if method != "db" { // DB has γ only.
		cfg.Epsilon(eps)
	}
	return cfg
}

// TestEveryMatchesReference: with Every(k) the trajectory is θ ← θ − lr(g₁ + c), c refreshed on the steps
// t ≡ 0 mod k with the method's own (g − g₁), computed independently in float64; with and without the
// per-phase graphs.
func TestEveryMatchesReference(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(12, 12, 3, 4, 0.01)
	const lr, gamma, eps, k, steps = 0.3, 0.07, 0.03, 3, 7
	for _, method := range allMethods {
		// Reference.
		theta := p.theta0()
		var c []float64
		var want [][]float64
		for step := range steps {
			g1 := p.grad(theta, false)
			if step%k == 0 {
				c = axpy(-1, g1, referenceGradient(p, method, theta, gamma, eps, false, false))
			}
			theta = axpy(-lr, axpy(1, c, g1), theta)
			want = append(want, theta)
		}
		for _, viaGR := range []bool{true, false} {
			got := p.run(t, context.New(), buildCfg(method, sgd(lr), gamma, eps).Every(k).Done(), steps, viaGR, nil)
			for step := range steps {
				assert.Less(t, relErr(got[step], want[step]), 1e-8, "%s viaGR=%v step %d", method, viaGR, step)
			}
		}
	}
}

// TestEverySkipsTheSecondPass: with gr.TrainStep the skip steps run a graph that evaluates the model once:
// over 6 steps with k = 3, the model is built 2 (ascent graph) + 1 (skip graph) times; with
// trainer.TrainStep the single graph evaluates it twice.
func TestEverySkipsTheSecondPass(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(13, 8, 3, 4, 0.01)
	for _, tc := range []struct {
		viaGR bool
		calls int64
	}{{true, 3}, {false, 2}} {
		var calls atomic.Int64
		inner := p.modelFn(false)
		counting := func(ctx *context.Context, spec any, inputs []*graph.Node) []*graph.Node {
			calls.Add(1)
			assert.Nil(t, spec, "the model sees the dataset's own spec")
			return inner(ctx, spec, inputs)
		}
		opt := gr.ForwardDifference(sgd(0.1)).Every(3).Done()
		p.run(t, context.New(), opt, 6, tc.viaGR, counting)
		assert.Equal(t, tc.calls, calls.Load(), "viaGR=%v", tc.viaGR)
	}
}

// TestEveryCheckpointResume: a run stopped after 4 steps (k = 3: the correction of step 3 is stored),
// saved with a GoMLX checkpoint and resumed in a new context and trainer, ends bit-identical to an
// uninterrupted run (Adam base: its moments are restored too).
func TestEveryCheckpointResume(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(14, 12, 3, 4, 0.01)
	newOpt := func() optimizers.Interface {
		return gr.ForwardDifference(optimizers.Adam().LearningRate(0.02).Done()).
			Gamma(0.1).Epsilon(0.05).Every(3).Done()
	}
	uninterrupted := p.run(t, context.New(), newOpt(), 9, true, nil)

	dir := t.TempDir()
	ctx1 := context.New()
	handler, err := checkpoints.Build(ctx1).Dir(dir).Done()
	require.NoError(t, err)
	first := p.run(t, ctx1, newOpt(), 4, true, nil)
	require.NoError(t, handler.Save())
	assert.Equal(t, uninterrupted[3], first[3])

	ctx2 := context.New()
	_, err = checkpoints.Build(ctx2).Dir(dir).Done()
	require.NoError(t, err)
	// Loaded variables count as existing: the model's VariableWithValue must not insist on creating them.
	resumed := p.run(t, ctx2.Checked(false), newOpt(), 5, true, nil)
	assert.Equal(t, uninterrupted[8], resumed[4], "resumed run differs from the uninterrupted one")
	assert.Equal(t, int64(9), optimizers.GetGlobalStep(ctx2))
	corr := ctx2.GetVariableByScopeAndName(gr.Scope+"/every", "v")
	require.NotNil(t, corr, "stored correction variable")

	// The resumed steps 4 and 5 reuse the correction restored from the checkpoint: it is not zero.
	assert.NotEqual(t, make([]float64, p.hidden), tensors.MustCopyFlatData[float64](corr.MustValue()))
}

// TestEveryDatasetWithLoop: EveryDataset drives train.Loop through the per-phase graphs with the same result
// as gr.TrainStep.
func TestEveryDatasetWithLoop(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(15, 8, 3, 4, 0.01)
	want := p.run(t, context.New(), gr.ForwardDifference(sgd(0.1)).Every(2).Done(), 5, true, nil)
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss,
		gr.ForwardDifference(sgd(0.1)).Every(2).Done(), nil, nil)
	x, y := p.tensors()
	ds := &repeatDataset{x: x, y: y}
	_, err := train.NewLoop(trainer).RunSteps(gr.EveryDataset(trainer, ds), 5)
	require.NoError(t, err)
	assert.Equal(t, want[4], variableValues(ctx, "W", "v"))
}

// repeatDataset yields the same batch forever, keeping ownership of its tensors.
type repeatDataset struct{ x, y *tensors.Tensor }

func (d *repeatDataset) Name() string                 { return "repeat" }
func (d *repeatDataset) Reset()                       {}
func (d *repeatDataset) IsOwnershipTransferred() bool { return false }
func (d *repeatDataset) Yield() (any, []*tensors.Tensor, []*tensors.Tensor, error) {
	return nil, []*tensors.Tensor{d.x}, []*tensors.Tensor{d.y}, nil
}

// TestScheduleErrors: invalid k and warm-up lengths are reported with the parameter and its range.
func TestScheduleErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  *gr.Config
		want string
	}{
		{gr.ForwardDifference(sgd(0.1)).Every(0), "Every (k) [gr_every] must be an integer in [1, +∞), got 0"},
		{gr.ForwardDifference(sgd(0.1)).WarmUp(-1), "WarmUp (steps) [gr_warmup] must be an integer in [0, +∞), got -1"},
		{gr.DoubleBackprop(sgd(0.1)).ZeroWarmUp(-5), "ZeroWarmUp (steps) [gr_zero_warmup] must be an integer in [0, +∞), got -5"},
	} {
		_, err := tc.cfg.Build()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	// FromContext reads them.
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "forward", gr.ParamEvery: 4, gr.ParamWarmUp: 10})
	opt, err := gr.FromContext(ctx, sgd(0.1))
	require.NoError(t, err)
	assert.Equal(t, 4, opt.(*gr.Regularized).Params()[gr.ParamEvery])
	ctx.SetParam(gr.ParamEvery, 0)
	_, err = gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, "Every (k)")
}

// TestEveryBothBranchesMetrics: the graph that computes both phases of Every(k) and selects one (plain
// trainer.TrainStep) reports, step by step, the metrics of the per-phase graphs (gr.TrainStep): on reuse steps
// the curvature keeps the value of the last full step. Kills the mutant "the both-branch graph publishes the
// full branch's curvature on reuse steps".
func TestEveryBothBranchesMetrics(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(53, 12, 3, 4, 0.01)
	x, y := p.tensors()
	for _, newOpt := range []func() optimizers.Interface{
		func() optimizers.Interface { return gr.ForwardDifference(sgd(0.3)).Every(2).Done() },
		func() optimizers.Interface { return gr.SAM(sgd(0.3)).Rho(0.1).Every(3).WarmUp(2).Done() },
	} {
		perPhase := gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss, newOpt(), gr.Metrics(), nil)
		both := gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss, newOpt(), gr.Metrics(), nil)
		for step := range 6 {
			a, err := gr.TrainStep(perPhase, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			b, err := both.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			for _, name := range []string{"GR ‖∇L‖", "GR penalty", "GR curvature"} {
				want := metricAt(t, perPhase, a, name)
				assert.InDelta(t, want, metricAt(t, both, b, name), 1e-12*math.Abs(want), "step %d: %s", step, name)
			}
		}
	}
}
