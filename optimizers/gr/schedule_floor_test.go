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

// TestScheduleWithNonZeroFloors: FollowLearningRate with a learning rate that decays to a non-zero lrMin and a
// non-zero minValue, for SAM's ρ and F-GR's γ: each step follows the float64 recursion with
// value_t = minValue + (value − minValue)(lr_t − lrMin)/(lrMax − lrMin), reaching minValue exactly at
// lr_t = lrMin (and going below it, linearly, for lr_t < lrMin), and the variable holds value_t. Zero floors
// (TestRhoFollowsLearningRate has lrMin = 0) cannot tell lr_t − lrMin from lr_t.
func TestScheduleWithNonZeroFloors(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(64, 12, 3, 4, 0.01)
	const lrMax, lrMin = 0.4, 0.1
	lrs := []float64{lrMax, 0.3, 0.2, lrMin, 0.05}
	for _, tc := range []struct {
		name      string
		key       string
		value     float64
		minValue  float64
		cfg       func(value float64) *gr.Config
		reference func(theta []float64, v float64) []float64
	}{
		{"SAM ρ", gr.ParamRho, 0.2, 0.05,
			func(v float64) *gr.Config { return gr.SAM(sgd(lrMax)).Rho(v) },
			func(theta []float64, v float64) []float64 { return samReference(p, "sam", theta, samParams{rho: v}) }},
		{"F-GR γ", gr.ParamGamma, 0.3, 0.1,
			func(v float64) *gr.Config { return gr.ForwardDifference(sgd(lrMax)).Gamma(v).Epsilon(0.05) },
			func(theta []float64, v float64) []float64 {
				return referenceGradient(p, "forward", theta, v, 0.05, false, false)
			}},
	} {
		opt := tc.cfg(tc.value).Schedule(tc.key, gr.FollowLearningRate(lrMax, lrMin, tc.minValue)).Done()
		ctx := context.New()
		trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, nil, nil)
		x, y := p.tensors()
		theta := p.theta0()
		for step, lr := range lrs {
			if step > 0 {
				ctx.In(optimizers.Scope).GetVariable(optimizers.ParamLearningRate).MustSetValue(tensors.FromValue(lr))
			}
			_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			vt := tc.minValue + (tc.value-tc.minValue)*(lr-lrMin)/(lrMax-lrMin)
			if lr == lrMin {
				assert.Equal(t, tc.minValue, vt) // The floor, exactly, in the reference too.
			}
			theta = axpy(-lr, tc.reference(theta, vt), theta)
			assert.Less(t, relErr(variableValues(ctx, "W", "v"), theta), 1e-10, "%s: step %d (lr %g)", tc.name, step, lr)
			got := gr.HyperparameterVar(ctx, opt.(*gr.Regularized), tc.key).MustValue().Value().(float64)
			assert.InDelta(t, vt, got, 1e-14, "%s: step %d", tc.name, step)
		}
	}
}
