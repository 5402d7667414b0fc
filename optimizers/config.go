package gr

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// Context hyperparameters read by FromContext, GoMLX style: set them with
// `-set="gr_method=forward;gr_gamma=0.05;gr_epsilon=0.05"` in any program that uses GoMLX's commandline flags.
// FromContext reads only the keys of the chosen method (ParamDefaults lists them); ParamKeys lists every key.
const (
	// ParamMethod names the method: "none" (the base optimizer alone, the default), "db", "forward",
	// "backward", "central", the SAM family "sam", "usam", "gnp", "asam", or a method added with Register
	// (see Methods).
	ParamMethod = "gr_method"

	// ParamGamma is γ, the weight of the penalty (γ/2)‖∇L‖² (db, forward, backward, central).
	// Default: DefaultGamma.
	ParamGamma = "gr_gamma"

	// ParamEpsilon is ε, the finite-difference step (forward, backward, central). Default: DefaultEpsilon.
	ParamEpsilon = "gr_epsilon"

	// ParamNormalized selects the normalized finite-difference step (forward, backward, central; see
	// Config.Normalized). Default: false.
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

// Hyperparameter declares one hyperparameter of a method (Config.Declare): its context key, the method's
// default and the valid range. A method has exactly the hyperparameters it declares: setting any other is
// an error, and FromContext reads only the declared keys.
type Hyperparameter struct {
	Key     string  // context key read by FromContext, e.g. ParamRho ("gr_rho"); also the name for Config.Set
	Name    string  // name in error messages, e.g. "Rho (ρ)"; Key when empty
	Default any     // the method's default: a float64 or a bool (its type is the hyperparameter's type)
	Min     float64 // valid range of a float64: [Min, Max], or (Min, Max] with MinOpen; Max may be +Inf
	Max     float64
	MinOpen bool
}

func (h Hyperparameter) name() string {
	if h.Name == "" {
		return h.Key
	}
	return h.Name
}

// Config is the builder of a gradient-regularized optimizer. Create it with one of the method
// constructors (DoubleBackprop, ForwardDifference, ..., or one made by NewMethod), set hyperparameters and
// options and finish with Done.
//
// Invalid hyperparameters, and setters of hyperparameters the method does not have, are recorded by the
// setters and reported by Build (as an error) or Done (as a panic), with the method, the parameter's name
// and its valid range.
type Config struct {
	base    optimizers.Interface
	name    string
	fn      func(s *Step) []*Node // the combined gradient (full phase)
	reuse   func(s *Step) []*Node // the gradient on the reuse steps of Every(k); nil: g₁ + stored correction
	update  func(s *Step)         // state updates run on every step, after fn or reuse; nil: none
	penalty func(s *Step) *Node   // the penalty metric; nil: (γ/2)‖g₁‖² if the method has γ

	params []Hyperparameter // declared, in order
	values map[string]any   // current values, by key

	sched schedule // Every, WarmUp, ZeroWarmUp (every.go, warmup.go)

	groups  int    // Groups (groups.go); 0 or 1: the whole batch
	scope   string // Scope (state.go); "": DefaultScope
	noGuard bool   // GuardNonFinite(false) (guard.go)

	noStabilityWarning bool   // WarnUnstable(false) (stability.go)
	stabilityKey       string // key of the γ of the stability check; "": not covered (stability.go)

	err error
}

// NewMethod returns the constructor of a method, shaped like ForwardDifference: fn builds the combined
// gradient handed to the base optimizer, one node per trainable variable in the order of Step.Theta, from the
// *Step of the training step (θ, g₁, GradAt, hyperparameters, state and vector helpers). name is the
// method's name in error messages (Regularized.Method); Register makes the constructor available to
// FromContext under a gr_method value.
//
// The constructor returns a *Config with no hyperparameters: a method declares its own with Declare or
// Param, typically in a wrapping constructor, and may define its reuse computation for Every(k) (Reuse),
// per-step state updates (Update) and its penalty metric (Penalty). Every option (Every, WarmUp,
// ZeroWarmUp, Metrics, checkpoints of its state, ...) applies to it without its code knowing:
//
//	var newGSAM = gr.NewMethod("GSAM", gsamGrad)
//
//	func GSAM(base optimizers.Interface) *gr.Config {
//		return newGSAM(base).Param(gr.ParamRho, 0.05, 0, math.Inf(1)).Param(gr.ParamAlpha, 0.4, 0, 1)
//	}
//
//	func init() { gr.Register("gsam", GSAM) }
func NewMethod(name string, fn func(s *Step) []*graph.Node) func(base optimizers.Interface) *Config {
	if name == "" || fn == nil {
		panicf("gr.NewMethod: the name (%q) must not be empty and fn must not be nil", name)
	}
	return func(base optimizers.Interface) *Config {
		c := &Config{base: base, name: name, fn: fn, values: map[string]any{}}
		if base == nil {
			c.setErr(errors.Errorf("gr.%s: base optimizer is nil: pass a GoMLX optimizer, e.g. "+
				"optimizers.StochasticGradientDescent()", name))
		}
		return c
	}
}

// Declare declares hyperparameters of the method (for method authors): each gets its default value,
// FromContext reads its key, and Set (or a named setter such as Rho) changes it. A default outside its range,
// a type other than float64 or bool, or a key declared twice is an error reported by Build.
func (c *Config) Declare(params ...Hyperparameter) *Config {
	for _, h := range params {
		switch {
		case h.Key == "" || c.lookup(h.Key) != nil:
			c.setErr(errors.Errorf("gr.%s: hyperparameter key %q is empty or declared twice", c.name, h.Key))
			continue
		case !isFloat(h.Default) && !isBool(h.Default):
			c.setErr(errors.Errorf("gr.%s: the default of %s must be a float64 or a bool, got %T",
				c.name, h.name(), h.Default))
			continue
		}
		c.params = append(c.params, h)
		c.Set(h.Key, h.Default)
	}
	return c
}

// Param declares a float64 hyperparameter with context key key, default def and valid range [lo, hi]
// (hi may be +Inf): Declare(Hyperparameter{Key: key, Default: def, Min: lo, Max: hi}).
func (c *Config) Param(key string, def, lo, hi float64) *Config {
	return c.Declare(Hyperparameter{Key: key, Default: def, Min: lo, Max: hi})
}

// Set sets the hyperparameter with context key key (a float64, or an int for a float64 hyperparameter, or a
// bool). It is an error if the method does not declare key, if the type differs or if the value is out of
// range.
func (c *Config) Set(key string, value any) *Config {
	return c.set(key, key, value)
}

// set is Set with the setter's name for the error of an undeclared hyperparameter.
func (c *Config) set(key, name string, value any) *Config {
	h := c.lookup(key)
	if h == nil {
		keys := make([]string, len(c.params))
		for i, p := range c.params {
			keys[i] = p.name()
		}
		c.setErr(errors.Errorf("gr.%s: %s has no hyperparameter %s (%s): its hyperparameters are [%s]",
			c.name, c.name, name, key, strings.Join(keys, ", ")))
		return c
	}
	if isBool(h.Default) {
		b, ok := value.(bool)
		if !ok {
			c.setErr(errors.Errorf("gr.%s: %s must be a bool, got %T %v", c.name, h.name(), value, value))
			return c
		}
		c.values[key] = b
		return c
	}
	var v float64
	switch x := value.(type) {
	case float64:
		v = x
	case float32:
		v = float64(x)
	case int:
		v = float64(x)
	default:
		c.setErr(errors.Errorf("gr.%s: %s must be a number, got %T %v", c.name, h.name(), value, value))
		return c
	}
	c.checkRange(h, v)
	c.values[key] = v
	return c
}

func (c *Config) lookup(key string) *Hyperparameter {
	for i := range c.params {
		if c.params[i].Key == key {
			return &c.params[i]
		}
	}
	return nil
}

func isFloat(v any) bool { _, ok := v.(float64); return ok }
func isBool(v any) bool  { _, ok := v.(bool); return ok }

// setErr records the first error found.
func (c *Config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// checkRange records an error unless value is finite and in h's range.
func (c *Config) checkRange(h *Hyperparameter, value float64) {
	lo, hi := h.Min, h.Max
	ok := !math.IsNaN(value) && !math.IsInf(value, 0) && value <= hi && (value > lo || (!h.MinOpen && value == lo))
	if ok {
		return
	}
	bracket := "["
	if h.MinOpen {
		bracket = "("
	}
	hiStr := fmt.Sprint(hi)
	if math.IsInf(hi, 1) {
		hiStr = "+∞)"
	} else {
		hiStr += "]"
	}
	c.setErr(errors.Errorf("gr.%s: %s must be a finite number in %s%g, %s, got %g",
		c.name, h.name(), bracket, lo, hiStr, value))
}

// Reuse defines the method's gradient on the reuse steps of Every(k) (for method authors; Step.Phase is then
// PhaseReuse). Default: g₁ + the correction g − g₁ stored on the last full step. A method with its own
// reuse computation keeps what it needs in Step.State; no correction is stored for it.
func (c *Config) Reuse(fn func(s *Step) []*Node) *Config {
	c.reuse = fn
	return c
}

// Update defines state updates that run on every step (for method authors), in both phases of Every(k),
// after the method's gradient or its reuse computation (which read the state of the previous step):
// Step.State in it returns what they wrote, if anything, else the previous step's value.
func (c *Config) Update(fn func(s *Step)) *Config {
	c.update = fn
	return c
}

// Penalty defines the method's penalty metric (for method authors; see Metrics): a scalar computed on every
// step from g₁ and θ. Default: (γ/2)‖g₁‖² for a method with γ (ParamGamma); for a method with neither γ nor
// Penalty the penalty metric is not reported (it keeps its last value).
func (c *Config) Penalty(fn func(s *Step) *Node) *Config {
	c.penalty = fn
	return c
}

// Gamma sets γ, the weight of the penalty (γ/2)‖∇L‖²; valid range [0, +∞). Default: DefaultGamma.
// With γ = 0 every GR method is exactly its base optimizer. DB, forward, backward and central have it.
func (c *Config) Gamma(gamma float64) *Config { return c.set(ParamGamma, "Gamma (γ)", gamma) }

// Epsilon sets ε, the finite-difference step; valid range (0, +∞). Default: DefaultEpsilon.
// Forward, backward and central have it.
func (c *Config) Epsilon(epsilon float64) *Config {
	return c.set(ParamEpsilon, "Epsilon (ε)", epsilon)
}

// Normalized selects the normalized finite-difference step: the perturbation is h·g₁ with
// h = ε/(‖g₁‖ + δ) (a step of length ε along the gradient), and the difference is divided by h instead
// of ε, e.g. for F-GR g = (1 − γ/h)g₁ + (γ/h)∇L(θ + h g₁). It estimates the same γHg₁, with a step
// whose length does not depend on the scale of the gradient. Default: false (the plain step εg₁).
// Forward, backward and central have it.
func (c *Config) Normalized(normalized bool) *Config {
	return c.set(ParamNormalized, "Normalized", normalized)
}

// Declarations of the hyperparameters shared by the built-in methods.
var (
	gammaParam      = Hyperparameter{Key: ParamGamma, Name: "Gamma (γ)", Default: DefaultGamma, Max: math.Inf(1)}
	epsilonParam    = Hyperparameter{Key: ParamEpsilon, Name: "Epsilon (ε)", Default: DefaultEpsilon, Max: math.Inf(1), MinOpen: true}
	normalizedParam = Hyperparameter{Key: ParamNormalized, Name: "Normalized", Default: false}
)

// Build validates the configuration and returns the optimizer, or an error naming the invalid
// parameter and its valid range.
func (c *Config) Build() (optimizers.Interface, error) {
	if c.err != nil {
		return nil, c.err
	}
	cp := *c
	cp.params = slices.Clone(c.params)
	cp.values = make(map[string]any, len(c.values))
	for k, v := range c.values {
		cp.values[k] = v
	}
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

// Methods returns the values accepted by ParamMethod, in registration order ("none" first). The slice is a
// copy: changing it changes nothing registered.
func Methods() []string { return slices.Clone(methodNames) }

// methodNames holds the registered method names, "none" first.
var methodNames = []string{"none"}

// method is a registered method: its constructor and its declared hyperparameters.
type method struct {
	constructor func(optimizers.Interface) *Config
	params      []Hyperparameter
}

// methods maps a ParamMethod value to its method ("none" is handled by FromContext).
var methods = map[string]method{}

// Register makes a method available to FromContext (and to programs that list Methods) under name, the
// value of ParamMethod. Call it from an init function. It panics if name is empty, "none" or taken.
func Register(name string, constructor func(optimizers.Interface) *Config) {
	if _, taken := methods[name]; taken || name == "" || name == "none" || constructor == nil {
		panicf("gr.Register: method name %q is empty, \"none\" or already registered (or the constructor is nil)", name)
	}
	methods[name] = method{constructor: constructor, params: constructor(nil).params}
	methodNames = append(methodNames, name)
}

// option is a setting every method has (Every, WarmUp, ZeroWarmUp, ...): its context key, default and
// the FromContext hook that applies it.
type option struct {
	key   string
	def   any
	apply func(ctx *context.Context, c *Config)
}

var options []option

// readParamIfSet registers an option read by FromContext: when the context sets param, set applies its
// value; def is the option's default (ParamDefaults).
func readParamIfSet[T any](param string, def T, set func(c *Config, value T) *Config) {
	options = append(options, option{key: param, def: def, apply: func(ctx *context.Context, c *Config) {
		if _, found := ctx.GetParam(param); found {
			set(c, context.GetParamOr(ctx, param, def))
		}
	}})
}

// FromContext builds the optimizer named by the context hyperparameter ParamMethod around base. It reads
// the hyperparameters the chosen method declares (each keeps the method's default when the context does not
// set it; keys of other methods are not read) and the options every method has (ParamEvery, ParamWarmUp,
// ParamZeroWarmUp, ...). With method "none" (the default) it returns base itself. Errors name the parameter
// and its valid values.
func FromContext(ctx *context.Context, base optimizers.Interface) (optimizers.Interface, error) {
	name := context.GetParamOr(ctx, ParamMethod, "none")
	if name == "none" || name == "" {
		return base, nil
	}
	m, found := methods[name]
	if !found {
		return nil, errors.Errorf("gr.FromContext: unknown %s %q: valid values are %s",
			ParamMethod, name, strings.Join(methodNames, "|"))
	}
	c := m.constructor(base)
	for _, h := range c.params {
		if value, found := ctx.GetParam(h.Key); found && value != nil {
			c.Set(h.Key, value)
		}
	}
	for _, o := range options {
		o.apply(ctx, c)
	}
	return c.Build()
}

// ParamDefaults returns every context key FromContext reads for method (a ParamMethod value): ParamMethod
// itself, the method's own hyperparameters with the method's defaults, and the options every method has
// with their defaults. For "none" it is ParamMethod alone. Programs register these defaults so that flags
// and -set follow the chosen method (e.g. ρ = 0.5 for asam, 0.1 for gnp).
func ParamDefaults(method string) (map[string]any, error) {
	out := map[string]any{ParamMethod: method}
	if method == "none" {
		return out, nil
	}
	m, found := methods[method]
	if !found {
		return nil, errors.Errorf("gr.ParamDefaults: unknown %s %q: valid values are %s",
			ParamMethod, method, strings.Join(methodNames, "|"))
	}
	for _, h := range m.params {
		out[h.Key] = h.Default
	}
	for _, o := range options {
		out[o.key] = o.def
	}
	return out, nil
}

// ParamKeys returns, sorted, every context key that FromContext reads for some registered method or option.
// Programs register all of them (GoMLX's -set rejects unknown keys), so that one config file serves every
// method; FromContext then reads only the chosen method's keys.
func ParamKeys() []string {
	keys := []string{ParamMethod}
	for _, o := range options {
		keys = append(keys, o.key)
	}
	for _, m := range methods {
		for _, h := range m.params {
			keys = append(keys, h.Key)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
