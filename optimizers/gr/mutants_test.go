package gr_test

// Tests written against the survivors of a mutation run (docs/testing.md): each names the mutant it kills.

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metricAt returns the value of the train metric named name in a step's results m.
func metricAt(t *testing.T, trainer *train.Trainer, m []*tensors.Tensor, name string) float64 {
	for i, mi := range trainer.TrainMetrics() {
		if mi.Name() == name {
			return m[i].Value().(float64)
		}
	}
	t.Fatalf("no train metric %q", name)
	return 0
}

// TestGroupsWithOptions: Groups(2) combined with WarmUp, Every (via gr.TrainStep) and the metrics follows,
// step by step, the independent float64 recursion in which g₁ is the whole batch's gradient (the mean of the
// groups' g₁ᵏ) and G the mean of the groups' method gradients:
//
//	Every(k): c = G(θ_t) − g₁(θ_t) on t ≡ 0 mod k, kept otherwise;   WarmUp(W): g = g₁ + min(1, t/W)·c
//
// and the "GR ‖∇L‖" metric is ‖g₁(θ_t)‖. Kills the mutant "Groups' g₁ summed instead of averaged", which only
// these options read (the plain Groups step does not).
func TestGroupsWithOptions(t *testing.T) {
	p := newProblem(51, 16, 3, 4, 0.01)
	const m, lr, steps = 2, 0.3, 5
	gamma, eps := 0.07, 0.03
	hp := samParams{rho: 0.1}
	for _, method := range []string{"forward", "sam"} {
		for _, tc := range []struct {
			name         string
			every, warm  int
			viaTrainStep bool
		}{{"warmup", 1, 3, false}, {"every", 2, 0, true}, {"every+warmup", 3, 2, true}} {
			t.Run(method+"/"+tc.name, func(t *testing.T) {
				cfg := groupsConfig(method, sgd(lr), gamma, eps, hp).Groups(m)
				if tc.every > 1 {
					cfg.Every(tc.every)
				}
				if tc.warm > 0 {
					cfg.WarmUp(tc.warm)
				}
				ctx := context.New()
				trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, cfg.Done(), gr.Metrics(), nil)
				x, y := p.tensors()
				theta := p.theta0()
				var c []float64
				for step := range steps {
					res, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
					require.NoError(t, err)
					g1 := p.grad(theta, false)
					assert.InDelta(t, normVec(g1), metricAt(t, trainer, res, "GR ‖∇L‖"), 1e-12*normVec(g1), "step %d: ‖g₁‖", step)
					if step%tc.every == 0 {
						c = axpy(-1, g1, groupsReference(p, method, m, theta, gamma, eps, hp))
					}
					w := 1.0
					if tc.warm > 0 {
						w = math.Min(1, float64(step)/float64(tc.warm))
					}
					theta = axpy(-lr, axpy(w, c, g1), theta)
					got := variableValues(ctx, "W", "v")
					require.Less(t, relErr(got, theta), 1e-9, "step %d", step)
				}
			})
		}
	}

	// The fallback with Groups: the base step with the whole batch's g₁. pred_i = exp(k·w·x_i) with x = (1, 1):
	// every group's loss and the whole batch's is exp(kw), g₁ = k·exp(kw) finite, the ascent overflows.
	k, w0, lr2 := 1e4, 0.03, 1e-136
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
		return []*Node{Exp(MulScalar(Mul(w, inputs[0]), k))}
	}
	lossFn := func(_, predictions []*Node) *Node { return ReduceAllMean(predictions[0]) }
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, gr.ForwardDifference(sgd(lr2)).Groups(2).Done(),
		gr.GuardMetrics(), nil)
	x := tensors.FromValue([]float64{1, 1})
	res, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
	require.NoError(t, err)
	assert.Equal(t, 1.0, metricAt(t, trainer, res, "GR fallbacks"))
	w1 := ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue().Value().(float64)
	assert.InDelta(t, w0-lr2*k*math.Exp(k*w0), w1, 1e-12, "fallback: base step with the mean g₁")
}

// TestStateKeyedByScopeAndName: a model whose two layers both name their weights "weights" (as two
// layers.Dense do, in scopes dense_0 and dense_1) trains bit for bit like the same model with unique names,
// for methods that keep state per variable (Every's correction, LookSAM-like state through Reuse).
// Kills the mutant "state keyed by variable name only" (the two layers would share one state variable).
func TestStateKeyedByScopeAndName(t *testing.T) {
	p := newProblem(52, 12, 3, 3, 0)
	w1, w2 := p.w0[:9], append(append([]float64{}, p.w0[3:]...), p.w0[:3]...)
	model := func(sameNames bool) train.ModelFn {
		return func(ctx *context.Context, _ any, inputs []*Node) []*Node {
			g := inputs[0].Graph()
			var a, b *Node
			if sameNames {
				a = ctx.In("dense_0").VariableWithValue("weights", tensors.FromFlatDataAndDimensions(w1, 3, 3)).ValueGraph(g)
				b = ctx.In("dense_1").VariableWithValue("weights", tensors.FromFlatDataAndDimensions(w2, 3, 3)).ValueGraph(g)
			} else {
				a = ctx.VariableWithValue("weights_0", tensors.FromFlatDataAndDimensions(w1, 3, 3)).ValueGraph(g)
				b = ctx.VariableWithValue("weights_1", tensors.FromFlatDataAndDimensions(w2, 3, 3)).ValueGraph(g)
			}
			v := ctx.VariableWithValue("v", tensors.FromFlatDataAndDimensions(p.v0, 3)).ValueGraph(g)
			return []*Node{Dot(Tanh(Dot(Tanh(Dot(inputs[0], a)), b)), v)}
		}
	}
	run := func(opt optimizers.Interface, sameNames bool) [][]float64 {
		ctx := context.New()
		trainer := gr.NewTrainer(backend(t), ctx, model(sameNames), squaredLoss, opt, nil, nil)
		x, y := p.tensors()
		var thetas [][]float64
		for range 6 {
			_, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			require.NoError(t, err)
			var theta []float64
			for v := range ctx.IterVariables() {
				if v.Trainable {
					theta = append(theta, tensors.MustCopyFlatData[float64](v.MustValue())...)
				}
			}
			thetas = append(thetas, theta)
		}
		return thetas
	}
	for _, newOpt := range []func() optimizers.Interface{
		func() optimizers.Interface { return gr.ForwardDifference(sgd(0.3)).Gamma(0.1).Every(2).Done() },
		func() optimizers.Interface { return gr.SAM(sgd(0.3)).Rho(0.2).Every(3).Done() },
		func() optimizers.Interface {
			return newEcho(sgd(0.3)).Declare(gr.Hyperparameter{Key: gr.ParamRho, Default: 0.5, Max: 1}).Done()
		},
	} {
		same, unique := run(newOpt(), true), run(newOpt(), false)
		assert.Equal(t, unique, same)
	}
}

// newEcho is a method with state: g = g₁ + ρ·m, m ← g₁ (the previous step's gradient).
var newEcho = gr.NewMethod("Echo", func(s *gr.Step) []*Node {
	g := grvec.Axpby(s.Scalar(1), s.Grad(), s.Param(gr.ParamRho), s.State("echo"))
	s.SetState("echo", s.Grad())
	return g
})

// bf16Gradient returns the gradient F-GR(γ, ε) hands to its base optimizer after one step on the model
// L = Σᵢ aᵢwᵢ + ½cᵢwᵢ² with bfloat16 variables w = θ and the loss in float32 (captureOptimizer).
func bf16Gradient(t *testing.T, theta, a, c []float64, gamma, eps float64) []float64 {
	n := len(theta)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		g := inputs[0].Graph()
		w := ctx.VariableWithValue("w", toDType(dtypes.BFloat16, theta, n)).ValueGraph(g)
		av, cv := Const(g, toDType(dtypes.BFloat16, a, n)), Const(g, toDType(dtypes.BFloat16, c, n))
		l := Add(Mul(av, w), Mul(MulScalar(cv, 0.5), Mul(w, w)))
		return []*Node{ConvertDType(ReduceAllSum(l), dtypes.Float32)}
	}
	lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
	ctx := context.New()
	opt := gr.ForwardDifference(captureOptimizer{}).Gamma(gamma).Epsilon(eps).Done()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, nil, nil)
	x := tensors.FromValue([]float32{0})
	_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
	require.NoError(t, err)
	var out []float64
	for _, f := range tensors.MustCopyFlatData[float32](ctx.GetVariableByScopeAndName("/capture", "0").MustValue()) {
		out = append(out, float64(f))
	}
	return out
}

// TestBFloat16CombinationInFloat32: with bfloat16 variables F-GR combines g₁ and the perturbed gradient in
// float32. Constructed so that every bfloat16 value is exact: L = 256w − (85/128)w², θ = 0, γ = 0.75,
// ε = 0.25: g₁ = 256, θ + εg₁ = 64, ∇L(64) = 171, and g = (1 − 3)·256 + 3·171 = 1 exactly in float32, while
// in bfloat16 3·171 = 513 is not representable (8 significant bits) and the result would be 0 or 2.
// Kills the mutant "bfloat16 gradients not widened" (the existing bfloat16 test uses γ = ε, where g₁'s
// coefficient is 0).
func TestBFloat16CombinationInFloat32(t *testing.T) {
	g := bf16Gradient(t, []float64{0}, []float64{256}, []float64{-85.0 / 64}, 0.75, 0.25)
	assert.Equal(t, []float64{1}, g)
}

// bf16Round returns x (finite, positive) rounded to bfloat16 the way the backend converts float32 to bfloat16,
// found by converting 1 + 3·2⁻⁹: GoMLX v0.26.0's pure-Go backend truncates (as its bfloat16 package does), XLA
// rounds to nearest even.
func bf16Round(t *testing.T, x float32) float64 {
	probe := MustExecOnce(backend(t), func(x *Node) *Node { return ConvertDType(ConvertDType(x, dtypes.BFloat16), dtypes.Float32) },
		float32(1+3.0/512))
	bits := math.Float32bits(x)
	if tensors.ToScalar[float32](probe) != 1 { // round to nearest, ties to even
		bits += 0x7fff + (bits>>16)&1
	}
	return float64(math.Float32frombits(bits &^ 0xffff))
}

// TestBFloat16PerturbationRoundedOnce: with bfloat16 variables the perturbed point is fl₁₆(θ + o), the sum
// taken in float32 and rounded once, not fl₁₆(θ + fl₁₆(o)). L = ½w², so ∇L(x̃) = x̃ exactly, and γ = ε hands
// x̃ itself to the base optimizer; o = εg₁ = εθ. Two constructed cases, one for each way the backend may
// round to bfloat16 (the double rounding shows only when it drops bits of o that decide the last bit of the
// sum): θ = 3·2⁻⁹ with ε ≈ (1 + 2⁻⁸)/θ (truncation: once 1 + 2⁻⁷, twice 1), and θ = 1 with ε = 2⁻⁸ + 2⁻²⁰
// (round to nearest: once 1 + 2⁻⁷, twice 1). Kills the mutant "θ + o summed in bfloat16".
func TestBFloat16PerturbationRoundedOnce(t *testing.T) {
	for _, tc := range []struct{ theta, eps float64 }{
		{3.0 / 512, float64(float32((1 + 1.0/256) / (3.0 / 512)))},
		{1, 1.0/256 + 1.0/(1<<20)},
	} {
		g := bf16Gradient(t, []float64{tc.theta}, []float64{0}, []float64{1}, tc.eps, tc.eps)
		o := float32(tc.eps) * float32(tc.theta)
		want := bf16Round(t, float32(tc.theta)+o)
		assert.Equal(t, []float64{want}, g, "θ = %g, ε = %g", tc.theta, tc.eps)
	}
}

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

// TestEveryBothBranchesMetrics: the graph that computes both phases of Every(k) and selects one (plain
// trainer.TrainStep) reports, step by step, the metrics of the per-phase graphs (gr.TrainStep): on reuse steps
// the curvature keeps the value of the last full step. Kills the mutant "the both-branch graph publishes the
// full branch's curvature on reuse steps".
func TestEveryBothBranchesMetrics(t *testing.T) {
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
