package run

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
	"github.com/gradreg/gradreg/regularizers"
)

// Exit codes of Exec (and of an example's process).
const (
	ExitOK    = 0
	ExitError = 1 // training or writing failed, or a run's result is not the method's (see Run)
	ExitUsage = 2 // a bad command line, a bad input named by the message, or a checkpoint of another run
)

// usageError is an error of the user's input: Exec exits with ExitUsage.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// usagef returns a usage error.
func usagef(format string, args ...any) error { return usageError{errors.Errorf(format, args...)} }

// asUsage marks err (if not nil) as a usage error.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// IsUsage reports whether err is a usage error: a bad command line or input (exit code ExitUsage).
func IsUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// Exec parses args, runs, writes an error to stderr as "<name>: <message>" (no stack trace; a panic is
// reported as an internal error, with its stack only when $GRADREG_TRACE is set) and returns the exit code:
// ExitOK, ExitUsage for a usage error (flags, inputs, a checkpoint of another run), ExitError otherwise.
func Exec(ex *Example, fs *flag.FlagSet, args []string, stderr io.Writer) (code int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "%s: internal error: %v\n", ex.Name, p)
			if os.Getenv("GRADREG_TRACE") != "" {
				fmt.Fprintf(stderr, "%s", debug.Stack())
			}
			code = ExitError
		}
	}()
	fs.SetOutput(stderr)
	r, err := Parse(ex, fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", ex.Name, err)
		return ExitUsage
	}
	r.stderr = stderr
	if _, err = r.Run(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", ex.Name, err)
		if IsUsage(err) {
			return ExitUsage
		}
		return ExitError
	}
	return ExitOK
}

// checkSettings validates the runner's own settings of a run's context, before any work.
func checkSettings(ctx *context.Context) error {
	for _, c := range []struct {
		key, flag string
		min       int
	}{{ParamBatch, "batch", 1}, {ParamSteps, "steps", 0}, {ParamEpochs, "epochs", 0},
		{ParamEvalEvery, "eval_every", 0}, {ParamSaveEvery, "save_every", 0}} {
		if v := context.GetParamOr(ctx, c.key, 0); v < c.min {
			return errors.Errorf("-%s (%s) must be ≥ %d, got %d", c.flag, c.key, c.min, v)
		}
	}
	if context.GetParamOr(ctx, ParamSteps, 0) == 0 && context.GetParamOr(ctx, ParamEpochs, 0) == 0 {
		return errors.Errorf("give -steps > 0 or -epochs > 0 (both are 0)")
	}
	for _, c := range []struct{ key, flag string }{{ParamLearningRate, "lr"}, {ParamWeightDecay, "wd"},
		{ParamMomentum, "momentum"}, {regularizers.ParamFloodLevel, "flood"}} {
		if v := context.GetParamOr(ctx, c.key, 0.0); math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.Errorf("-%s (%s) must be a finite number, got %g", c.flag, c.key, v)
		}
	}
	_, err := newOptimizer(ctx, 1)
	return err
}

// runParams returns the context's hyperparameters as text (their JSON, else fmt's): what a checkpoint and a
// comparison's JSON record of a run, to check a resume and a merge.
func runParams(ctx *context.Context) map[string]string {
	params := map[string]string{}
	ctx.EnumerateParams(func(scope, key string, value any) {
		if scope != context.RootScope {
			key = scope + "/" + key
		}
		params[key] = paramText(value)
	})
	return params
}

func paramText(v any) string {
	if data, err := json.Marshal(v); err == nil {
		return string(data)
	}
	return fmt.Sprint(v)
}

// checkpointRecord is what the runner saves with each checkpoint (grcheckpoint's record): enough to check
// that a resume continues the same run, and the run's curve so far (saved with the variables, so that
// both come from the same step).
type checkpointRecord struct {
	Example   string            `json:"example"`
	Spec      string            `json:"spec"` // Entry.String
	Seed      int64             `json:"seed"`
	Steps     int               `json:"steps"` // the run's total steps
	Step      int               `json:"step"`  // the checkpoint's step
	Params    map[string]string `json:"params"`
	FirstLoss jsonFloat         `json:"first_loss"` // training loss of the run's first step
	Curve     []Point           `json:"curve"`
}

// resumeFree are the settings a resume may change: the length of the run (checked against the
// checkpoint's step) and how often it evaluates and saves.
var resumeFree = []string{ParamSteps, ParamEpochs, ParamEvalEvery, ParamSaveEvery}

// checkResume checks that the checkpoint's run is the run the command line asks for: same example,
// method and settings, seed and hyperparameters (but those of resumeFree), and a length that reaches the
// checkpoint's step; with a cosine schedule, the same length (the schedule depends on it). now are the
// run's settings as the command line gives them (runParams before the data are made).
func (r *runner) checkResume(rec *checkpointRecord, e Entry, seed int64, ctx *context.Context, now map[string]string,
	total int) error {
	dir := r.opts.Checkpoint
	if rec.Example != r.ex.Name {
		return usagef("-checkpoint %q holds a run of example %q, not %q: give another folder", dir, rec.Example,
			r.ex.Name)
	}
	if rec.Spec != e.String() {
		return usagef("-checkpoint %q holds a run of method %q, this run is -method=%s: give the same method "+
			"to resume it, or another folder for a new run", dir, rec.Spec, e.String())
	}
	if rec.Seed != seed {
		return usagef("-checkpoint %q holds a run with -seed=%d, this run has -seed=%d: give the same seed to "+
			"resume it, or another folder for a new run", dir, rec.Seed, seed)
	}
	var diffs []string
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range now {
			if !yield(k) {
				return
			}
		}
		for k := range rec.Params {
			if _, ok := now[k]; !ok && !yield(k) {
				return
			}
		}
	}) {
		if slices.Contains(resumeFree, key) || now[key] == rec.Params[key] {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s %s in the checkpoint, %s now", r.settingName(key),
			orNone(rec.Params[key]), orNone(now[key])))
	}
	if len(diffs) > 0 {
		return usagef("-checkpoint %q holds a run with other settings: %s: give the same settings to resume "+
			"it, or another folder for a new run", dir, strings.Join(diffs, "; "))
	}
	if total < rec.Step {
		return usagef("this run has %d steps (-steps/-epochs), fewer than the %d of the checkpoint in %q: give "+
			"-steps ≥ %d, or another folder", total, rec.Step, dir, rec.Step)
	}
	if total != rec.Steps && context.GetParamOr(ctx, ParamSchedule, "constant") == "cosine" {
		return usagef("-schedule=cosine sets the learning rate from the run's length: the run in %q has %d "+
			"steps, this one %d: give -steps=%d to resume it, or another folder", dir, rec.Steps, total, rec.Steps)
	}
	return nil
}

// settingName is a context key with its flag, e.g. "gr_gamma (-gamma)".
func (r *runner) settingName(key string) string {
	for _, s := range r.flags.settings {
		if s.Key == key && s.Flag != "" {
			return fmt.Sprintf("%s (-%s)", key, s.Flag)
		}
	}
	return key
}

func orNone(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
}

// warning describes what makes a run's result not the method's ("" when nothing does): steps the
// non-finite guard ran as base steps or skipped, a diverged loss.
func (res *Result) warning() string {
	var w []string
	if res.Fallbacks > 0 || res.Skipped > 0 {
		w = append(w, fmt.Sprintf("%d of %d steps fell back to the base step and %d were skipped (non-finite "+
			"guard)", res.Fallbacks, res.Steps, res.Skipped))
	}
	if res.Diverged {
		w = append(w, fmt.Sprintf("diverged (final train loss %.4g, first step's %.4g)", res.TrainLoss, res.firstLoss))
	}
	return strings.Join(w, "; ")
}

// notTheMethod returns an error naming the runs whose result is mostly not the method's: more than half
// of the steps fell back or were skipped, or the loss diverged (the table marks them as well).
func notTheMethod(rep *Report) error {
	var bad []string
	for _, rs := range rep.Results {
		for _, res := range rs {
			if res.Diverged || 2*(res.Fallbacks+res.Skipped) > res.Steps {
				bad = append(bad, fmt.Sprintf("%s, seed %d: %s", res.Entry, res.Seed, res.warning()))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return errors.Errorf("%s: the result is not the method's; lower -gamma, -epsilon, -rho or -lr",
		strings.Join(bad, "; "))
}

// methodKey reports whether a context key is a method's own hyperparameter, which may differ between the
// entries of a comparison: the gr_* keys of package gr and the loss wrappers' keys of package regularizers.
func methodKey(key string) bool {
	return strings.HasPrefix(key, "gr_") || key == regularizers.ParamFloodMethod ||
		key == regularizers.ParamFloodLevel || key == regularizers.ParamSoftADSigma
}

// entryKeys returns the keys an entry's own settings set (e.g. mnist_hidden of "db:mnist_hidden=128").
func entryKeys(spec string) map[string]bool {
	keys := map[string]bool{}
	_, settings, _ := strings.Cut(spec, ":")
	for _, kv := range strings.Split(settings, ";") {
		if k, _, ok := strings.Cut(kv, "="); ok {
			keys[strings.TrimSpace(k)] = true
		}
	}
	return keys
}

// checkComparable checks that merged runs are comparable: the runs of one entry have the same settings
// (all of them but the seed); the entries differ only in their methods' own keys (methodKey) and in the
// keys their -compare settings set; and every entry has the same seeds.
func checkComparable(rep *Report) error {
	ref := rep.Results[0][0]
	for i, rs := range rep.Results {
		for _, res := range rs {
			other := rs[0]
			if diff := settingsDiff(other.Settings, res.Settings, func(string) bool { return false }); diff != "" {
				return usagef("-merge: %s, seed %d (%s) and seed %d (%s) have different settings: %s", res.Spec,
					other.Seed, other.file, res.Seed, res.file, diff)
			}
			own := entryKeys(res.Spec)
			for k := range entryKeys(ref.Spec) {
				own[k] = true
			}
			if diff := settingsDiff(ref.Settings, res.Settings, func(k string) bool { return methodKey(k) || own[k] }); diff != "" {
				return usagef("-merge: %s (%s) and %s (%s) ran with different settings: %s", ref.Spec, ref.file,
					res.Spec, res.file, diff)
			}
		}
		seeds := func(rs []*Result) string {
			var s []string
			for _, r := range rs {
				s = append(s, fmt.Sprint(r.Seed))
			}
			return strings.Join(s, ",")
		}
		if a, b := seeds(rep.Results[0]), seeds(rs); a != b {
			return usagef("-merge: %s has seeds %s, %s has seeds %s: merge the same seeds of every method",
				rep.Entries[0], a, rep.Entries[i], b)
		}
	}
	return nil
}

// settingsDiff describes the settings that differ between a and b ("" when none), but those of skip.
func settingsDiff(a, b map[string]string, skip func(string) bool) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diffs []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}) {
		if !skip(k) && a[k] != b[k] {
			diffs = append(diffs, fmt.Sprintf("%s %s vs %s", k, orNone(a[k]), orNone(b[k])))
		}
	}
	return strings.Join(diffs, ", ")
}

// checkMergeOutputs refuses a -merge whose outputs (-out) would overwrite one of its inputs.
func (r *runner) checkMergeOutputs(files []string) error {
	base := filepath.Join(r.opts.Out, r.ex.Name+"_compare")
	for _, f := range files {
		in, err := os.Stat(f)
		if err != nil {
			return asUsage(errors.WithMessage(err, "-merge"))
		}
		for _, out := range []string{base + ".md", base + ".json", base + "_accuracy.png", base + "_metrics.png"} {
			if o, err := os.Stat(out); err == nil && os.SameFile(in, o) {
				return usagef("-merge: the merged table would overwrite its input %s: give another -out", f)
			}
		}
	}
	return asUsage(errors.WithMessage(grcheckpoint.ProbeDir(r.opts.Out), "-out"))
}

// checkFlagUse refuses flags that would have no effect: with -merge (which trains nothing) any flag but
// -out, -compare and -quiet; -steps with -epochs; -save_every without -checkpoint; -plot with a comparison.
func (r *runner) checkFlagUse() error {
	if r.explicit["merge"] {
		for _, name := range slices.Sorted(maps.Keys(r.explicit)) {
			if !slices.Contains([]string{"merge", "out", "compare", "quiet"}, name) {
				return errors.Errorf("-merge trains nothing: -%s has no effect with it; remove it", name)
			}
		}
		return nil
	}
	if v := r.flags.values; r.explicit["steps"] && r.explicit["epochs"] && v["steps"] != "0" && v["epochs"] != "0" {
		return errors.Errorf("-steps=%s and -epochs=%s both given: -steps would win; give one of them", v["steps"],
			v["epochs"])
	}
	if r.explicit["save_every"] && r.opts.Checkpoint == "" {
		return errors.Errorf("-save_every applies with -checkpoint only: give -checkpoint=DIR or remove it")
	}
	compare := r.explicit["compare"] || (!r.explicit["method"] && r.opts.Compare != "")
	if r.explicit["plot"] && r.opts.Plot != "" && (compare || r.explicit["seeds"] && r.opts.Seeds > 1) {
		return errors.Errorf("-plot is the PNG of a single run; a comparison writes its PNGs to -out: remove -plot")
	}
	return nil
}
