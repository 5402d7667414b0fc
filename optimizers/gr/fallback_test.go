package gr_test

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGuardNonFiniteGradient: a finite loss with a non-finite gradient (L = √w at w = 0: L = 0, ∇L = +Inf)
// writes nothing and counts one skipped step, no fallback (g₁ is not finite). Every other guard test has a
// NaN input, which makes the loss NaN too. Kills the mutant "the guard tests L but not the gradient".
func TestGuardNonFiniteGradient(t *testing.T) {
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", []float64{0, 1}).ValueGraph(inputs[0].Graph())
		return []*Node{ReduceAllSum(Mul(Sqrt(w), inputs[0]))}
	}
	lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
	for _, method := range []string{"forward", "sam"} {
		ctx := context.New()
		opt := groupsConfig(method, sgd(0.1), 0.05, 0.05, samParams{rho: 0.05}).Done()
		trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, gr.GuardMetrics(), nil)
		x := tensors.FromValue([]float64{1, 1})
		res, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
		require.NoError(t, err)
		assert.Equal(t, 1.0, res[0].Value(), "%s: the loss is finite", method)
		assert.Equal(t, 1.0, metricAt(t, trainer, res, "GR skipped"), method)
		assert.Equal(t, 0.0, metricAt(t, trainer, res, "GR fallbacks"), method)
		assert.Equal(t, []float64{0, 1}, variableValues(ctx, "w"), "%s: nothing written", method)
		assert.Equal(t, int64(0), optimizers.GetGlobalStep(ctx), method)
	}
}

// TestGuardNaNLossIsNotAFallback: a step whose loss is NaN while g₁ is finite (a NaN term that does not depend
// on θ: log of a negative label) and whose perturbed gradient overflows is skipped, not counted as a
// fallback: a fallback is a step that trained with g₁. Kills the mutant "NaN-loss steps counted as fallbacks"
// (the fallback condition without the loss's finiteness).
func TestGuardNaNLossIsNotAFallback(t *testing.T) {
	k, w0 := 1e4, 0.03
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
		return []*Node{Exp(MulScalar(Mul(w, ReduceAllSum(inputs[0])), k))}
	}
	lossFn := func(labels, predictions []*Node) *Node { return Add(predictions[0], ReduceAllSum(Log(labels[0]))) }
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, gr.ForwardDifference(sgd(1e-136)).Done(),
		gr.GuardMetrics(), nil)
	res, err := trainer.TrainStep(nil, []*tensors.Tensor{tensors.FromValue([]float64{1})},
		[]*tensors.Tensor{tensors.FromValue([]float64{-1})})
	require.NoError(t, err)
	require.True(t, math.IsNaN(res[0].Value().(float64)))
	assert.Equal(t, 0.0, metricAt(t, trainer, res, "GR fallbacks"))
	assert.Equal(t, 1.0, metricAt(t, trainer, res, "GR skipped"))
	assert.Equal(t, []float64{w0}, variableValues(ctx, "w"))
}
