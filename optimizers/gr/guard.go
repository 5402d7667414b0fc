package gr

import (
	"slices"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamGuardNonFinite turns the non-finite guard of Config.GuardNonFinite on or off, read by FromContext.
// Default: true.
const ParamGuardNonFinite = "gr_guard_non_finite"

// Names of the guard's counters: int64 variables under Config.Scope + "/guard", saved by checkpoints.
const (
	MetricFallbacks = "gr_fallbacks" // steps that fell back to the base step with g₁
	MetricSkipped   = "gr_skipped"   // steps that wrote nothing (loss or gradient not finite)
)

// GuardNonFinite turns the non-finite guard on or off. Default: on.
//
// With the guard, a step whose loss L or combined gradient g is NaN or ±Inf writes nothing: every
// variable the step would change — the weights, the base optimizer's state (e.g. Adam's moments, the global
// step and with it learning-rate schedules), this package's state (the correction of Every, the counters)
// and the model's non-trainable variables (e.g. batch-norm moving statistics) — keeps its pre-step value.
// GoMLX graphs have no conditional, so each such variable is written as Where(ok, new, old). The loss the
// trainer reports is left as it is, so train.Loop still stops with GoMLX's "batch loss is NaN" (or
// infinity) error, and a checkpoint written at that step (checkpoints save in the loop's OnStep hooks,
// which run before that check) holds the finite pre-step state. The trainer's own metrics, updated after
// the optimizer, report the step as it was (e.g. its moving average of the loss takes the NaN).
//
// If the method's gradient is not finite while L and g₁ are (the perturbed evaluation overshot — the
// failure specific to these methods), the step falls back to the base step with g₁ (with Every, the
// stored correction is then refreshed to 0) and training goes on. Each such step adds one to the int64
// variable MetricFallbacks under Config.Scope + "/guard"; each step that wrote nothing adds one to MetricSkipped;
// GuardMetrics shows both. Variables written by train.AddPerStepUpdateGraphFn hooks (run after the
// optimizer) are not guarded. Cost: a finiteness test of L, g₁ and g and one select per updated variable.
//
// Compare GoMLX's optimizers.ParamClipNaN ("clip_nan"), which zeroes a non-finite gradient but still
// advances the optimizer's state.
func (c *Config) GuardNonFinite(on bool) *Config {
	c.noGuard = !on
	return c
}

func (c *Config) guardOn() bool { return !c.noGuard }

// allFinite returns a Bool scalar: every element of every x is finite.
//
// Each x of rank ≥ 1 is summed times 2⁻⁶⁴ (grvec.ScaledSum: one matrix-vector product, the backends' fast
// path; LogicalAll(IsFinite(x)) costs ~3× more on XLA's CPU plugin), the sums of each dtype added, and
// IsFinite tests each total. Exact: a non-finite element makes its product ±Inf or NaN and so the total
// non-finite (±Inf·2⁻⁶⁴ = ±Inf; +Inf − Inf = NaN); for finite elements every product and partial sum is at
// most (number of elements)·max·2⁻⁶⁴, far below the dtype's max, so the total never overflows (in a dtype
// where 2⁻⁶⁴ rounds to 0, finite·0 = 0 and ±Inf·0 = NaN: still exact).
func allFinite(x ...*Node) *Node {
	var ok *Node
	var sums []*Node // one running sum per dtype
	for _, xi := range x {
		if xi.Shape().IsScalar() {
			ok = and(ok, graph.IsFinite(xi))
			continue
		}
		total := grvec.ScaledSum(xi, 0x1p-64)
		i := slices.IndexFunc(sums, func(s *Node) bool { return s.DType() == total.DType() })
		if i < 0 {
			sums = append(sums, total)
		} else {
			sums[i] = graph.Add(sums[i], total)
		}
	}
	for _, s := range sums {
		ok = and(ok, graph.IsFinite(s))
	}
	return ok
}

// and returns a ∧ b, or b when a is nil.
func and(a, b *Node) *Node {
	if a == nil {
		return b
	}
	return graph.LogicalAnd(a, b)
}

// counterVar returns the int64 counter name under own/guard (own: the optimizer's absolute scope).
func counterVar(ctx *context.Context, own, name string) *context.Variable {
	return ownVar(ctx, own+"/guard", name, shapes.Make(dtypes.Int64))
}

// addToCounter adds 1 to the counter when the Bool scalar when is true.
func addToCounter(ctx *context.Context, g *graph.Graph, own, name string, when *Node) {
	v := counterVar(ctx, own, name)
	v.SetValueGraph(graph.Add(v.ValueGraph(g), graph.ConvertDType(when, dtypes.Int64)))
}

// guardVariables keeps every variable the graph changed so far at its value from the start of the step
// unless ok (a Bool scalar) is true.
func guardVariables(ctx *context.Context, g *graph.Graph, ok *Node) {
	for v := range ctx.IterVariables() {
		if !v.InUseByGraph(g) {
			continue
		}
		start := g.GetParameterByName(v.ParameterName())
		if start == nil {
			continue // Created in this graph without a parameter: nothing to keep.
		}
		if value := v.ValueGraph(g); value != start {
			v.SetValueGraph(graph.Where(ok, value, start))
		}
	}
}

// guardStep is the guard at the end of an optimizer step: guardVariables, then the skipped counter.
func guardStep(ctx *context.Context, g *graph.Graph, own string, ok *Node) {
	guardVariables(ctx, g, ok)
	addToCounter(ctx, g, own, MetricSkipped, graph.LogicalNot(ok))
}

// GuardMetrics returns the guard's counters as train metrics, to pass with trainMetrics to NewTrainer:
// "GR fallbacks" (fb) — steps that fell back to the base step because the method's gradient was not
// finite — and "GR skipped" (skip) — steps that wrote nothing. Both are totals since the start of training
// (saved by checkpoints), shown in the loss dtype.
func GuardMetrics() []metrics.Interface {
	return []metrics.Interface{
		metrics.NewBaseMetric("GR fallbacks", "fb", MetricType, counterMetric(MetricFallbacks), nil),
		metrics.NewBaseMetric("GR skipped", "skip", MetricType, counterMetric(MetricSkipped), nil),
	}
}

func counterMetric(name string) metrics.BaseMetricGraph {
	return func(ctx *context.Context, _, predictions []*Node) *Node {
		g := predictions[0].Graph()
		return graph.ConvertDType(counterVar(ctx, metricsScope(ctx, g), name).ValueGraph(g), metricDType(ctx, g))
	}
}
