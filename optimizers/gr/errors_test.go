package gr_test

import (
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/core/tensors/images"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBadHyperparameters(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *gr.Config
		want []string
	}{
		{"negative γ", gr.ForwardDifference(sgd(1)).Gamma(-0.1), []string{"Gamma (γ)", "[0, +∞)", "-0.1"}},
		{"NaN γ", gr.DoubleBackprop(sgd(1)).Gamma(math.NaN()), []string{"Gamma (γ)", "NaN"}},
		{"zero ε", gr.BackwardDifference(sgd(1)).Epsilon(0), []string{"Epsilon (ε)", "(0, +∞)"}},
		{"negative ε", gr.CentralDifference(sgd(1)).Epsilon(-1), []string{"Epsilon (ε)", "(0, +∞)"}},
		{"NaN ε", gr.ForwardDifference(sgd(1)).Epsilon(math.NaN()), []string{"Epsilon (ε)", "NaN"}},
		{"infinite γ", gr.ForwardDifference(sgd(1)).Gamma(math.Inf(1)), []string{"Gamma (γ)", "+Inf"}},
		{"nil base", gr.ForwardDifference(nil), []string{"base optimizer is nil"}},
	} {
		_, err := tc.cfg.Build()
		require.Error(t, err, tc.name)
		for _, w := range tc.want {
			assert.Contains(t, err.Error(), w, tc.name)
		}
		assert.PanicsWithError(t, err.Error(), func() { tc.cfg.Done() }, tc.name)
	}
	_, err := gr.ForwardDifference(sgd(1)).Gamma(0).Epsilon(1e-9).Build()
	assert.NoError(t, err, "γ = 0 and tiny ε are valid")
}

func TestFromContext(t *testing.T) {
	ctx := context.New()
	opt, err := gr.FromContext(ctx, sgd(1))
	require.NoError(t, err)
	assert.Equal(t, "none", opt.(*gr.Regularized).Method(), "gr_method defaults to none: the base optimizer alone")

	ctx.SetParams(map[string]any{gr.ParamMethod: "central", gr.ParamGamma: 0.2, gr.ParamEpsilon: 0.01})
	opt, err = gr.FromContext(ctx, sgd(1))
	require.NoError(t, err)
	assert.Equal(t, "CentralDifference", opt.(*gr.Regularized).Method())

	// Same step as the builder with the same hyperparameters.
	p := newProblem(10, 8, 3, 4, 0.01)
	fromCtx, _ := p.trainSteps(t, opt, false, 1)
	direct, _ := p.trainSteps(t, gr.CentralDifference(sgd(1)).Gamma(0.2).Epsilon(0.01).Done(), false, 1)
	assert.Equal(t, direct, fromCtx)

	ctx.SetParam(gr.ParamMethod, "sharp")
	_, err = gr.FromContext(ctx, sgd(1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown gr_method "sharp"`)
	assert.Contains(t, err.Error(), "forward")

	ctx.SetParams(map[string]any{gr.ParamMethod: "forward", gr.ParamEpsilon: -1.0})
	_, err = gr.FromContext(ctx, sgd(1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Epsilon (ε)")
}

// trainStepErr runs one step with the given trainer constructor and returns its error (or panic).
func trainStepErr(t *testing.T, newTrainer func(*context.Context) *train.Trainer) (err error) {
	p := newProblem(11, 8, 3, 4, 0)
	trainer := newTrainer(context.New())
	x, y := p.tensors()
	defer func() {
		if r := recover(); r != nil {
			err = r.(error)
		}
	}()
	_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	return err
}

func TestFiniteDifferenceNeedsGRTrainer(t *testing.T) {
	p := newProblem(11, 8, 3, 4, 0)
	for _, method := range []string{"forward", "backward", "central"} {
		err := trainStepErr(t, func(ctx *context.Context) *train.Trainer {
			return train.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss,
				build(method, sgd(1), 0.1, 0.1, false), nil, nil)
		})
		require.Error(t, err, method)
		assert.Contains(t, err.Error(), "build the trainer with gr.NewTrainer", method)
	}
	// DoubleBackprop needs no second evaluation: plain train.NewTrainer works.
	err := trainStepErr(t, func(ctx *context.Context) *train.Trainer {
		return train.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss,
			build("db", sgd(1), 0.1, 0.1, false), nil, nil)
	})
	assert.NoError(t, err)
}

// dbError runs one DB step of modelFn and returns its error.
func dbError(t *testing.T, modelFn train.ModelFn) error {
	return trainStepErr(t, func(ctx *context.Context) *train.Trainer {
		return gr.NewTrainer(backend(t), ctx, modelFn, squaredLoss,
			gr.DoubleBackprop(optimizers.StochasticGradientDescent()).Done(), nil, nil)
	})
}

// withoutGrgrad runs the test with GoMLX's own gradients, restoring grgrad's afterwards if installed.
func withoutGrgrad(t *testing.T) {
	backend(t) // New applies $GRADREG_GRADIENTS
	if grgrad.Installed() {
		grgrad.Uninstall()
		t.Cleanup(grgrad.MustInstall)
	}
}

// TestDoubleBackpropMissingSecondOrderError: an op whose gradient has no gradient makes DB fail at graph
// build with an error naming the op and the remedy, while ForwardDifference trains: grgrad.Install for
// an op grgrad differentiates (ReduceProduct, in a custom gradient, without grgrad), ForwardDifference
// for one it does not (Rem).
func TestDoubleBackpropMissingSecondOrderError(t *testing.T) {
	model := func(inner func(x *Node) *Node) train.ModelFn {
		return func(ctx *context.Context, _ any, inputs []*Node) []*Node {
			w := ctx.VariableWithValue("w", 0.5).ValueGraph(inputs[0].Graph())
			h := IdentityWithCustomGradient(Mul(inputs[0], w), func(x, v *Node) *Node { return Mul(v, inner(x)) })
			return []*Node{ReduceSum(Tanh(h), -1)}
		}
	}
	for _, c := range []struct {
		op, remedy string
		inner      func(x *Node) *Node
	}{
		{"ReduceProduct", "grgrad.Install()", func(x *Node) *Node { return ReduceAllMultiply(OnePlus(Square(x))) }},
		{"Rem", "gr.ForwardDifference", func(x *Node) *Node { return OnePlus(Mod(Square(x), Scalar(x.Graph(), x.DType(), 0.7))) }},
	} {
		t.Run(c.op, func(t *testing.T) {
			withoutGrgrad(t)
			modelFn := model(c.inner)
			err := dbError(t, modelFn)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "gr.DoubleBackprop needs the gradient of the gradient")
			assert.Contains(t, err.Error(), "op "+c.op)
			assert.Contains(t, err.Error(), c.remedy)
			err = trainStepErr(t, func(ctx *context.Context) *train.Trainer {
				return gr.NewTrainer(backend(t), ctx, modelFn, squaredLoss, build("forward", sgd(1), 0.1, 0.1, false), nil, nil)
			})
			assert.NoError(t, err, "ForwardDifference needs first-order gradients only")
		})
	}
}

// TestDoubleBackpropMaxPoolError: MaxPool's gradient (SelectAndScatterMax) has no gradient in GoMLX.
// On backends that build MaxPool's first-order gradient, DB must fail with an error naming the op and
// grgrad.Install; with grgrad installed, DB trains.
func TestDoubleBackpropMaxPoolError(t *testing.T) {
	withoutGrgrad(t)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		x := InsertAxes(inputs[0], -1) // [batch, in, 1 channel]
		w := ctx.VariableWithValue("w", 0.5).ValueGraph(x.Graph())
		pooled := MaxPool(Mul(x, w)).ChannelsAxis(images.ChannelsLast).Window(3).Strides(1).Done()
		return []*Node{ReduceSum(pooled, 1, 2)}
	}
	err := dbError(t, modelFn)
	require.Error(t, err)
	if strings.Contains(err.Error(), "not implemented in SimpleGo") {
		t.Skipf("skipped: backend %s cannot run MaxPool's first-order gradient (%.120s), so DB's "+
			"second-order error is not reachable here; run with GOMLX_BACKEND=xla:cpu", backend(t).Name(), err)
	}
	assert.Contains(t, err.Error(), "gr.DoubleBackprop needs the gradient of the gradient")
	assert.Contains(t, err.Error(), "SelectAndScatter")
	assert.Contains(t, err.Error(), "grgrad.Install()")
	grgrad.MustInstall()
	defer grgrad.Uninstall()
	assert.NoError(t, dbError(t, modelFn), "DB through MaxPool with grgrad installed")
}
