package gr

import (
	"fmt"
	"regexp"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/pkg/errors"
)

func init() { Register("db", DoubleBackprop) }

// DoubleBackprop returns exact gradient regularization by double backpropagation:
//
//	g = ∇[L + (γ/2)‖∇L‖²] = g₁ + γHg₁
//
// Hg₁ is obtained by differentiating (γ/2)‖g₁‖² through the graph of g₁, so every op of the model must have
// a differentiable gradient. On a model with an op whose gradient has no gradient in GoMLX (e.g. its
// convolution or MaxPool) the graph build fails with an error naming the op and suggesting
// ForwardDifference. Cost: about 2–3× a plain step (one backward pass through the backward pass).
// It does not re-evaluate the model, so it also works with plain train.NewTrainer. Its one hyperparameter
// is γ (Gamma).
func DoubleBackprop(base optimizers.Interface) *Config {
	return NewMethod("DoubleBackprop", doubleBackpropGrad)(base).Declare(gammaParam).stableAs(ParamGamma)
}

func doubleBackpropGrad(s *Step) (grads []*Node) {
	penalty := graph.MulScalar(grvec.InnerProduct(s.Grad(), s.Grad()), 0.5) // ½‖g₁‖²
	defer translateMissingGradient()
	hg := graph.Gradient(penalty, s.Theta()...)      // Hg₁
	s.SetCurvature(grvec.InnerProduct(s.Grad(), hg)) // g₁ᵀHg₁, exact (metrics.go)
	return grvec.Axpby(s.Scalar(1), s.Grad(), s.Param(ParamGamma), hg)
}

// missingGradientRE matches GoMLX's panic for an op without a gradient.
var missingGradientRE = regexp.MustCompile(`with type "([^"]+)", for which no gradient is defined`)

// undefinedGradientRE matches GoMLX's panic for an op whose gradient is not defined for its parameters.
var undefinedGradientRE = regexp.MustCompile(`gradient of (\w+) with [^\n]* not defined`)

// unimplementedOpRE matches a backend's refusal of an op the gradient of the gradient needs, e.g. the
// pure-Go backend's for Pad (the gradient of Slice, itself the gradient of Concatenate).
var unimplementedOpRE = regexp.MustCompile(`op "(\w+)" not implemented in (\w+)`)

// translateMissingGradient turns GoMLX's "no gradient is defined" panic, and a backend's refusal of an op
// that only the gradient of the gradient needs, into an error that names the op and suggests a
// finite-difference method.
func translateMissingGradient() {
	r := recover()
	if r == nil {
		return
	}
	msg := fmt.Sprint(r)
	m := missingGradientRE.FindStringSubmatch(msg)
	if m == nil {
		// E.g. the gradient of a strided convolution is a convolution with input dilation, whose gradient
		// GoMLX refuses with "gradient of Convolve with input dilation not defined".
		m = undefinedGradientRE.FindStringSubmatch(msg)
	}
	if m == nil {
		if u := unimplementedOpRE.FindStringSubmatch(msg); u != nil {
			panic(errors.Errorf("gr.DoubleBackprop needs the gradient of the gradient, which needs op %s, but "+
				"backend %s does not implement it (the pure-Go backend lacks Pad, the gradient of Slice, so a "+
				"model with Concatenate or Slice is not twice differentiable there): use gr.ForwardDifference, "+
				"which needs first-order gradients only, or a backend with the op (XLA) (original error: %s)",
				u[1], u[2], msg))
		}
	}
	if m != nil {
		panic(errors.Errorf("gr.DoubleBackprop needs the gradient of the gradient, but the model's gradient "+
			"contains op %s, which has no gradient in GoMLX (convolutions and MaxPool are known cases): use "+
			"gr.ForwardDifference, which needs first-order gradients only (original error: %s)", m[1], msg))
	}
	panic(r)
}
