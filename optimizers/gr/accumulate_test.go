package gr_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// accumulate trains with AccumulateGradients(n) through gr.NewTrainer, feeding the n groups of p's batch as
// micro-batches, cycles times, and returns θ after each cycle and the reported losses.
func (p *problem) accumulate(t testing.TB, ctx *context.Context, opt optimizers.Interface, n, cycles int) (thetas [][]float64, losses []float64) {
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, nil, nil)
	require.NoError(t, trainer.AccumulateGradients(n))
	for range cycles {
		for k := range n {
			x, y := p.group(k, n).tensors()
			metrics, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			losses = append(losses, metrics[0].Value().(float64))
		}
		thetas = append(thetas, variableValues(ctx, "W", "v"))
	}
	return thetas, losses
}

// TestAccumulationIsGroups: AccumulateGradients(n) over the n groups of a batch, as micro-batches, equals one
// step of Groups(n) on the whole batch (up to rounding) and the independent float64 mean of the per-group
// formulas, for every method; each micro-batch reports its own loss; the base optimizer steps once per cycle.
//
// The problem and hyperparameters are TestGroupsMatchesMeanOfGroups', whose Groups(n) steps it shares.
func TestAccumulationIsGroups(t *testing.T) {
	parallelOnXLA(t)
	p := groupsProblem
	theta0 := p.theta0()
	gamma, eps, hp := groupsGamma, groupsEps, groupsHP
	for _, method := range append(append([]string{}, allMethods...), samMethods...) {
		for _, n := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/n=%d", method, n), func(t *testing.T) {
				ctx := context.New()
				thetas, losses := p.accumulate(t, ctx, groupsConfig(method, sgd(1), gamma, eps, hp).Done(), n, 1)
				groups, _ := groupsStep(t, method, n)
				assert.Less(t, relErr(thetas[0], groups), 1e-13, "= Groups(n)")
				want := groupsReference(p, method, n, theta0, gamma, eps, hp)
				assert.Less(t, relErr(gradientFromStep(theta0, thetas[0]), want), 1e-9, "= mean of per-group formulas")
				for k := range n {
					assert.InDelta(t, p.group(k, n).loss(theta0), losses[k], 1e-12, "micro-batch %d loss", k)
				}
				assert.Equal(t, int64(1), optimizers.GetGlobalStep(ctx))
			})
		}
	}
}

// TestAccumulationCheckpointResume: a run saved at a cycle boundary and resumed in a new context and trainer
// ends bit-identical to an uninterrupted one (Adam base).
func TestAccumulationCheckpointResume(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(32, 12, 3, 4, 0.01)
	newOpt := func() optimizers.Interface {
		return gr.SAM(optimizers.Adam().LearningRate(0.02).Done()).Rho(0.1).Done()
	}
	uninterrupted, _ := p.accumulate(t, context.New(), newOpt(), 3, 4)

	dir := t.TempDir()
	ctx1 := context.New()
	handler, err := checkpoints.Build(ctx1).Dir(dir).Done()
	require.NoError(t, err)
	first, _ := p.accumulate(t, ctx1, newOpt(), 3, 2)
	require.NoError(t, handler.Save())
	assert.Equal(t, uninterrupted[1], first[1])

	ctx2 := context.New()
	_, err = checkpoints.Build(ctx2).Dir(dir).Done()
	require.NoError(t, err)
	resumed, _ := p.accumulate(t, ctx2.Checked(false), newOpt(), 3, 2)
	assert.Equal(t, uninterrupted[3], resumed[1], "resumed run differs from the uninterrupted one")
	assert.Equal(t, int64(4), optimizers.GetGlobalStep(ctx2))
}

// TestAccumulationRefusals: a method of this package under plain train.NewTrainer with accumulation fails
// at graph build saying to use gr.NewTrainer (instead of silently running the base step); Every(k > 1)
// with accumulation fails naming both.
func TestAccumulationRefusals(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(33, 8, 3, 4, 0)
	x, y := p.tensors()
	trainer := train.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss,
		gr.DoubleBackprop(sgd(1)).Done(), nil, nil)
	require.NoError(t, trainer.AccumulateGradients(2))
	_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	if err == nil { // The first micro-batch does not apply; the second does.
		_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build the trainer with gr.NewTrainer")

	trainer = gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss,
		gr.ForwardDifference(sgd(1)).Every(3).Done(), nil, nil)
	require.NoError(t, trainer.AccumulateGradients(2))
	_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Every(3) cannot be combined with Trainer.AccumulateGradients")
}

// TestAccumulationGuard: a NaN in one micro-batch drops its whole cycle — the weights and Adam's state stay
// as they were, one skipped step is counted, the micro-batch reports its NaN loss — and the next cycle
// trains as if the dropped cycle had not been there.
func TestAccumulationGuard(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(34, 8, 3, 4, 0.01)
	newTrainer := func(ctx *context.Context) *train.Trainer {
		tr := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss,
			gr.ForwardDifference(optimizers.Adam().LearningRate(0.01).Done()).Done(), nil, nil)
		require.NoError(t, tr.AccumulateGradients(2))
		return tr
	}
	x0, y0 := p.group(0, 2).tensors()
	x1, y1 := p.group(1, 2).tensors()
	nx, ny := p.group(1, 2).nanBatch()
	run := func(tr *train.Trainer, batches [][2]*tensors.Tensor) (losses []float64) {
		for _, b := range batches {
			m, err := tr.TrainStep(nil, []*tensors.Tensor{b[0]}, []*tensors.Tensor{b[1]})
			require.NoError(t, err)
			losses = append(losses, m[0].Value().(float64))
		}
		return
	}
	ctxRef := context.New()
	run(newTrainer(ctxRef), [][2]*tensors.Tensor{{x0, y0}, {x1, y1}, {x0, y0}, {x1, y1}})

	ctx := context.New()
	tr := newTrainer(ctx)
	run(tr, [][2]*tensors.Tensor{{x0, y0}, {x1, y1}})
	before := variableValues(ctx, "W", "v")
	losses := run(tr, [][2]*tensors.Tensor{{nx, ny}, {x1, y1}})
	assert.True(t, math.IsNaN(losses[0]), "NaN micro-batch reports NaN")
	assert.False(t, math.IsNaN(losses[1]))
	assert.Equal(t, before, variableValues(ctx, "W", "v"), "dropped cycle")
	assert.Equal(t, int64(1), optimizers.GetGlobalStep(ctx))
	assert.Equal(t, int64(1), ctx.GetVariableByScopeAndName(gr.Scope+"/guard", gr.MetricSkipped).MustValue().Value())
	run(tr, [][2]*tensors.Tensor{{x0, y0}, {x1, y1}})
	assert.Equal(t, variableValues(ctxRef, "W", "v"), variableValues(ctx, "W", "v"))
}
