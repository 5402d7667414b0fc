package optimizers

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// Context hyperparameters read by FromContext, GoMLX style: set them with
// `-set="gr_method=forward;gr_gamma=0.05;gr_epsilon=0.05"` in any program that uses GoMLX's commandline flags.
const (
	// ParamMethod names the method: "none" (the base optimizer alone, the default), "db", "forward",
	// "backward", "central", or the SAM family "sam", "usam", "gnp", "asam" (see Methods).
	ParamMethod = "gr_method"

	// ParamGamma is γ, the weight of the penalty (γ/2)‖∇L‖². Default: DefaultGamma.
	ParamGamma = "gr_gamma"

	// ParamEpsilon is ε, the finite-difference step. Default: DefaultEpsilon.
	ParamEpsilon = "gr_epsilon"

	// ParamNormalized selects the normalized finite-difference step (see Config.Normalized). Default: false.
	ParamNormalized = "gr_normalized"
)

const (
	// DefaultGamma is the default γ (0.05, the middle of the grid searched by Karakida et al.).
	DefaultGamma = 0.05

	// DefaultEpsilon is the default finite-difference step ε.
	DefaultEpsilon = 0.05

	// NormStabilizer is δ, added to every global gradient norm that divides: ‖g₁‖ + δ. It keeps a zero
	// gradient from producing NaN (the perturbation is then zero and the method reduces to the base step).
	NormStabilizer = 1e-12
)

// methodFn builds the combined gradient of one step.
type methodFn func(s *Step) []*Node

// Config is the builder of a gradient-regularized optimizer. Create it with one of the method
// constructors (DoubleBackprop, ForwardDifference, ...), set hyperparameters and finish with Done.
//
// Invalid hyperparameters are recorded by the setters and reported by Build (as an error) or Done
// (as a panic), with the parameter's name and its valid range.
type Config struct {
	base       optimizers.Interface
	name       string
	fn         methodFn
	needsModel bool // whether the method re-evaluates the model (needs NewTrainer)

	gamma, epsilon float64
	normalized     bool

	rho, alpha, eta float64 // SAM family: ρ (sam.go), α (gnp.go), η (asam.go)

	sched schedule // Every, WarmUp, ZeroWarmUp (every.go, warmup.go)

	err error
}

func newConfig(base optimizers.Interface, name string, needsModel bool, fn methodFn) *Config {
	c := &Config{base: base, name: name, fn: fn, needsModel: needsModel,
		gamma: DefaultGamma, epsilon: DefaultEpsilon}
	if base == nil {
		c.setErr(errors.Errorf("gr.%s: base optimizer is nil: pass a GoMLX optimizer, e.g. "+
			"optimizers.StochasticGradientDescent()", name))
	}
	return c
}

// setErr records the first error found.
func (c *Config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// checkRange records an error unless value is finite and in [lo, hi] (open at lo when loOpen).
func (c *Config) checkRange(param string, value, lo, hi float64, loOpen bool) {
	ok := !math.IsNaN(value) && !math.IsInf(value, 0) && value <= hi && (value > lo || (!loOpen && value == lo))
	if ok {
		return
	}
	bracket := "["
	if loOpen {
		bracket = "("
	}
	hiStr := fmt.Sprint(hi)
	if math.IsInf(hi, 1) {
		hiStr = "+∞)"
	} else {
		hiStr += "]"
	}
	c.setErr(errors.Errorf("gr.%s: %s must be a finite number in %s%g, %s, got %g",
		c.name, param, bracket, lo, hiStr, value))
}

// Gamma sets γ, the weight of the penalty (γ/2)‖∇L‖²; valid range [0, +∞). Default: DefaultGamma.
// With γ = 0 every GR method is exactly its base optimizer.
func (c *Config) Gamma(gamma float64) *Config {
	c.checkRange("Gamma (γ)", gamma, 0, math.Inf(1), false)
	c.gamma = gamma
	return c
}

// Epsilon sets ε, the finite-difference step; valid range (0, +∞). Default: DefaultEpsilon.
// DoubleBackprop ignores it.
func (c *Config) Epsilon(epsilon float64) *Config {
	c.checkRange("Epsilon (ε)", epsilon, 0, math.Inf(1), true)
	c.epsilon = epsilon
	return c
}

// Normalized selects the normalized finite-difference step: the perturbation is h·g₁ with
// h = ε/(‖g₁‖ + δ) (a step of length ε along the gradient), and the difference is divided by h instead
// of ε, e.g. for F-GR g = (1 − γ/h)g₁ + (γ/h)∇L(θ + h g₁). It estimates the same γHg₁, with a step
// whose length does not depend on the scale of the gradient. Default: false (the plain step εg₁).
func (c *Config) Normalized(normalized bool) *Config {
	c.normalized = normalized
	return c
}

// Build validates the configuration and returns the optimizer, or an error naming the invalid
// parameter and its valid range.
func (c *Config) Build() (optimizers.Interface, error) {
	if c.err != nil {
		return nil, c.err
	}
	cp := *c
	return &Regularized{cfg: &cp}, nil
}

// Done returns the optimizer. It panics with the error of Build if a hyperparameter is invalid:
// use Build to get the error instead.
func (c *Config) Done() optimizers.Interface {
	opt, err := c.Build()
	if err != nil {
		panic(err)
	}
	return opt
}

// Methods is the list of values accepted by ParamMethod, in registration order ("none" first).
var Methods = []string{"none"}

// constructors maps a ParamMethod value to its constructor ("none" is handled by FromContext).
var constructors = map[string]func(optimizers.Interface) *Config{}

// fromContextHooks read further hyperparameters from the context into a Config (e.g. ρ for SAM).
var fromContextHooks []func(ctx *context.Context, c *Config)

// readParamIfSet registers a FromContext hook: when the context sets param, set applies its value.
func readParamIfSet[T any](param string, set func(c *Config, value T) *Config) {
	fromContextHooks = append(fromContextHooks, func(ctx *context.Context, c *Config) {
		if _, found := ctx.GetParam(param); found {
			var zero T
			set(c, context.GetParamOr(ctx, param, zero))
		}
	})
}

// registerMethod makes a method available to FromContext under name; each method's file calls it from init.
func registerMethod(name string, constructor func(optimizers.Interface) *Config) {
	Methods = append(Methods, name)
	constructors[name] = constructor
}

// FromContext builds the optimizer named by the context hyperparameter ParamMethod around base, with γ, ε
// and the normalized option read from ParamGamma, ParamEpsilon and ParamNormalized. With method "none"
// (the default) it returns base itself. Errors name the parameter and its valid values.
func FromContext(ctx *context.Context, base optimizers.Interface) (optimizers.Interface, error) {
	method := context.GetParamOr(ctx, ParamMethod, "none")
	if method == "none" || method == "" {
		return base, nil
	}
	constructor, found := constructors[method]
	if !found {
		return nil, errors.Errorf("gr.FromContext: unknown %s %q: valid values are %s",
			ParamMethod, method, strings.Join(Methods, "|"))
	}
	c := constructor(base).
		Gamma(context.GetParamOr(ctx, ParamGamma, DefaultGamma)).
		Epsilon(context.GetParamOr(ctx, ParamEpsilon, DefaultEpsilon)).
		Normalized(context.GetParamOr(ctx, ParamNormalized, false))
	for _, hook := range fromContextHooks {
		hook(ctx, c)
	}
	return c.Build()
}
