package gr_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allVariables returns a copy of the value of every variable in ctx, by scope and name.
func allVariables(t *testing.T, ctx *context.Context) map[string]*tensors.Tensor {
	out := map[string]*tensors.Tensor{}
	for v := range ctx.IterVariables() {
		c, err := v.MustValue().LocalClone()
		require.NoError(t, err)
		out[v.ScopeAndName()] = c
	}
	return out
}

// nanBatch returns p's inputs with one NaN.
func (p *problem) nanBatch() (x, y *tensors.Tensor) {
	x, y = p.tensors()
	flat := tensors.MustCopyFlatData[float64](x)
	flat[len(flat)/2] = math.NaN()
	return tensors.FromFlatDataAndDimensions(flat, x.Shape().Dimensions...), y
}

// TestGuardNaNBatchWritesNothing: after finite steps with Adam as base, a step on a batch with one NaN
// reports the NaN loss and leaves every variable — weights, Adam's moments and step counter, the global
// step, the Every correction — bit-identical to its pre-step value (the trainer's own metrics aside), and
// counts one skipped step; the next finite step trains as if the NaN batch had not been there. Without the
// guard the NaN reaches the weights.
func TestGuardNaNBatchWritesNothing(t *testing.T) {
	p := newProblem(41, 12, 3, 4, 0.01)
	x, y := p.tensors()
	nx, ny := p.nanBatch()
	for _, method := range append(append([]string{}, allMethods...), samMethods...) {
		newOpt := func() *gr.Config {
			return groupsConfig(method, optimizers.Adam().LearningRate(0.01).Done(), 0.05, 0.05,
				samParams{rho: 0.05, alpha: 0.5, eta: 0.01}).Every(2)
		}
		step := func(tr *train.Trainer, x, y *tensors.Tensor) float64 {
			m, err := gr.TrainStep(tr, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			return m[0].Value().(float64)
		}
		// Reference: 3 finite steps.
		ctxRef := context.New()
		ref := gr.NewTrainer(backend(t), ctxRef, p.modelFn(false), squaredLoss, newOpt().Done(), nil, nil)
		for range 3 {
			step(ref, x, y)
		}
		// Guarded: 2 finite steps, the NaN batch, 1 finite step.
		ctx := context.New()
		tr := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, newOpt().Done(), gr.GuardMetrics(), nil)
		step(tr, x, y)
		step(tr, x, y)
		before := allVariables(t, ctx)
		require.True(t, math.IsNaN(step(tr, nx, ny)), "%s: the reported loss stays truthful", method)
		after := allVariables(t, ctx)
		for name, value := range before {
			if strings.HasPrefix(name, "/metrics") || strings.HasPrefix(name, gr.Scope+"/guard") {
				continue
			}
			require.Contains(t, after, name)
			assert.Equal(t, value.Value(), after[name].Value(), "%s: variable %s changed", method, name)
		}
		assert.Equal(t, int64(1), ctx.GetVariableByScopeAndName(gr.Scope+"/guard", gr.MetricSkipped).MustValue().Value())
		assert.Equal(t, int64(0), ctx.GetVariableByScopeAndName(gr.Scope+"/guard", gr.MetricFallbacks).MustValue().Value())
		step(tr, x, y)
		assert.Equal(t, variableValues(ctxRef, "W", "v"), variableValues(ctx, "W", "v"), "%s: training goes on", method)

		// Without the guard: NaN weights.
		ctxOff := context.New()
		off := gr.NewTrainer(backend(t), ctxOff, p.modelFn(false), squaredLoss, newOpt().GuardNonFinite(false).Done(), nil, nil)
		step(off, nx, ny)
		assert.True(t, math.IsNaN(variableValues(ctxOff, "W")[0]), "%s: without the guard", method)
	}
}

// TestGuardLoopCheckpoint: train.Loop with a checkpoint handler saving every step stops on the NaN batch
// with GoMLX's own error, and the checkpoint written at that step holds the finite pre-step weights.
func TestGuardLoopCheckpoint(t *testing.T) {
	p := newProblem(42, 12, 3, 4, 0.01)
	x, y := p.tensors()
	nx, ny := p.nanBatch()
	dir := t.TempDir()
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss,
		gr.ForwardDifference(optimizers.Adam().LearningRate(0.01).Done()).Done(), nil, nil)
	handler, err := checkpoints.Build(ctx).Dir(dir).Keep(1).Done()
	require.NoError(t, err)
	loop := train.NewLoop(trainer)
	train.EveryNSteps(loop, 1, "checkpoint", 0, handler.OnStepFn)
	ds := &listDataset{batches: [][2]*tensors.Tensor{{x, y}, {x, y}, {nx, ny}, {x, y}}}
	_, err = loop.RunSteps(ds, 4)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "batch loss is NaN")
	assert.Equal(t, 3, ds.next, "stopped on the NaN batch")
	want := variableValues(ctx, "W", "v")

	ctx2 := context.New()
	_, err = checkpoints.Build(ctx2).Dir(dir).Done()
	require.NoError(t, err)
	got := variableValues(ctx2, "W", "v")
	assert.Equal(t, want, got, "checkpoint holds the pre-step weights")
	for _, v := range got {
		require.False(t, math.IsNaN(v) || math.IsInf(v, 0))
	}
	assert.Equal(t, int64(2), optimizers.GetGlobalStep(ctx2))
}

// listDataset yields its batches in order, keeping ownership of its tensors.
type listDataset struct {
	batches [][2]*tensors.Tensor
	next    int
}

func (d *listDataset) Name() string                 { return "list" }
func (d *listDataset) Reset()                       { d.next = 0 }
func (d *listDataset) IsOwnershipTransferred() bool { return false }
func (d *listDataset) Yield() (any, []*tensors.Tensor, []*tensors.Tensor, error) {
	b := d.batches[d.next%len(d.batches)]
	d.next++
	return nil, []*tensors.Tensor{b[0]}, []*tensors.Tensor{b[1]}, nil
}

// TestGuardFallback: a loss finite at θ, with a finite gradient, but +Inf at the perturbed point
// (L = exp(kw), k = 10⁴, kw = 300: the ascent overflows float64) makes every method take the base step with
// g₁, computed independently, and count one fallback; training goes on. For DB, which has no perturbed
// point, k = 700 and w = 1 make γHg₁ overflow. B-GR is left out: its perturbation −εg₁ descends, where the
// loss is finite.
func TestGuardFallback(t *testing.T) {
	for _, method := range []string{"db", "forward", "central", "sam", "usam", "gnp", "asam"} {
		k, w0, lr := 1e4, 0.03, 1e-136
		if method == "db" {
			k, w0, lr = 700, 1, 1e-307
		}
		modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
			w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
			return []*Node{Exp(MulScalar(Mul(w, ReduceAllSum(inputs[0])), k))}
		}
		lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
		g1 := k * math.Exp(k*w0)
		require.False(t, math.IsInf(g1, 0))
		x := tensors.FromValue([]float64{1})
		ctx := context.New()
		hp := samParams{rho: 0.05, alpha: 0.5, eta: 0.01}
		if method == "asam" {
			hp.rho = 2 // ASAM's perturbation is ρ(|w| + η) here.
		}
		opt := groupsConfig(method, sgd(lr), 0.05, 0.05, hp).Done()
		trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, gr.GuardMetrics(), nil)
		for step := range 2 {
			m, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
			require.NoError(t, err, method)
			if step == 0 {
				assert.Equal(t, math.Exp(k*w0), m[0].Value(), "%s: loss", method)
				assert.Equal(t, 1.0, m[3].Value(), "%s: fallback metric", method)
				assert.Equal(t, 0.0, m[4].Value(), "%s: skipped metric", method)
				w1 := ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue().Value().(float64)
				assert.InDelta(t, w0-lr*g1, w1, 1e-12, "%s: base step with g₁", method)
			}
		}
		assert.Equal(t, int64(2), optimizers.GetGlobalStep(ctx), "%s: training goes on", method)
	}
}

// TestGuardMatrixFiniteness: the guard's finiteness test of a matrix gradient (64×32) catches one +Inf
// element (L = Σ√w·x, w = 1 but one 0: L finite, one ∂L/∂w infinite; the step writes nothing) and passes a
// gradient of finite elements whose plain sum overflows (L = Σw·x with x = 10³⁰⁷ everywhere: 2048 such
// elements sum to +Inf; the step trains, with no fallback). Kills the mutants "finiteness from a plain sum"
// and "only some elements tested".
func TestGuardMatrixFiniteness(t *testing.T) {
	const rows, cols = 64, 32
	matrix := func(v float64) [][]float64 {
		m := make([][]float64, rows)
		for i := range m {
			m[i] = make([]float64, cols)
			for j := range m[i] {
				m[i][j] = v
			}
		}
		return m
	}
	for _, method := range []string{"forward", "sam"} {
		for _, overflow := range []bool{false, true} {
			w0, x, lr := matrix(1), matrix(1), 0.1
			w0[rows-3][cols-5] = 0
			if overflow {
				w0, x, lr = matrix(0), matrix(1e307), 1e-307
			}
			modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
				w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
				if overflow {
					return []*Node{ReduceAllSum(Mul(w, inputs[0]))}
				}
				return []*Node{ReduceAllSum(Mul(Sqrt(w), inputs[0]))}
			}
			lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
			ctx := context.New()
			opt := groupsConfig(method, sgd(lr), 0.05, 0.05, samParams{rho: 0.05}).Done()
			trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, gr.GuardMetrics(), nil)
			in := tensors.FromValue(x)
			res, err := trainer.TrainStep(nil, []*tensors.Tensor{in}, []*tensors.Tensor{in})
			require.NoError(t, err)
			name := fmt.Sprintf("%s, overflow %v", method, overflow)
			assert.Equal(t, 0.0, metricAt(t, trainer, res, "GR fallbacks"), name)
			w := variableValues(ctx, "w")
			if !overflow {
				assert.Equal(t, 1.0, metricAt(t, trainer, res, "GR skipped"), name)
				assert.Equal(t, 1.0, w[0], "%s: nothing written", name)
				continue
			}
			assert.Equal(t, 0.0, metricAt(t, trainer, res, "GR skipped"), name)
			for i, wi := range w {
				require.InDelta(t, -1.0, wi, 1e-9, "%s: w[%d] after one step with g₁ = 10³⁰⁷", name, i)
			}
		}
	}
}
