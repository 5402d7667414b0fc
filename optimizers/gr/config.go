package gr

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/pkg/errors"
)

// Context hyperparameters read by FromContext, GoMLX style: set them with
// `-set="gr_method=forward;gr_gamma=0.05;gr_epsilon=0.05"` in any program that uses GoMLX's commandline flags,
// after RegisterParams has made the keys known. Each key has one meaning: a key several methods read (gr_gamma,
// gr_epsilon, gr_normalized, gr_rho and the options) means the same quantity for each of them, and a
// method-specific hyperparameter has a key named after its method (gr_gnp_alpha, gr_asam_eta, ...), so one
// settings file can hold values for every method. FromContext reads only the keys of the chosen method
// (ParamDefaults lists them); ParamKeys lists every key.
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
	NormStabilizer = grvec.NormStabilizer
)

// Hyperparameter declares one hyperparameter of a method (Config.Declare): its context key, the method's
// default and the valid range. A method has exactly the hyperparameters it declares: setting any other is
// an error, and FromContext reads only the declared keys.
//
// Its type is the type of Default: float64, int (an integer hyperparameter: a value with a fractional part
// is an error), bool or string. Min and Max bound a float64 or an int: the range is [Min, Max], with MinOpen
// (Min, Max], with MaxOpen [Min, Max); Max may be +Inf (then the range is open above). A method reads the
// value with Step.ParamFloat (or Step.Param, as a scalar node that follows a Schedule), Step.ParamInt,
// Step.ParamBool or Step.ParamString.
//
// This is the one way to declare a hyperparameter (Config.Declare). E.g. GSAM's α, which Config.Alpha sets
// because its Name is "Alpha (α)":
//
//	gr.Hyperparameter{Key: "gr_gsam_alpha", Name: "Alpha (α)", Default: 0.4, Min: 0, Max: 1}
//
// Several methods may declare the same key only for the same quantity, with the same type and range (Register
// checks this); their defaults may differ (e.g. ρ of SAM and ASAM). A method's own hyperparameter gets a key
// named after the method, e.g. "gr_gsam_alpha".
type Hyperparameter struct {
	Key     string  // context key read by FromContext, e.g. ParamRho ("gr_rho"); also the name for Config.Set
	Name    string  // name in error messages, e.g. "Rho (ρ)"; Key when empty
	Default any     // the method's default: a float64, an int, a bool or a string (its type is the hyperparameter's type)
	Min     float64 // valid range of a float64 or int: [Min, Max]; Max may be +Inf
	Max     float64
	MinOpen bool // the range excludes Min
	MaxOpen bool // the range excludes Max
}

func (h Hyperparameter) name() string {
	if h.Name == "" {
		return h.Key
	}
	return h.Name
}

// label is the hyperparameter in error messages: its name and the context key the user sets, e.g.
// "Rho (ρ) [gr_rho]", or the key alone when it has no other name.
func (h Hyperparameter) label() string {
	if h.Name == "" || h.Name == h.Key {
		return h.Key
	}
	return h.Name + " [" + h.Key + "]"
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
	name    string                // the method's name in messages, e.g. "SAM"; "none": the base optimizer alone
	key     string                // the ParamMethod value FromContext built it from, e.g. "sam"; "" otherwise
	fn      func(s *Step) []*Node // the combined gradient (full phase)
	reuse   func(s *Step) []*Node // the gradient on the reuse steps of Every(k); nil: g₁ + stored correction
	update  func(s *Step)         // state updates run on every step, after fn or reuse; nil: none
	penalty func(s *Step) *Node   // the penalty metric; nil: (γ/2)‖g₁‖² if the method has γ

	params []Hyperparameter // declared, in order
	values map[string]any   // current values, by key

	sched     cadence             // Every, WarmUp, ZeroWarmUp (every.go, warmup.go)
	schedules map[string]Schedule // Schedule, by key (schedule.go)

	groups  int    // Groups (groups.go); 0 or 1: the whole batch
	scope   string // Scope (state.go); "": DefaultScope
	noGuard bool   // GuardNonFinite(false) (guard.go)

	mask      func(*context.Variable) bool // Mask (mask.go); nil: every trainable variable
	exclude   string                       // Exclude (mask.go): the pattern as given; "": none
	excludeRE *regexp.Regexp               // Exclude, compiled

	noStabilityWarning bool   // WarnUnstable(false) (stability.go)
	stabilityKey       string // key of the γ of the stability check; "": not covered (stability.go)

	err error
}

// NewMethod returns the constructor of a method, shaped like ForwardDifference: fn builds the combined
// gradient handed to the base optimizer, one node per variable of Step.Variables in the order of Step.Theta, from the
// *Step of the training step (θ, g₁, GradAt, hyperparameters, state and vector helpers). name is the
// method's name in error messages (Regularized.Method); Register makes the constructor available to
// FromContext under a gr_method value.
//
// The constructor returns a *Config with no hyperparameters: a method declares its own with Declare,
// typically in a wrapping constructor, and may define its reuse computation for Every(k) (Reuse),
// per-step state updates (Update) and its penalty metric (Penalty). Every option (Every, WarmUp,
// ZeroWarmUp, Metrics, checkpoints of its state, ...) applies to it without its code knowing:
//
//	var newGSAM = gr.NewMethod("GSAM", gsamGrad)
//
//	func GSAM(base optimizers.Interface) *gr.Config {
//		return newGSAM(base).Declare(
//			gr.Hyperparameter{Key: gr.ParamRho, Name: "Rho (ρ)", Default: 0.05, Max: math.Inf(1)},
//			gr.Hyperparameter{Key: "gr_gsam_alpha", Name: "Alpha (α)", Default: 0.4, Max: 1})
//	}
//
//	func init() { gr.Register("gsam", GSAM) }
//
// A method acts on the trainable variables Config.Mask and Config.Exclude leave it (Step.Variables); the
// others get the base optimizer's plain step, without the method's code knowing.
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
// FromContext reads its key, and Set (or a named setter such as Rho, for the Name "Rho (ρ)") changes it. A
// default outside its range, a type other than float64, int, bool or string, a key declared twice or the key
// of an option every method has (e.g. ParamEvery) is an error reported by Build (and a panic of Register).
func (c *Config) Declare(params ...Hyperparameter) *Config {
	for _, h := range params {
		switch {
		case h.Key == "" || c.lookup(h.Key) != nil || findOption(h.Key) != nil:
			c.setErr(errors.Errorf("gr.%s: hyperparameter key %q is empty, declared twice or the key of an "+
				"option every method has", c.name, h.Key))
			continue
		case !isFloat(h.Default) && !isInt(h.Default) && !isBool(h.Default) && !isString(h.Default):
			c.setErr(errors.Errorf("gr.%s: the default of %s must be a float64, an int, a bool or a string, got %T",
				c.name, h.label(), h.Default))
			continue
		case h.Name == "":
			h.Name = h.Key
		}
		c.params = append(c.params, h)
		c.Set(h.Key, h.Default)
	}
	return c
}

// Set sets the hyperparameter with context key key: a number for a float64 hyperparameter (float64, float32
// or an integer type), an integer for an int hyperparameter (an integer type, or a float64 without a
// fractional part, as JSON decoders give), a bool for a bool one, a string for a string one. It is an error if the method does not
// declare key, if the type differs or if the value is out of range.
func (c *Config) Set(key string, value any) *Config {
	return c.set(key, key, value)
}

// set is Set with the setter's name: a hyperparameter the method declares under another key with that name
// (e.g. "Alpha (α)" of a method's own α), and the name for the error of an undeclared hyperparameter.
func (c *Config) set(key, name string, value any) *Config {
	h := c.lookup(key)
	for i := range c.params {
		if h == nil && c.params[i].Name == name {
			h, key = &c.params[i], c.params[i].Key
		}
	}
	if h == nil {
		keys := make([]string, len(c.params))
		for i, p := range c.params {
			keys[i] = p.name()
		}
		c.setErr(errors.Errorf("gr.%s: %s has no hyperparameter %s (%s): its hyperparameters are [%s]",
			c.name, c.name, name, key, strings.Join(keys, ", ")))
		return c
	}
	if isBool(h.Default) || isString(h.Default) {
		if fmt.Sprintf("%T", value) != fmt.Sprintf("%T", h.Default) {
			c.setErr(errors.Errorf("gr.%s: %s must be a %T, got %T %v", c.name, h.label(), h.Default, value, value))
			return c
		}
		c.values[key] = value
		return c
	}
	v, ok := toFloat(value)
	if !ok {
		c.setErr(errors.Errorf("gr.%s: %s must be a number, got %T %v", c.name, h.label(), value, value))
		return c
	}
	if isInt(h.Default) {
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			c.setErr(errors.Errorf("gr.%s: %s must be an integer in %s, got %v", c.name, h.label(), h.rangeString(), value))
			return c
		}
		c.checkRange(h, v)
		c.values[key] = int(v)
		return c
	}
	c.checkRange(h, v)
	c.values[key] = v
	return c
}

// toFloat converts a number of any Go numeric type to float64.
func toFloat(value any) (float64, bool) {
	switch x := value.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

func (c *Config) lookup(key string) *Hyperparameter {
	for i := range c.params {
		if c.params[i].Key == key {
			return &c.params[i]
		}
	}
	return nil
}

func isFloat(v any) bool  { _, ok := v.(float64); return ok }
func isInt(v any) bool    { _, ok := v.(int); return ok }
func isBool(v any) bool   { _, ok := v.(bool); return ok }
func isString(v any) bool { _, ok := v.(string); return ok }

// setErr records the first error found.
func (c *Config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// checkRange records an error unless value is finite and in h's range.
func (c *Config) checkRange(h *Hyperparameter, value float64) {
	if h.inRange(value) {
		return
	}
	kind := "a finite number"
	if isInt(h.Default) {
		kind = "an integer"
	}
	c.setErr(errors.Errorf("gr.%s: %s must be %s in %s, got %g", c.name, h.label(), kind, h.rangeString(), value))
}

// inRange reports whether value is finite and in h's range.
func (h *Hyperparameter) inRange(value float64) bool {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return false
	}
	aboveMin := value > h.Min || (!h.MinOpen && value == h.Min)
	belowMax := value < h.Max || (!h.MaxOpen && value == h.Max)
	return aboveMin && belowMax
}

// rangeString writes h's range as an interval, e.g. "[0, +∞)", "(0, 1]", "[0, 1)".
func (h *Hyperparameter) rangeString() string {
	lo, hi := "[", "]"
	if h.MinOpen {
		lo = "("
	}
	if h.MaxOpen || math.IsInf(h.Max, 1) {
		hi = ")"
	}
	bound := func(v float64) string {
		switch {
		case math.IsInf(v, 1):
			return "+∞"
		case math.IsInf(v, -1):
			return "−∞"
		}
		return fmt.Sprint(v)
	}
	return lo + bound(h.Min) + ", " + bound(h.Max) + hi
}

// sameRange reports whether h and o have the same type and valid range.
func (h *Hyperparameter) sameRange(o *Hyperparameter) bool {
	return fmt.Sprintf("%T", h.Default) == fmt.Sprintf("%T", o.Default) && h.Min == o.Min && h.Max == o.Max &&
		h.MinOpen == o.MinOpen && h.MaxOpen == o.MaxOpen
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
