package gr

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// Methods returns the values accepted by ParamMethod, in registration order ("none" first). The slice is a
// copy: changing it changes nothing registered.
func Methods() []string { return slices.Clone(methodNames) }

// methodNames holds the registered method names, "none" first.
var methodNames = []string{"none"}

// method is a registered method: its constructor, its name in messages and its declared hyperparameters.
type method struct {
	constructor func(optimizers.Interface) *Config
	display     string // Config's name, e.g. "SAM" for "sam"
	params      []Hyperparameter
}

// methods maps a ParamMethod value to its method ("none" is handled by FromContext).
var methods = map[string]method{}

// registrationBase is the base optimizer Register builds a method's Config with, to read its declarations.
type registrationBase struct{ optimizers.Interface }

// Register makes a method available to FromContext, RegisterParams and Methods under name, the value of
// ParamMethod. Call it from an init function. It panics, naming the failed condition, if name is empty or
// "none", if a method is already registered under name, if constructor is nil, if the method's declarations
// are invalid (see Config.Declare), or if it declares a key that an already registered method declares with
// another type or valid range (a key has one meaning: give a method-specific hyperparameter its own key).
func Register(name string, constructor func(optimizers.Interface) *Config) {
	switch {
	case name == "":
		panicf("gr.Register: the method name is empty")
	case name == "none":
		panicf(`gr.Register: the method name "none" is reserved (the base optimizer alone)`)
	case constructor == nil:
		panicf("gr.Register(%q): the constructor is nil", name)
	}
	if _, taken := methods[name]; taken {
		panicf("gr.Register(%q): a method is already registered under this name", name)
	}
	cfg := constructor(registrationBase{})
	if cfg == nil {
		panicf("gr.Register(%q): the constructor returned a nil *Config", name)
	}
	if cfg.err != nil {
		panicf("gr.Register(%q): the method's declarations are invalid: %v", name, cfg.err)
	}
	for i := range cfg.params {
		h := &cfg.params[i]
		for _, other := range methodNames[1:] {
			o := methods[other].lookup(h.Key)
			if o != nil && !h.sameRange(o) {
				panicf("gr.Register(%q): key %s is declared as a %T in %s, but method %q declares it as a %T in %s: "+
					"a key shared by several methods must mean the same quantity, with the same type and range "+
					"(give a method-specific hyperparameter its own key, e.g. \"gr_%s_%s\")", name, h.Key,
					h.Default, h.rangeString(), other, o.Default, o.rangeString(), name,
					strings.TrimPrefix(h.Key, "gr_"))
			}
		}
	}
	methods[name] = method{constructor: constructor, display: cfg.name, params: cfg.params}
	methodNames = append(methodNames, name)
}

func (m method) lookup(key string) *Hyperparameter {
	for i := range m.params {
		if m.params[i].Key == key {
			return &m.params[i]
		}
	}
	return nil
}

// unset is the value RegisterParams gives a key whose default depends on the method (ParamRho): FromContext
// treats it as not set, so the chosen method keeps its own default. Any value set with -set (a string, which
// FromContext parses as the key's type) or with Context.SetParam (of the key's type) replaces it.
const unset = ""

// RegisterParams makes every context key of gradreg known to ctx, so that GoMLX's -set flag
// (commandline.ParseContextSettings) and settings files accept them: ParamMethod ("none"), each registered
// method's hyperparameters and the options every method has. A key keeps a value ctx already has (a
// program's own default). A key registered here does not fix any method's default: a key with the same
// default for every method that reads it (gr_gamma, gr_epsilon, the options) gets that default, with its type
// (so -set parses and checks it); a key whose default depends on the method (gr_rho: 0.05 for SAM, 0.5 for
// ASAM) gets unset, "", so that a run that does not set it keeps the chosen method's default; a value given
// with -set is then a string, which FromContext parses as the key's type. Call it after every method is
// registered (Register runs in init functions, so anywhere in main), before commandline.CreateContextSettingsFlag:
//
//	ctx := context.New()
//	gr.RegisterParams(ctx)
//	settings := commandline.CreateContextSettingsFlag(ctx, "")
//	flag.Parse()
//	paramsSet := must.M1(commandline.ParseContextSettings(ctx, *settings)) // e.g. -set="gr_method=sam;gr_rho=0.1"
//	opt := must.M1(gr.FromContext(ctx, optimizers.FromContext(ctx)))
func RegisterParams(ctx *context.Context) {
	for key, value := range registeredValues() {
		if _, found := ctx.GetParam(key); !found {
			ctx.SetParam(key, value)
		}
	}
}

// registeredValues returns the value RegisterParams gives each key.
func registeredValues() map[string]any {
	out := map[string]any{ParamMethod: "none"}
	for _, o := range options {
		out[o.key] = o.def
	}
	for _, name := range methodNames[1:] {
		for _, h := range methods[name].params {
			if prev, found := out[h.Key]; found && prev != h.Default {
				out[h.Key] = unset
			} else if !found {
				out[h.Key] = h.Default
			}
		}
	}
	return out
}

// FromContext builds the optimizer named by the context hyperparameter ParamMethod around base. It reads
// the hyperparameters the chosen method declares (each keeps the method's default when the context does not
// set it or holds unset; keys of other methods are not read) and the options every method has (ParamEvery,
// ParamWarmUp, ParamZeroWarmUp, ParamGroups, ParamGuardNonFinite). Errors name the key and its valid values.
//
// The returned *Regularized reads ctx again each time a trainer builds a training graph with it, so a
// program that builds its optimizer before a checkpoint loads its parameters into ctx (GoMLX's examples do:
// checkpoints.Build(ctx)...Done() after train.NewTrainer) trains the checkpoint's method with the
// checkpoint's hyperparameters, not the ones ctx held when FromContext ran. Invalid values found then panic
// at graph building, with the same message FromContext returns. With method "none" the optimizer applies the
// base optimizer's steps exactly (it delegates to base); Regularized.Method then returns "none".
func FromContext(ctx *context.Context, base optimizers.Interface) (optimizers.Interface, error) {
	cfg := configFromContext(ctx, base)
	if cfg.err != nil {
		return nil, cfg.err
	}
	return &Regularized{cfg: cfg, ctx: ctx}, nil
}

// configFromContext builds the Config ctx describes; errors are in its err field.
func configFromContext(ctx *context.Context, base optimizers.Interface) *Config {
	nameAny, _ := ctx.GetParam(ParamMethod)
	name, ok := nameAny.(string)
	if nameAny != nil && !ok {
		c := &Config{base: base, name: "none"}
		c.setErr(errors.Errorf("gr.FromContext: %s must be a string, got %T %v", ParamMethod, nameAny, nameAny))
		return c
	}
	if name == "none" || name == "" {
		c := &Config{base: base, name: "none", values: map[string]any{}}
		if base == nil {
			c.setErr(errors.Errorf("gr.FromContext: base optimizer is nil: pass a GoMLX optimizer, e.g. " +
				"optimizers.StochasticGradientDescent()"))
		}
		warnIgnoredKeys(ctx, c)
		return c
	}
	m, found := methods[name]
	if !found {
		c := &Config{base: base, name: "none"}
		c.setErr(errors.Errorf("gr.FromContext: unknown %s %q: valid values are %s",
			ParamMethod, name, strings.Join(methodNames, "|")))
		return c
	}
	c := m.constructor(base)
	c.key = name
	for i := range c.params {
		if value, found := ctx.GetParam(c.params[i].Key); found {
			c.fromContextValue(&c.params[i], value)
		}
	}
	// An option at its default changes nothing (RegisterParams registers every option at its default).
	set := map[string]bool{}
	for _, o := range options {
		if value, found := ctx.GetParam(o.key); found && value != nil && value != unset && value != o.def {
			o.apply(c, value)
			set[o.key] = true
		}
	}
	if set[ParamWarmUp] && set[ParamZeroWarmUp] {
		c.setErr(errors.Errorf("gr.FromContext: %s and %s are both set (%v, %v): set one of them",
			ParamWarmUp, ParamZeroWarmUp, context.GetParamOr(ctx, ParamWarmUp, 0),
			context.GetParamOr(ctx, ParamZeroWarmUp, 0)))
	}
	warnIgnoredKeys(ctx, c)
	return c
}

// warnedKeys holds the messages of warnIgnoredKeys already printed.
var warnedKeys sync.Map // string → struct{}

// warnIgnoredKeys prints, once per process for each key and value, a warning for every hyperparameter key of
// another method that ctx sets while c's method does not read it, e.g. gr_rho with gr_method=forward: the
// method that ignores it and the methods that read it. A key counts as set when its value differs from the
// one RegisterParams gives it and from every method's default for it (a program that registers each key with
// some method's default draws no warning). The options every method has are read by every method (for
// "none", by none: they are reported too).
func warnIgnoredKeys(ctx *context.Context, c *Config) {
	registered := registeredValues()
	for _, key := range slices.Sorted(maps.Keys(registered)) {
		if key == ParamMethod || c.lookup(key) != nil || (findOption(key) != nil && !c.none()) {
			continue
		}
		value, found := ctx.GetParam(key)
		if !found || value == nil || value == unset || value == registered[key] {
			continue
		}
		var readers []string
		isDefault := false
		for _, name := range methodNames[1:] {
			if h := methods[name].lookup(key); h != nil || findOption(key) != nil {
				readers = append(readers, name)
				isDefault = isDefault || (h != nil && h.Default == value)
			}
		}
		if isDefault {
			continue
		}
		msg := fmt.Sprintf("gr: %s = %v is set, but method %q ignores it (it is read by %s)\n",
			key, value, c.methodKey(), strings.Join(readers, ", "))
		if c.none() {
			msg = fmt.Sprintf("gr: %s = %v is set, but method \"none\" (the base optimizer alone) ignores it\n",
				key, value)
		}
		if _, warned := warnedKeys.LoadOrStore(msg, struct{}{}); !warned {
			fmt.Fprint(warnOutput, msg)
		}
	}
}

// fromContextValue sets h from a context value: nil and unset keep the default, anything else is converted to
// h's type (convertValue) and set.
func (c *Config) fromContextValue(h *Hyperparameter, value any) {
	if value == nil || value == unset {
		return
	}
	v, err := convertValue(h, value)
	if err != nil {
		c.setErr(errors.WithMessagef(err, "gr.%s", c.name))
		return
	}
	c.set(h.Key, h.Key, v)
}

// convertValue converts a context value to h's type: a string (a value given with -set for a key registered as
// unset) is parsed; a float64 without fractional part becomes an int for an int hyperparameter (JSON
// decoders give float64); a number becomes a float64 for a float64 one.
func convertValue(h *Hyperparameter, value any) (any, error) {
	wrongType := func() error {
		return errors.Errorf("%s must be a %T, got %T %v", h.label(), h.Default, value, value)
	}
	if s, isString := value.(string); isString {
		var parsed any
		var err error
		switch h.Default.(type) {
		case string:
			return s, nil
		case bool:
			parsed, err = strconv.ParseBool(s)
		case int:
			parsed, err = strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		default:
			parsed, err = strconv.ParseFloat(s, 64)
		}
		if err != nil {
			return nil, errors.Errorf("%s must be a %T, got %q", h.label(), h.Default, s)
		}
		return parsed, nil
	}
	switch h.Default.(type) {
	case bool, string:
		if fmt.Sprintf("%T", value) != fmt.Sprintf("%T", h.Default) {
			return nil, wrongType()
		}
		return value, nil
	case int:
		f, ok := toFloat(value)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, wrongType()
		}
		return int(f), nil
	}
	f, ok := toFloat(value)
	if !ok {
		return nil, wrongType()
	}
	return f, nil
}

// Params returns the effective value of every hyperparameter and option of the optimizer, by context key:
// ParamMethod (the registered name, e.g. "sam"; the Config's name for a method that is not registered), the
// method's hyperparameters, the schedule of each scheduled one under its key + "_schedule" (e.g.
// "gr_rho_schedule": "LinearWarmUp(100)"), and the options every method has (ParamEvery, ParamExclude, ...;
// a Config.Mask shows as "gr_mask": "custom"). It is what to log to know what was trained; with method "none"
// it holds ParamMethod alone.
//
// For an optimizer built by FromContext it reflects the context when Params is called (see FromContext): a
// program that resumes from a checkpoint must log it after the checkpoint loaded its parameters into the
// context (with GoMLX's checkpoints, after checkpoints.Build(ctx)...Done()), not right after FromContext.
func (r *Regularized) Params() map[string]any {
	c := r.current()
	if c.none() {
		return map[string]any{ParamMethod: "none"}
	}
	out := map[string]any{ParamMethod: c.methodKey()}
	for _, h := range c.params {
		out[h.Key] = c.values[h.Key]
		if sc, found := c.schedules[h.Key]; found {
			out[h.Key+"_schedule"] = sc.String()
		}
	}
	for _, o := range options {
		out[o.key] = o.get(c)
	}
	if c.mask != nil {
		out[paramMask] = "custom"
	}
	return out
}

// paramMask is the key under which Regularized.Params shows that a Config.Mask is set ("custom"). It is not a
// context key: a mask is a Go function; from the context, use ParamExclude.
const paramMask = "gr_mask"

// methodKey returns the ParamMethod value of c's method, or its name if it is not registered.
func (c *Config) methodKey() string {
	if c.key != "" {
		return c.key
	}
	for _, name := range methodNames[1:] {
		if methods[name].display == c.name {
			return name
		}
	}
	return c.name
}

// none reports whether c is method "none" (FromContext): the base optimizer alone.
func (c *Config) none() bool { return c.fn == nil }

// ParamDefaults returns every context key FromContext reads for method (a ParamMethod value): ParamMethod
// itself, the method's own hyperparameters with the method's defaults, and the options every method has
// with their defaults. For "none" it is ParamMethod alone.
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

// ParamKeys returns, sorted, every context key that FromContext reads for some registered method or option:
// the keys RegisterParams registers.
func ParamKeys() []string {
	return slices.Sorted(maps.Keys(registeredValues()))
}
