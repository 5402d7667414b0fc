package gr

import (
	"regexp"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/pkg/errors"
)

// ParamExclude is the pattern of Config.Exclude, read by FromContext: a regular expression (Go's regexp
// syntax) matched against each trainable variable's ScopeAndName, e.g. -set="gr_exclude=bias|gain|offset|scale".
// Default: "" (no variable excluded).
const ParamExclude = "gr_exclude"

// Mask restricts the method to the trainable variables for which acts returns true; the others are left to
// the base optimizer alone. Every method has it, without its code knowing: the Step a method sees holds only
// the variables it acts on (Step.Variables, and Theta, Grad, GradAt, State, RandomNormal, ... in that order),
// so for a variable the method does not act on
//
//   - the perturbation is zero: GradAt and GradAlong evaluate the model with it at θ;
//   - it does not count in any norm or inner product the method takes, e.g. SAM's ‖g₁‖ in
//     e = ρg₁/(‖g₁‖ + δ) is the norm over the variables it acts on;
//   - the gradient handed to the base optimizer is its plain g₁ = ∂L/∂θ, on every step (Every, WarmUp and the
//     fallback of GuardNonFinite concern the method's variables only).
//
// E.g. SAM that leaves biases and normalization parameters unperturbed, as is common for transformers:
//
//	gr.SAM(base).Rho(0.05).Mask(func(v *context.Variable) bool {
//		return !regexp.MustCompile(`bias|gain|offset|scale`).MatchString(v.ScopeAndName())
//	}).Done()
//
// or, the same from the command line, Exclude (ParamExclude). A variable acts when Mask says so and Exclude
// does not match it. The metrics ‖g₁‖, the penalty and the curvature are then those of the method's
// variables. The predicate is called at graph building, once per variable per graph. A mask that leaves the
// method no variable is an error at graph building. Default: nil (every trainable variable).
func (c *Config) Mask(acts func(v *context.Variable) bool) *Config {
	c.mask = acts
	return c
}

// Exclude leaves to the base optimizer alone (see Mask) every trainable variable whose ScopeAndName — its
// scope and name, e.g. "/vit/block_0/attention/dense/biases" — matches the regular expression pattern (Go's
// regexp syntax, unanchored: "bias" matches any name containing it). Context key ParamExclude ("gr_exclude").
// An invalid pattern is an error naming the key. Default: "" (none excluded). With Mask too, a variable acts
// when Mask says so and pattern does not match it.
func (c *Config) Exclude(pattern string) *Config {
	c.exclude, c.excludeRE = pattern, nil
	if pattern == "" {
		return c
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		c.setErr(errors.Errorf("gr.%s: Exclude [%s] must be a regular expression (Go's regexp syntax), got %q: %v",
			c.name, ParamExclude, pattern, err))
		return c
	}
	c.excludeRE = re
	return c
}

// acts reports whether the method acts on the trainable variable v (Mask and Exclude).
func (c *Config) acts(v *context.Variable) bool {
	if c.excludeRE != nil && c.excludeRE.MatchString(v.ScopeAndName()) {
		return false
	}
	return c.mask == nil || c.mask(v)
}

// Variables returns the trainable variables the method acts on (see Config.Mask), in the order of Theta, Grad
// and every other per-variable list of the Step: the trainable variables the training graph uses, in the
// context's order (ctx.IterVariables), without those Mask or Exclude leave out. Their names
// (ScopeAndName) tell a method which variable is which, e.g. to treat biases apart.
func (s *Step) Variables() []*context.Variable { return s.vars }
