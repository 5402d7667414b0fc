package run

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/ui/commandline"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/regularizers"
)

// Setting is one hyperparameter: a context key with a typed default, and optionally a command-line flag
// that sets it. The context key is the one source of truth: the flag, -set=key=value and a -compare
// entry's settings all write it, in that order (later wins), and the model, the data and the runner read
// it from the context.
type Setting struct {
	Key     string // context key, e.g. "mnist_hidden"
	Flag    string // command-line flag, e.g. "hidden"; "" for none (then only -set and -compare set it)
	Default any    // int, float64, bool or string; nil: the method's default (the gr_* keys)
	Usage   string
}

// Context keys of the runner's own settings (besides the gr_* keys of package gr and flood_method,
// flood_level, softad_sigma of package regularizers).
const (
	ParamLearningRate = "learning_rate" // optimizers.ParamLearningRate: initial learning rate
	ParamOptimizer    = "optimizer"     // optimizers.ParamOptimizer: base optimizer, sgd|momentum|adam
	ParamMomentum     = "momentum"      // heavy-ball momentum of optimizer "momentum"
	ParamWeightDecay  = "weight_decay"  // weight decay added to the gradient (sgd, momentum)
	ParamSchedule     = "lr_schedule"   // constant|cosine (decay to 0 over the run, per step)
	ParamBatch        = "batch_size"    // training batch size
	ParamSteps        = "train_steps"   // training steps; 0: ParamEpochs epochs
	ParamEpochs       = "train_epochs"  // training epochs when ParamSteps is 0
	ParamEvalEvery    = "eval_every"    // test evaluation every this many steps; 0: every epoch
	ParamSaveEvery    = "save_every"    // checkpoint every this many steps; 0: at evaluations
	ParamVal          = "val_fraction"  // fraction of the training set held out for validation; 0: none
)

// runnerSettings are the settings every example has; Example.Defaults overrides their defaults.
func runnerSettings() []Setting {
	return []Setting{
		{ParamLearningRate, "lr", 0.1, "initial learning rate"},
		{ParamOptimizer, "base", "sgd", "base optimizer: sgd|momentum|adam"},
		{ParamMomentum, "momentum", 0.9, "momentum coefficient of -base=momentum"},
		{ParamWeightDecay, "wd", 0.0, "weight decay λ added to the gradient, PyTorch style (-base=sgd|momentum)"},
		{ParamSchedule, "schedule", "constant", "learning-rate schedule: constant|cosine (cosine decays to 0 " +
			"over the run, per step; -base=sgd|momentum)"},
		{ParamBatch, "batch", 64, "batch size"},
		{ParamSteps, "steps", 0, "training steps (0: -epochs epochs)"},
		{ParamEpochs, "epochs", 0, "training epochs, used when -steps is 0"},
		{ParamEvalEvery, "eval_every", 0, "evaluate on the test set every this many steps (0: every epoch)"},
		{ParamSaveEvery, "save_every", 0, "with -checkpoint, save every this many steps (0: at each evaluation)"},
		{ParamVal, "val", 0.0, "fraction in [0, 1) of the training set held out as a validation split, drawn " +
			"per seed, its labels as noisy as the rest; the run reports its accuracy at the end (0: none)"},
		{gr.ParamGamma, "gamma", nil, "γ, weight of the penalty (γ/2)‖∇L‖² (default: the method's, " +
			fmt.Sprint(gr.DefaultGamma) + ")"},
		{gr.ParamEpsilon, "epsilon", nil, "ε, finite-difference step of forward|backward|central (default: " +
			"the method's, " + fmt.Sprint(gr.DefaultEpsilon) + ")"},
		{gr.ParamRho, "rho", nil, "ρ, perturbation radius of the SAM family (default: the method's: " +
			rhoDefaults() + ")"},
		{gr.ParamNormalized, "normalized", nil, "normalized finite-difference step (default: the method's, false)"},
		{regularizers.ParamFloodMethod, "flood_method", "none", "loss wrapper: none|flooding|iflood|softad " +
			"(also -method=flooding|iflood|softad)"},
		{regularizers.ParamFloodLevel, "flood", 0.02, "flood level b of flooding|iflood|softad (alias -flood_level)"},
		{regularizers.ParamSoftADSigma, "", regularizers.DefaultSoftADSigma, "σ of SoftAD"},
	}
}

// flagAliases maps alias flags to the flag they stand for.
var flagAliases = map[string]string{"flood_level": "flood"}

// rhoDefaults lists the ρ default of each method that has one, e.g. "sam 0.05, gnp 0.1, asam 0.5".
func rhoDefaults() string {
	var parts []string
	for _, m := range gr.Methods() {
		d, err := paramDefaults(m)
		if err != nil {
			continue
		}
		if rho, ok := d[gr.ParamRho]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", m, rho))
		}
	}
	return strings.Join(parts, ", ")
}

// paramDefaults is gr.ParamDefaults: every context key gr.FromContext reads for method (gr_method, the
// method's own hyperparameters and the options every method has), with that method's defaults.
func paramDefaults(method string) (map[string]any, error) { return gr.ParamDefaults(method) }

// paramKeys returns every key of gr.ParamKeys with a value of its type (from the ParamDefaults of a method
// that reads it), to register them all so that -set accepts any of them.
func paramKeys() map[string]any {
	keys := map[string]any{}
	for _, m := range gr.Methods() {
		d, err := gr.ParamDefaults(m)
		if err != nil {
			panic(err) // a registered method
		}
		for k, v := range d {
			if _, ok := keys[k]; !ok {
				keys[k] = v
			}
		}
	}
	for _, k := range gr.ParamKeys() {
		if _, ok := keys[k]; !ok {
			panic("run: gr.ParamKeys lists " + k + ", which no method's gr.ParamDefaults gives")
		}
	}
	return keys
}

// settingsFlags is the parsed command line of the settings: the explicit values, in flag order.
type settingsFlags struct {
	settings []Setting
	values   map[string]string // flag name → value given on the command line
	order    []string          // flags in the order given
}

// settingValue is the flag.Value of a Setting: it validates the text against the type of the default.
type settingValue struct {
	s     *Setting
	flags *settingsFlags
	name  string
}

func (v *settingValue) String() string {
	if v == nil || v.s == nil {
		return ""
	}
	if val, ok := v.flags.values[v.s.Flag]; ok {
		return val
	}
	if v.s.Default == nil {
		return ""
	}
	return fmt.Sprint(v.s.Default)
}

func (v *settingValue) Set(text string) error {
	if _, err := parseAs(v.s.like(), text); err != nil {
		return err
	}
	if _, ok := v.flags.values[v.s.Flag]; !ok {
		v.flags.order = append(v.flags.order, v.s.Flag)
	}
	v.flags.values[v.s.Flag] = text
	return nil
}

// IsBoolFlag lets a bool setting be given as -flag alone.
func (v *settingValue) IsBoolFlag() bool {
	_, ok := v.s.Default.(bool)
	return ok || v.s.Key == gr.ParamNormalized
}

// like returns a value of the setting's type: its default, or for the gr_* keys (no default) the type
// the methods give it.
func (s *Setting) like() any {
	if s.Default != nil {
		return s.Default
	}
	return paramKeys()[s.Key]
}

// parseAs parses text as a value of the type of like (a string when like is nil and text is not a number).
func parseAs(like any, text string) (any, error) {
	switch like.(type) {
	case int:
		return strconv.Atoi(strings.ReplaceAll(text, "_", ""))
	case float64:
		return strconv.ParseFloat(text, 64)
	case bool:
		return strconv.ParseBool(text)
	case string:
		return text, nil
	case nil:
		var v any
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, errors.Errorf("invalid value %q", text)
		}
		return v, nil
	}
	return nil, errors.Errorf("setting of type %T cannot be parsed", like)
}

// register adds a flag for each setting that has one.
func (sf *settingsFlags) register(fs *flag.FlagSet) {
	for i := range sf.settings {
		s := &sf.settings[i]
		if s.Flag == "" {
			continue
		}
		fs.Var(&settingValue{s: s, flags: sf, name: s.Flag}, s.Flag, s.Usage)
		for alias, target := range flagAliases {
			if target == s.Flag {
				fs.Var(&settingValue{s: s, flags: sf, name: alias}, alias, "alias of -"+s.Flag)
			}
		}
	}
}

// explicitKeys returns the context keys set by explicit flags, with their values.
func (sf *settingsFlags) explicitKeys() (map[string]any, []string, error) {
	byFlag := map[string]*Setting{}
	for i := range sf.settings {
		byFlag[sf.settings[i].Flag] = &sf.settings[i]
	}
	values := map[string]any{}
	var keys []string
	for _, name := range sf.order {
		s := byFlag[name]
		v, err := parseAs(s.like(), sf.values[name])
		if err != nil {
			return nil, nil, errors.WithMessagef(err, "flag -%s", name)
		}
		values[s.Key] = v
		keys = append(keys, s.Key)
	}
	return values, keys, nil
}

// methodKeys are the context keys each method entry name maps to: gr_method and flood_method.
func methodParams(method string) (grMethod, flood string, err error) {
	switch {
	case method == "sgd" || method == "none":
		return "none", "", nil
	case slices.Contains(floodMethods, method):
		return "none", method, nil
	case slices.Contains(gr.Methods(), method):
		return method, "", nil
	}
	return "", "", errors.Errorf("unknown method %q: valid values are %s", method, strings.Join(MethodNames(), "|"))
}

// floodMethods are the method names that wrap the loss with package regularizers (base optimizer alone).
var floodMethods = []string{"flooding", "iflood", "softad"}

// MethodNames returns the values accepted by -method and in -compare: sgd (the base optimizer alone),
// every method registered in package gr, and the flooding regularizers.
func MethodNames() []string {
	names := []string{"sgd"}
	for _, m := range gr.Methods() {
		if m != "none" {
			names = append(names, m)
		}
	}
	return append(names, floodMethods...)
}

// newContext builds the context of one run of entry e with seed: the settings' defaults, every gr_* key
// (the method's own defaults for the keys it reads), the explicit flags, -set, then the entry's settings.
// The method is the one the context ends up with: -set=gr_method=... (or -flood_method) may choose it when
// -method was not given; when it was (or with -compare), a -set or entry setting that picks another one is
// an error. A key given twice in -set or in an entry's settings is an error. It returns an error when a gr_* key that was
// given explicitly is not read by the method.
func (r *runner) newContext(e Entry, seed int64) (*context.Context, error) {
	grMethod, flood, err := methodParams(e.Method)
	if err != nil {
		return nil, err
	}
	ctx, err := r.buildContext(e, seed, grMethod, flood)
	if err != nil {
		return nil, err
	}
	eff := context.GetParamOr(ctx, gr.ParamMethod, grMethod)
	if r.methodGiven {
		if eff != grMethod {
			return nil, errors.Errorf("%s=%s conflicts with method %s (which runs %s=%s): give the method once",
				gr.ParamMethod, eff, e.Method, gr.ParamMethod, grMethod)
		}
		if flood != "" && r.floodMethodSet(e) != "" && r.floodMethodSet(e) != flood {
			return nil, errors.Errorf("%s=%s conflicts with method %s: give the loss wrapper once",
				r.settingName(regularizers.ParamFloodMethod), r.floodMethodSet(e), e.Method)
		}
	}
	if eff != grMethod { // -set chose the gr method: its own defaults, not those of -method's.
		if ctx, err = r.buildContext(e, seed, eff, flood); err != nil {
			return nil, err
		}
	}
	return ctx, nil
}

// floodMethodSet returns the loss wrapper that -flood_method, -set or e's settings name explicitly ("" for
// none; the last of them).
func (r *runner) floodMethodSet(e Entry) string {
	name := r.flags.values["flood_method"]
	for _, list := range []string{r.opts.Set, e.Settings} {
		for _, item := range strings.Split(list, ";") {
			if k, v, ok := strings.Cut(item, "="); ok && strings.TrimSpace(k) == regularizers.ParamFloodMethod {
				name = strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	return name
}

// buildContext is newContext for the gr method grMethod and the loss wrapper flood ("" for none) of e.
func (r *runner) buildContext(e Entry, seed int64, grMethod, flood string) (*context.Context, error) {
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(seed); err != nil {
		return nil, err
	}
	for _, s := range r.flags.settings {
		if s.Default != nil {
			ctx.SetParam(s.Key, s.Default)
		}
	}
	ctx.SetParams(paramKeys())
	own, err := paramDefaults(grMethod)
	if err != nil {
		return nil, err
	}
	ctx.SetParams(own)
	ctx.SetParam(gr.ParamMethod, grMethod)
	values, shared, err := r.flags.explicitKeys()
	if err != nil {
		return nil, err
	}
	ctx.SetParams(values)
	if r.opts.Set != "" {
		if _, err := settingKeys(r.opts.Set); err != nil {
			return nil, errors.WithMessage(err, "-set")
		}
		keys, err := commandline.ParseContextSettings(ctx, r.opts.Set)
		if err != nil {
			return nil, errors.WithMessage(err, "parsing -set")
		}
		shared = append(shared, keys...)
	}
	var entryKeys []string
	if e.Settings != "" {
		if entryKeys, err = commandline.ParseContextSettings(ctx, e.Settings); err != nil {
			return nil, errors.WithMessagef(err, "parsing the settings of -compare entry %q", e.String())
		}
	}
	if flood != "" {
		ctx.SetParam(regularizers.ParamFloodMethod, flood)
	}
	// A gr_* key given explicitly must be read by the method (by one of the compared methods for the flags
	// and -set, which are shared): nothing is silently ignored.
	for i, key := range append(shared, entryKeys...) {
		if _, known := paramKeys()[key]; !known || key == gr.ParamMethod {
			continue
		}
		if _, reads := own[key]; reads || (i < len(shared) && r.readByAnother(key)) {
			continue
		}
		delete(own, gr.ParamMethod)
		has := strings.Join(slices.Sorted(maps.Keys(own)), ", ")
		if has == "" {
			has = "none"
		}
		return nil, errors.Errorf("%s is not a hyperparameter of method %s (its gr_* keys: %s): remove it",
			key, e.Method, has)
	}
	// Likewise the loss wrappers' keys: -flood is read by flooding|iflood|softad only, softad_sigma by softad.
	floodMethod := context.GetParamOr(ctx, regularizers.ParamFloodMethod, "none")
	for i, key := range append(slices.Clip(shared), entryKeys...) {
		var reads func(flood string) bool
		switch key {
		case regularizers.ParamFloodLevel:
			reads = func(flood string) bool { return flood != "none" && flood != "" }
		case regularizers.ParamSoftADSigma:
			reads = func(flood string) bool { return flood == "softad" }
		default:
			continue
		}
		if reads(floodMethod) || (i < len(shared) && slices.ContainsFunc(r.entries, func(o Entry) bool {
			_, f, _ := methodParams(o.Method)
			return reads(f)
		})) {
			continue
		}
		return nil, errors.Errorf("%s is read by the loss wrappers (-method=flooding|iflood|softad or "+
			"-flood_method), not by method %s: remove it", r.settingName(key), e.Method)
	}
	return ctx, nil
}

// readByAnother reports whether another method of a comparison reads the gr_* key (a shared flag like
// -rho applies to the methods that have it).
func (r *runner) readByAnother(key string) bool {
	for _, e := range r.entries {
		m, _, _ := methodParams(e.Method)
		if d, err := paramDefaults(m); err == nil {
			if _, ok := d[key]; ok {
				return true
			}
		}
	}
	return false
}
