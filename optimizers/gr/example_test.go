package gr_test

import (
	"fmt"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
)

// exampleStep trains one step of the model pred = w·x on x = (1, 2), y = (2, 4), from w = 0, and returns
// w. The loss L(w) = mean((w·x − y)²) = 2.5(w − 2)² is quadratic: g₁ = 5(w − 2) = −10 and H = 5 at w = 0,
// so GR's gradient is g₁ + γHg₁ = −10(1 + 5γ), exactly, for every method.
func exampleStep(opt optimizers.Interface) float64 {
	backend := grbackend.MustNew()
	ctx := context.New()
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", 0.0).ValueGraph(inputs[0].Graph())
		return []*Node{Mul(inputs[0], w)}
	}
	lossFn := func(labels, predictions []*Node) *Node { return Square(Sub(predictions[0], labels[0])) }
	trainer := gr.NewTrainer(backend, ctx, modelFn, lossFn, opt, nil, nil)
	x, y := tensors.FromValue([]float64{1, 2}), tensors.FromValue([]float64{2, 4})
	if _, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
		panic(err)
	}
	return ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue().Value().(float64)
}

// Switching a program to F-GR is one statement: gr.NewTrainer instead of train.NewTrainer, and the
// optimizer wrapped by gr.ForwardDifference.
func ExampleNewTrainer() {
	sgd := func() optimizers.Interface {
		return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.1).Done()
	}
	fmt.Printf("SGD:  w = %.4f\n", exampleStep(sgd()))
	fmt.Printf("F-GR: w = %.4f\n", exampleStep(gr.ForwardDifference(sgd()).Gamma(0.1).Epsilon(0.1).Done()))
	// Output:
	// SGD:  w = 1.0000
	// F-GR: w = 1.5000
}

// DoubleBackprop computes g₁ + γHg₁ exactly; here −10(1 + 5·0.2) = −20, so one SGD step of 0.1 gives w = 2.
func ExampleDoubleBackprop() {
	sgd := optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.1).Done()
	fmt.Printf("w = %.4f\n", exampleStep(gr.DoubleBackprop(sgd).Gamma(0.2).Done()))
	// Output:
	// w = 2.0000
}

// FromContext picks the method from context hyperparameters, as set by GoMLX's -set flag, e.g.
// -set="gr_method=backward;gr_gamma=0.1".
func ExampleFromContext() {
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "backward", gr.ParamGamma: 0.1, gr.ParamEpsilon: 0.01})
	opt, err := gr.FromContext(ctx, optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.1).Done())
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: w = %.4f\n", opt.(*gr.Regularized).Method(), exampleStep(opt))

	ctx.SetParam(gr.ParamMethod, "sharpness")
	_, err = gr.FromContext(ctx, opt)
	fmt.Println(err != nil)
	// Output:
	// BackwardDifference: w = 1.5000
	// true
}
