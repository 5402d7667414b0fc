package gr

import (
	"fmt"
	"regexp"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/optimizers/grgrad"
)

func init() { Register("db", DoubleBackprop) }

// DoubleBackprop returns exact gradient regularization by double backpropagation:
//
//	g = ∇[L + (γ/2)‖∇L‖²] = g₁ + γHg₁
//
// Hg₁ is obtained by differentiating (γ/2)‖g₁‖² through the graph of g₁, so every op of the model must have
// a differentiable gradient. GoMLX v0.26.0's gradients of convolutions, MaxPool and batchnorm.New are not:
// call grgrad.Install() (optimizers/grgrad) at the start of the program for CNNs. On a model with an op
// whose gradient cannot be differentiated, the graph build fails with an error naming the op and the
// remedy (grgrad.Install where it helps, else ForwardDifference). Cost: about 2–3× a plain step (one backward pass through the backward pass).
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

// GoMLX's panics when a gradient cannot be differentiated again, and how to find the op in each.
var (
	// An op without a gradient.
	missingGradientRE = regexp.MustCompile(`with type "([^"]+)", for which no gradient is defined`)
	// An op whose gradient is not defined for its parameters, e.g. GoMLX's "gradient of Convolve with
	// input dilation not defined" (the gradient of a strided convolution is input-dilated).
	undefinedGradientRE = regexp.MustCompile(`gradient of (\w+) with [^\n]* not defined`)
	// A gradient of the wrong shape: GoMLX's gradient of a kernel-dilated convolution.
	invalidGradientRE = regexp.MustCompile(`invalid Gradient calculation for node "(?:\[[^\]]*\] )?(\w+)\(`)
	// GoMLX's gradient of a convolution's gradient building a convolution of mismatched shapes.
	convShapeRE = regexp.MustCompile(`\b(Convolve|ConvGeneral)(?:Op)?: |reverse (Convolve)\(\) for gradient`)
	// A backend's refusal of an op that only the gradient of the gradient needs.
	unimplementedOpRE = regexp.MustCompile(`op "(\w+)" not implemented in (\w+)`)
)

// translateMissingGradient turns GoMLX's panics for a gradient it cannot differentiate, and a backend's
// refusal of an op that only the gradient of the gradient needs, into an error that names the op and the
// remedy: grgrad.Install where grgrad has the gradient GoMLX lacks, else a finite-difference method.
func translateMissingGradient() {
	r := recover()
	if r == nil {
		return
	}
	msg := fmt.Sprint(r)
	if u := unimplementedOpRE.FindStringSubmatch(msg); u != nil {
		panic(errors.Errorf("gr.DoubleBackprop needs the gradient of the gradient, which needs op %s, but "+
			"backend %s does not implement it: use a backend with the op (XLA), or gr.ForwardDifference, "+
			"which needs first-order gradients only (original error: %s)", u[1], u[2], msg))
	}
	op := ""
	for _, re := range []*regexp.Regexp{missingGradientRE, undefinedGradientRE, invalidGradientRE, convShapeRE} {
		if m := re.FindStringSubmatch(msg); m != nil {
			for _, g := range m[1:] {
				if g != "" {
					op = g
					break
				}
			}
			break
		}
	}
	if op == "" {
		panic(r)
	}
	if op == "Convolve" {
		op = "ConvGeneral"
	}
	if !grgrad.Installed() && grgrad.CoversOp(op) {
		panic(errors.Errorf("gr.DoubleBackprop needs the gradient of the gradient (second order), but GoMLX "+
			"cannot differentiate the gradient of op %s: call grgrad.Install() (package "+
			"github.com/gradreg/gradreg/optimizers/grgrad) once at the start of the program, before any graph "+
			"is built, which gives %s a gradient that is differentiable again; or use gr.ForwardDifference, "+
			"which needs first-order gradients only", op, op))
	}
	panic(errors.Errorf("gr.DoubleBackprop needs the gradient of the gradient (second order), but the model's "+
		"gradient contains op %s, which has no gradient in GoMLX (nor in optimizers/grgrad): use "+
		"gr.ForwardDifference, which needs first-order gradients only (original error: %s)", op, msg))
}
