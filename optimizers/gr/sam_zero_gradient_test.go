package gr_test

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestZeroGradientThroughNormalization: at a point where g₁ = 0 exactly (the minimum of (w·x − y)² with w = y/x
// representable), the SAM family's normalized perturbation ρ g₁/(‖g₁‖ + δ) is 0, not NaN: every method's
// step leaves w where it is, with no fallback and no skipped step. Also with Groups(2) and Every(2).
func TestZeroGradientThroughNormalization(t *testing.T) {
	parallelOnXLA(t)
	const x0, y0 = 2.0, 3.0 // w* = 1.5 exactly.
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", y0/x0).ValueGraph(inputs[0].Graph())
		return []*Node{Mul(inputs[0], w)}
	}
	lossFn := func(labels, predictions []*Node) *Node {
		return ReduceAllMean(Square(Sub(predictions[0], labels[0])))
	}
	hp := samParams{rho: 0.05, alpha: 0.5, eta: 0.01}
	for _, method := range samMethods {
		for _, opt := range []struct {
			name string
			set  func(c *gr.Config) *gr.Config
		}{
			{"plain", func(c *gr.Config) *gr.Config { return c }},
			{"Groups(2)", func(c *gr.Config) *gr.Config { return c.Groups(2) }},
			{"Every(2)", func(c *gr.Config) *gr.Config { return c.Every(2) }},
		} {
			ctx := context.New()
			o := opt.set(groupsConfig(method, sgd(0.1), 0, 0, hp)).Done()
			trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, o, gr.GuardMetrics(), nil)
			x, y := tensors.FromValue([]float64{x0, x0}), tensors.FromValue([]float64{y0, y0})
			for step := range 3 {
				m, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
				require.NoError(t, err, "%s %s", method, opt.name)
				w := ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue().Value().(float64)
				assert.False(t, math.IsNaN(w), "%s %s step %d: w is NaN", method, opt.name, step)
				assert.Equal(t, y0/x0, w, "%s %s step %d: w moved at g₁ = 0", method, opt.name, step)
				assert.Equal(t, 0.0, m[3].Value(), "%s %s step %d: fallbacks", method, opt.name, step)
				assert.Equal(t, 0.0, m[4].Value(), "%s %s step %d: skipped", method, opt.name, step)
			}
		}
	}
}
