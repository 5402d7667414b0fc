package gr_test

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// twoOptimizers returns the optimizers of the two-optimizer tests: both keep state per variable (Every's
// correction), counters and metrics, and read the global step (Every, WarmUp).
func twoOptimizers(scopeA, scopeB string) (a, b optimizers.Interface) {
	ca, cb := gr.ForwardDifference(sgd(0.2)).Gamma(0.1).Every(2).WarmUp(3), gr.SAM(sgd(0.1)).Rho(0.2).Every(3)
	if scopeA != "" {
		ca.Scope(scopeA)
	}
	if scopeB != "" {
		cb.Scope(scopeB)
	}
	return ca.Done(), cb.Done()
}

func grMetrics() []metrics.Interface { return append(gr.Metrics(), gr.GuardMetrics()...) }

// stepTrainer runs one step of trainer through gr.TrainStep and returns the metrics as float64.
func stepTrainer(t *testing.T, trainer *train.Trainer, p *problem) []float64 {
	x, y := p.tensors()
	m, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.NoError(t, err)
	out := make([]float64, len(m))
	for i, mi := range m {
		out[i] = mi.Value().(float64)
	}
	return out
}

// TestTwoOptimizersOnSubContexts: two gradreg optimizers whose trainers are built on two scopes of one
// context (ctx.In("a"), ctx.In("b")), both with the default Scope and with variables of the same names,
// trained in alternation, follow bit for bit the runs of each alone on a context of its own (weights and
// metrics): neither reads or writes the other's state, counters, metrics or global step.
func TestTwoOptimizersOnSubContexts(t *testing.T) {
	parallelOnXLA(t)
	pa, pb := newProblem(41, 8, 3, 4, 0.01), newProblem(42, 8, 3, 4, 0.01)
	const steps = 7
	alone := func(p *problem, opt optimizers.Interface) (theta []float64, ms [][]float64) {
		ctx := context.New()
		trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt, grMetrics(), nil)
		for range steps {
			ms = append(ms, stepTrainer(t, trainer, p))
		}
		return variableValues(ctx, "W", "v"), ms
	}
	optA, _ := twoOptimizers("", "")
	wantA, wantMA := alone(pa, optA)
	_, optB := twoOptimizers("", "")
	wantB, wantMB := alone(pb, optB)

	optA, optB = twoOptimizers("", "")
	ctx := context.New()
	ta := gr.NewTrainer(backend(t), ctx.In("a"), pa.modelFn(false), squaredLoss, optA, grMetrics(), nil)
	tb := gr.NewTrainer(backend(t), ctx.In("b"), pb.modelFn(false), squaredLoss, optB, grMetrics(), nil)
	for i := range steps {
		assert.Equal(t, wantMA[i], stepTrainer(t, ta, pa), "A's metrics at step %d", i)
		assert.Equal(t, wantMB[i], stepTrainer(t, tb, pb), "B's metrics at step %d", i)
	}
	scopedValues := func(scope string) []float64 {
		var out []float64
		for _, name := range []string{"W", "v"} {
			out = append(out, tensors.MustCopyFlatData[float64](ctx.GetVariableByScopeAndName(scope, name).MustValue())...)
		}
		return out
	}
	assert.Equal(t, wantA, scopedValues("/a"))
	assert.Equal(t, wantB, scopedValues("/b"))
	for _, scope := range []string{"/a/gradreg/every", "/b/gradreg/every", "/a/gradreg/guard", "/b/gradreg/metrics"} {
		found := false
		for v := range ctx.IterVariables() {
			found = found || strings.HasPrefix(v.Scope(), scope)
		}
		assert.True(t, found, "no variable under %s", scope)
	}
}

// TestTwoOptimizersOneContext: two gradreg optimizers whose trainers share one context scope, with their own
// Scope names and models under "a" and "b": a step of either changes none of the other's variables (its
// model, its state under its Scope, its counters and metrics).
func TestTwoOptimizersOneContext(t *testing.T) {
	parallelOnXLA(t)
	pa, pb := newProblem(43, 8, 3, 4, 0.01), newProblem(44, 8, 3, 4, 0.01)
	in := func(scope string, fn train.ModelFn) train.ModelFn {
		return func(ctx *context.Context, spec any, inputs []*gr.Node) []*gr.Node {
			return fn(ctx.In(scope), spec, inputs)
		}
	}
	optA, optB := twoOptimizers("gr_a", "gr_b")
	assert.Equal(t, "gr_a", optA.(*gr.Regularized).Scope())
	ctx := context.New()
	ta := gr.NewTrainer(backend(t), ctx, in("a", pa.modelFn(false)), squaredLoss, optA, grMetrics(), nil)
	tb := gr.NewTrainer(backend(t), ctx, in("b", pb.modelFn(false)), squaredLoss, optB, grMetrics(), nil)
	under := func(v *context.Variable, prefixes []string) bool {
		for _, prefix := range prefixes {
			if v.Scope() == prefix || strings.HasPrefix(v.Scope(), prefix+"/") {
				return true
			}
		}
		return false
	}
	// snapshot returns the values of the variables under prefixes; except, those of all the others but the
	// ones the two trainers share (the global step, the trainers' own metrics).
	snapshot := func(prefixes ...string) map[string]string {
		out := map[string]string{}
		for v := range ctx.IterVariables() {
			if under(v, prefixes) {
				out[v.ScopeAndName()] = v.MustValue().String()
			}
		}
		return out
	}
	except := func(prefixes ...string) map[string]string {
		out := map[string]string{}
		for v := range ctx.IterVariables() {
			if !under(v, append(prefixes, "/metrics")) && v.Name() != optimizers.GlobalStepVariableName {
				out[v.ScopeAndName()] = v.MustValue().String()
			}
		}
		return out
	}
	stepTrainer(t, ta, pa)
	stepTrainer(t, tb, pb)
	for i := range 6 {
		assert.NotEmpty(t, snapshot("/gr_b/metrics"), "B's metrics are under its Scope")
		others, own := except("/a", "/gr_a"), snapshot("/a", "/gr_a")
		stepTrainer(t, ta, pa)
		assert.Equal(t, others, except("/a", "/gr_a"), "A's step %d changed variables not A's", i)
		assert.NotEqual(t, own, snapshot("/a", "/gr_a"), "A's step %d changed nothing of A's", i)
		others = except("/b", "/gr_b")
		stepTrainer(t, tb, pb)
		assert.Equal(t, others, except("/b", "/gr_b"), "B's step %d changed variables not B's", i)
	}
	for _, scope := range []string{"/gr_a/every", "/gr_b/every", "/gr_a/guard", "/gr_b/guard"} {
		assert.NotEmpty(t, snapshot(scope), "no variable under %s", scope)
	}
	assert.Empty(t, snapshot("/gradreg"), "nothing under the default scope")

	// Clear deletes the optimizer's own variables only.
	require.NoError(t, optA.Clear(ctx))
	assert.Empty(t, snapshot("/gr_a"))
	assert.NotEmpty(t, snapshot("/gr_b"))
}

// TestScopeName: Scope takes one scope element.
func TestScopeName(t *testing.T) {
	for _, name := range []string{"", "a/b", "/a"} {
		_, err := gr.SAM(sgd(0.1)).Scope(name).Build()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "gr.SAM: Scope (name) must be one non-empty scope element")
	}
	opt := gr.SAM(sgd(0.1)).Done().(*gr.Regularized)
	assert.Equal(t, gr.DefaultScope, opt.Scope())
}
