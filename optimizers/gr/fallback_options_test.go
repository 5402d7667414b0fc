package gr_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFallbackWithEveryOption: every option combined with a step that falls back (the method's perturbed
// evaluation overflows while L and g₁ are finite, as in TestGuardFallback), for every method: the step is
// the base step with g₁, w₁ = w₀ − lr·g₁, counted as a fallback and not as a skipped step; training goes on
// with a second step that writes finite values and is not skipped. With Every(2) the correction stored by
// the fallen-back step is 0 (not the non-finite one computed before the fallback, nor an earlier one), so
// the next step, which reuses it, is a base step too and is not skipped.
func TestFallbackWithEveryOption(t *testing.T) {
	options := []struct {
		name string
		set  func(c *gr.Config) *gr.Config
	}{
		{"plain", func(c *gr.Config) *gr.Config { return c }},
		{"Every(2)", func(c *gr.Config) *gr.Config { return c.Every(2) }},
		{"Every(3)", func(c *gr.Config) *gr.Config { return c.Every(3) }},
		{"WarmUp(3)", func(c *gr.Config) *gr.Config { return c.WarmUp(3) }},
		{"ZeroWarmUp(1)", func(c *gr.Config) *gr.Config { return c.ZeroWarmUp(1) }},
		{"ZeroWarmUp(5)", func(c *gr.Config) *gr.Config { return c.ZeroWarmUp(5) }},
		{"Schedule(FollowLearningRate)", func(c *gr.Config) *gr.Config { return c }}, // Set below: the key is the method's.
		{"GuardNonFinite(true)", func(c *gr.Config) *gr.Config { return c.GuardNonFinite(true) }},
		{"Every(2).WarmUp(2)", func(c *gr.Config) *gr.Config { return c.Every(2).WarmUp(2) }},
	}
	// Not backward: its perturbed point θ − ε·g₁ does not overflow here (TestGuardFallback leaves it out too).
	for _, method := range []string{"db", "forward", "central", "sam", "usam", "gnp", "asam"} {
		for _, o := range options {
			t.Run(method+"/"+o.name, func(t *testing.T) {
				k, w0, lr := 1e4, 0.03, 1e-136
				if method == "db" {
					k, w0, lr = 700, 1, 1e-307
				}
				modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
					w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
					return []*Node{Exp(MulScalar(Mul(w, ReduceAllSum(inputs[0])), k))}
				}
				lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
				hp := samParams{rho: 0.05, alpha: 0.5, eta: 0.01}
				if method == "asam" {
					hp.rho = 2
				}
				cfg := o.set(groupsConfig(method, sgd(lr), 0.05, 0.05, hp))
				if strings.HasPrefix(o.name, "Schedule") {
					key := gr.ParamGamma
					if slices.Contains(samMethods, method) {
						key = gr.ParamRho
					}
					// At lr_t = lrMax the configured value (a warm-up from 0 would make SAM's first step plain).
					cfg = cfg.Schedule(key, gr.FollowLearningRate(lr, lr/2, 0.01))
				}
				opt := cfg.Done()
				ctx := context.New()
				trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, gr.GuardMetrics(), nil)
				x := tensors.FromValue([]float64{1})
				wVar := func() float64 {
					v := ctx.GetVariableByScopeAndName(context.RootScope, "w")
					if v == nil { // Before the first step.
						return w0
					}
					return v.MustValue().Value().(float64)
				}
				before := wVar()
				g1 := k * math.Exp(k*before)
				require.False(t, math.IsInf(g1, 0))
				m, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
				require.NoError(t, err)
				assert.InDelta(t, before-lr*g1, wVar(), 1e-12, "base step with g₁")
				// Also under a warm-up whose weight is 0 on this step: the extra gradient is computed and is not
				// finite, and g is g₁.
				assert.Equal(t, 1.0, m[3].Value(), "fallback metric")
				assert.Equal(t, 0.0, m[4].Value(), "skipped metric")
				if strings.HasPrefix(o.name, "Every") {
					n := 0
					for v := range ctx.IterVariables() {
						if strings.Contains(v.Scope(), "/every") {
							n++
							val := v.MustValue().Value()
							assert.Equal(t, 0.0, val, "stored correction %s/%s after the fallback", v.Scope(), v.Name())
						}
					}
					assert.Positive(t, n, "no stored correction found")
				}
				after := wVar()
				m, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
				require.NoError(t, err)
				assert.Equal(t, 0.0, m[4].Value(), "the step after the fallback is skipped")
				assert.False(t, math.IsNaN(wVar()) || math.IsInf(wVar(), 0), "w after: %g", wVar())
				assert.LessOrEqual(t, wVar(), after, "the step after the fallback moves w against g₁ > 0")
				assert.Equal(t, int64(2), optimizers.GetGlobalStep(ctx), fmt.Sprintf("%s: training goes on", method))
			})
		}
	}
}
