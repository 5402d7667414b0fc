package gr_test

import (
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/batchnorm"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runOneStep trains one step of modelFn on p's data and returns the context.
func runOneStep(t *testing.T, p *problem, modelFn train.ModelFn, opt optimizers.Interface) *context.Context {
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(42)) // Same dropout masks in every run.
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, squaredLoss, opt, nil, nil)
	x, y := p.tensors()
	_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.NoError(t, err)
	return ctx
}

// TestBatchNormStatisticsFromFirstPass: after one GR step the batch-norm moving statistics equal those
// after one plain step from the same θ (i.e. one forward pass at θ), not those of the perturbed pass.
func TestBatchNormStatisticsFromFirstPass(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(6, 16, 3, 4, 0)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		x := inputs[0]
		g := x.Graph()
		w := ctx.VariableWithValue("W", tensors.FromFlatDataAndDimensions(p.w0, p.in(), p.hidden)).ValueGraph(g)
		v := ctx.VariableWithValue("v", tensors.FromFlatDataAndDimensions(p.v0, p.hidden)).ValueGraph(g)
		h := batchnorm.New(ctx, Dot(x, w), -1).UseBackendInference(false).Done()
		return []*Node{Dot(Tanh(h), v)}
	}
	bnStats := func(ctx *context.Context) map[string][]float64 {
		out := map[string][]float64{}
		for v := range ctx.IterVariables() {
			if !v.Trainable && strings.HasSuffix(v.Scope(), batchnorm.BatchNormalizationScopeName) {
				out[v.ScopeAndName()] = tensors.MustCopyFlatData[float64](v.MustValue())
			}
		}
		return out
	}
	plain := bnStats(runOneStep(t, p, modelFn, sgd(0.5)))
	require.Contains(t, plain, "/batch_normalization/mean")
	require.Contains(t, plain, "/batch_normalization/avg_weight")
	assert.Equal(t, []float64{1, 1, 1, 1}, plain["/batch_normalization/avg_weight"])
	for _, method := range allMethods {
		ctx := runOneStep(t, p, modelFn, build(method, sgd(0.5), 0.1, 0.1, false))
		got := bnStats(ctx)
		for name, want := range plain {
			assert.InDeltaSlice(t, want, got[name], 1e-12, "%s: %s", method, name)
		}
	}
}

// TestDropoutSameMaskBothPasses: with dropout the loss is quadratic in v for a fixed mask, so F-GR, B-GR
// and central GR equal DB for any ε exactly when the second pass draws the first pass's mask. The RNG
// state advances as after one plain step.
func TestDropoutSameMaskBothPasses(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(7, 32, 6, 1, 0)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		x := layers.DropoutStatic(ctx, inputs[0], 0.5)
		v := ctx.VariableWithValue("v", tensors.FromFlatDataAndDimensions(p.w0, p.in())).ValueGraph(x.Graph())
		return []*Node{Dot(x, v)}
	}
	rngState := func(ctx *context.Context) []uint64 {
		v := ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
		// The pure-Go backend may lose the third word of the state when it feeds several ops:
		// compare the first two only.
		return tensors.MustCopyFlatData[uint64](v.MustValue())[:2]
	}
	vOf := func(ctx *context.Context) []float64 { return variableValues(ctx, "v") }
	plainCtx := runOneStep(t, p, modelFn, sgd(0.5))
	dbCtx := runOneStep(t, p, modelFn, build("db", sgd(0.5), 0.3, 0.1, false))
	assert.Greater(t, relErr(vOf(dbCtx), vOf(plainCtx)), 1e-6, "GR must change the step")
	for _, method := range []string{"forward", "backward", "central"} {
		for _, eps := range []float64{0.01, 0.5} {
			ctx := runOneStep(t, p, modelFn, build(method, sgd(0.5), 0.3, eps, false))
			assert.Less(t, relErr(vOf(ctx), vOf(dbCtx)), 1e-10, "%s ε=%g", method, eps)
			assert.Equal(t, rngState(plainCtx), rngState(ctx), "%s: RNG state", method)
		}
	}
}
