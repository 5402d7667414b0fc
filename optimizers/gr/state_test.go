package gr_test

import (
	"testing"

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

// TestStateKeyedByScopeAndName: a model whose two layers both name their weights "weights" (as two
// layers.Dense do, in scopes dense_0 and dense_1) trains bit for bit like the same model with unique names,
// for methods that keep state per variable (Every's correction, LookSAM-like state through Reuse).
// Kills the mutant "state keyed by variable name only" (the two layers would share one state variable).
func TestStateKeyedByScopeAndName(t *testing.T) {
	parallelOnXLA(t)
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
