// Package run is the training runner shared by the examples: an example supplies its model, its loss, its
// data and its own hyperparameters (an Example), and the runner does the rest:
//
//   - flags → context hyperparameters, one source of truth per setting (Setting): each flag writes a context
//     key, -set=key=value writes any key, and the model, the data and the runner read them from the context;
//     the gr_* keys get the chosen method's own defaults (ASAM's ρ = 0.5, GNP's ρ = 0.1, ...) unless a flag,
//     -set or a -compare entry sets them, and a gr_* key the method does not read is an error;
//   - the backend (-backend, else $GOMLX_BACKEND, else an installed XLA plugin, else the pure-Go one);
//   - the base optimizer (-base=sgd|momentum|adam, -momentum, -wd, -schedule=constant|cosine, -lr) wrapped
//     by gr.FromContext, the loss wrapped by regularizers.FromContext;
//   - gr.NewTrainer, gr.EveryDataset (so that Every(k) saves its cost), train.Loop with a progress bar on a
//     terminal (one line per evaluation in a log), periodic test evaluation, checkpoint/resume (-checkpoint,
//     the folder locked by grcheckpoint), PNG curves (accuracy, loss and the GR metrics ‖g₁‖ and g₁ᵀHg₁ of
//     gr.Metrics) and a JSON of the curves;
//   - comparisons (-compare=sgd,forward,forward:gr_every=5 -seeds=N): per method mean ± std of the test
//     accuracy, the paired difference to the first method with a 95 % Student-t confidence interval (one
//     seed: neither), a Markdown and a JSON table with a command that runs it again, a PNG of test accuracy
//     with error bars and a PNG of the GR metrics, rewritten after every run (seed-major) and marked partial
//     until the last, so an interrupted comparison keeps what it has and says what is missing; -merge
//     combines the JSONs of comparisons run as separate processes (e.g. one per seed) into one table, and
//     fails when one of them was partial or a run is not its method's.
//
// Rows are labelled from the configuration the runs have (the context gr.FromContext and
// regularizers.FromContext read: gr method, loss wrapper, base optimizer, the entry's own settings), never
// from the flag that asked for it. An empty item of a list (-compare, -merge, -set, an entry's settings), a
// key given twice in one list, a -set or entry setting that contradicts the method given, and two entries
// that run the same configuration are usage errors.
//
// An example's main is
//
//	func main() { run.Main(&run.Example{Name: "mnist", Model: modelFn, Loss: lossFn, Data: data, ...}) }
//
// Step times are the mean over all training steps but the first two (which compile the graphs), without
// the evaluations and checkpoints: with Every(k) the mean is what a run costs, where the median would land
// on a cheap step. Next to the wall clock the runner reports the process CPU time per step (unix), which
// other processes on a shared machine disturb less.
package run

import (
	stderrors "errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/sgdm"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
	_ "github.com/gradreg/gradreg/optimizers/grcontrib" // GSAM, LookSAM, FriendlySAM: -method values
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// Example is what an example gives the runner.
type Example struct {
	// Name names the command: error prefix, default output folder examples/<Name>/out, file names.
	Name string

	// Settings are the example's own hyperparameters (context keys, e.g. "mnist_hidden", with their flags).
	Settings []Setting

	// Defaults overrides the defaults of the runner's settings, by context key (e.g. ParamBatch: 128).
	Defaults map[string]any

	// DefaultMethod is the -method default ("sgd" if empty). DefaultCompare, when not empty, is the -compare
	// default: a run without -method compares these.
	DefaultMethod, DefaultCompare string

	// DefaultSeed is the -seed default (1 if 0); DefaultSeeds the -seeds default (1 if 0).
	DefaultSeed  int64
	DefaultSeeds int

	// Model is the model function (logits); Loss is the loss, per example (shape [batch]) or a scalar
	// (flooding's iflood and softad need it per example).
	Model train.ModelFn
	Loss  train.LossFn

	// Data returns the datasets of a run; ctx holds the run's resolved hyperparameters and seed its seed.
	Data func(backend backends.Backend, ctx *context.Context, seed int64) (*Data, error)

	// NewBackend, if not nil, creates the backend instead of grbackend.New (after -backend has set
	// $GOMLX_BACKEND). It is called once.
	NewBackend func() (backends.Backend, error)

	// ExplainError, if not nil, may add advice to a training error.
	ExplainError func(err error) error
}

// Data are the datasets of one run.
type Data struct {
	// Train yields training batches forever. If it implements Seeker, a resumed run seeks it to its step
	// (so it sees the batches an uninterrupted run would).
	Train train.Dataset

	// Test is the test set, finite; it is reset before each evaluation.
	Test train.Dataset

	// TrainEval, if not nil, is the training set once (finite), for the final train loss and accuracy.
	TrainEval train.Dataset

	// Val, if not nil, is the validation split held out from the training set (-val), once (finite): its
	// accuracy at the end is Result.ValAccuracy. An example that does not support -val leaves it nil, and
	// -val > 0 is then an error.
	Val train.Dataset

	// StepsPerEpoch converts -epochs to steps and is the default evaluation period.
	StepsPerEpoch int

	// Description is printed before training (e.g. "MNIST, 2000 training examples, 40% label noise").
	Description string
}

// Seeker is a training dataset that can restart at the batch of any step.
type Seeker interface{ Seek(step int) }

// Options are the runner's flags that are not hyperparameters.
type Options struct {
	Method, Compare, Set, Backend, Gradients, Checkpoint, Out, Plot, Merge string
	Seeds                                                                  int
	Seed                                                                   int64
	Quiet                                                                  bool
}

// Runner is an example's parsed command line.
type Runner struct{ *runner }

type runner struct {
	ex       *Example
	opts     Options
	flags    *settingsFlags
	explicit map[string]bool // flags given on the command line
	entries  []Entry
	single   bool // one method, one seed: no comparison table
	// methodGiven: the method is given (-method or -compare): -set may not choose another one.
	methodGiven bool
	backend     backends.Backend
	stderr      io.Writer // warnings (os.Stderr; Exec's writer)
	args        []string  // the command line's arguments (for the records' command)
	// mergeFiles are -merge's files (nil without -merge).
	mergeFiles []string
}

// Main parses the command line and runs (Exec); it exits with Exec's code: 0, ExitUsage (2) for a usage
// error, ExitError (1) for any other.
func Main(ex *Example) { os.Exit(Exec(ex, flag.CommandLine, os.Args[1:], os.Stderr)) }

// Parse registers the runner's flags and the example's on fs and parses args.
func Parse(ex *Example, fs *flag.FlagSet, args []string) (*Runner, error) {
	r := &runner{ex: ex, explicit: map[string]bool{}, stderr: os.Stderr, args: args}
	settings := runnerSettings()
	for i, s := range settings {
		if d, ok := ex.Defaults[s.Key]; ok {
			settings[i].Default = d
		}
	}
	r.flags = &settingsFlags{settings: append(settings, ex.Settings...), values: map[string]string{}}
	defMethod := ex.DefaultMethod
	if defMethod == "" {
		defMethod = "sgd"
	}
	o := &r.opts
	fs.StringVar(&o.Method, "method", defMethod, "method of a single run: "+strings.Join(MethodNames(), "|")+
		" (sgd: the base optimizer alone; flooding|iflood|softad wrap the loss with -flood as b)")
	fs.StringVar(&o.Compare, "compare", ex.DefaultCompare, "comma-separated methods to compare; an entry can "+
		"carry its own settings after a colon, separated by ';' as in -set: forward:gr_every=5 (the default "+
		"when -method is not given)")
	fs.IntVar(&o.Seeds, "seeds", max(ex.DefaultSeeds, 1), "seeds per method (seed, seed+1, ...): each seed fixes the "+
		"initialization, the data (subset, noise) and the batch order, identical across methods")
	defSeed := ex.DefaultSeed
	if defSeed == 0 {
		defSeed = 1
	}
	fs.Int64Var(&o.Seed, "seed", defSeed, "random seed (the first of -seeds)")
	fs.StringVar(&o.Set, "set", "", "GoMLX context settings, e.g. -set=\"gr_every=5;gr_warmup=100\", "+
		"applied after the flags (every gr_* key of package gr is accepted)")
	fs.StringVar(&o.Backend, "backend", "", "GoMLX backend (go, xla:cpu, xla:cuda, ...); default: "+
		"$GOMLX_BACKEND, else an installed XLA plugin, else go")
	fs.StringVar(&o.Gradients, "gradients", "", "gradients of matrix products: grgrad (optimizers/grgrad: "+
		"transposed matrix products, 6–8× less CPU per MLP step) or gomlx (GoMLX's own, a [batch, in, out] product and "+
		"sum; the same gradient up to float rounding); default: $"+grbackend.GradientsEnvVar+", else grgrad")
	fs.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint folder of a single run: saved every "+
		"-save_every steps and at the end, resumed from when it holds one")
	fs.StringVar(&o.Out, "out", filepath.Join("examples", ex.Name, "out"), "folder for the PNGs, JSON and "+
		"Markdown")
	fs.StringVar(&o.Plot, "plot", ex.Name+"_curves.png", "PNG of a single run's curves, a name ending in .png "+
		"(\"\": none); relative to -checkpoint when given, else to -out")
	fs.StringVar(&o.Merge, "merge", "", "comma-separated JSON files written by comparisons (e.g. one process per "+
		"seed: -seed=2 -seeds=1): train nothing, write their combined table and PNGs to -out; exit 1 if a file "+
		"is partial or a run diverged")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress bar: one line per evaluation instead (also without "+
		"-quiet when stdout is not a terminal)")
	r.flags.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, errors.Errorf("unexpected arguments %q: flags only", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { r.explicit[f.Name] = true })
	if err := r.checkFlagUse(); err != nil {
		return nil, err
	}
	if o.Seeds <= 0 {
		return nil, errors.Errorf("-seeds must be a positive integer, got %d", o.Seeds)
	}
	if r.explicit["merge"] {
		files, err := splitList("merge", o.Merge)
		if err != nil {
			return nil, err
		}
		r.mergeFiles = files
	}
	compare := r.explicit["compare"] || (!r.explicit["method"] && o.Compare != "")
	r.methodGiven = compare || r.explicit["method"]
	if compare {
		entries, err := ParseCompare(o.Compare)
		if err != nil {
			return nil, err
		}
		r.entries = entries
	} else {
		if _, _, err := methodParams(o.Method); err != nil {
			return nil, errors.WithMessage(err, "-method")
		}
		r.entries = []Entry{{Method: o.Method}}
		if !r.explicit["seeds"] {
			o.Seeds = 1 // -method alone is one run; -seeds=N repeats it.
		}
		r.single = o.Seeds == 1
	}
	if o.Checkpoint != "" && !r.single {
		return nil, errors.Errorf("-checkpoint applies to a single run: give -method (no -compare) and -seeds=1")
	}
	// Build every entry's context once, so that bad settings fail before any training.
	params := make([]map[string]string, len(r.entries))
	for i, e := range r.entries {
		ctx, err := r.newContext(e, o.Seed)
		if err != nil {
			return nil, err
		}
		if err := checkSettings(ctx); err != nil {
			if len(r.entries) > 1 {
				err = errors.WithMessagef(err, "-compare entry %q", e.String())
			}
			return nil, err
		}
		keys, _ := settingKeys(e.Settings) // ParseCompare checked them.
		params[i] = runParams(ctx)
		r.entries[i].label = labelOf(params[i], keys)
		for k, o := range r.entries[:i] {
			if maps.Equal(params[k], params[i]) || o.label == r.entries[i].label {
				return nil, errors.Errorf("-compare entries %q and %q both run %s with the same settings: remove one",
					o.String(), e.String(), o.label)
			}
		}
	}
	return &Runner{r}, nil
}

// Context returns the context of the first entry's run with the first seed, as the flags set it (for
// tests and tools).
func (r *Runner) Context() (*context.Context, error) { return r.newContext(r.entries[0], r.opts.Seed) }

// Entries returns the methods (with their settings) that Run trains.
func (r *Runner) Entries() []Entry { return r.entries }

// Run trains what the command line says: one run, or a comparison over methods and seeds.
func (r *Runner) Run() (*Report, error) {
	if r.mergeFiles != nil {
		return r.merge(r.mergeFiles)
	}
	// Every output folder is created and written to before any training: a bad -out, -checkpoint or -plot
	// costs nothing.
	if err := r.probeOutputs(); err != nil {
		return nil, err
	}
	if err := r.initBackend(); err != nil {
		return nil, err
	}
	if r.single {
		res, err := r.trainOne(r.entries[0], r.opts.Seed)
		if err != nil {
			return nil, err
		}
		fmt.Printf("%s: step %d: test accuracy %.4f, test loss %.4f%s, train loss %.4f, train accuracy %.4f; "+
			"%s, CPU %s; %d parameters\n", r.entries[0].Label(), res.Steps, res.TestAccuracy, res.TestLoss,
			res.valText(), res.TrainLoss, res.TrainAccuracy, res.stepText(), res.cpuText(), res.Params)
		rep := &Report{Results: [][]*Result{{res}}, Entries: r.entries}
		var writeErr error
		if path := r.plotPath(); path != "" {
			if writeErr = plotRun(path, r.ex.Name+" "+r.entries[0].Label(), res); writeErr == nil {
				fmt.Println("wrote", path)
			}
		}
		return rep, stderrors.Join(res.saveErr, writeErr, notTheMethod(rep))
	}
	return r.compare()
}

// plotPath is the path of a single run's PNG ("" for none): -plot, relative to -checkpoint when given,
// else to -out.
func (r *runner) plotPath() string {
	path := r.opts.Plot
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	dir := r.opts.Out
	if r.opts.Checkpoint != "" {
		dir = r.opts.Checkpoint
	}
	return filepath.Join(dir, path)
}

// probeOutputs creates the folders the run writes to and checks that files can be written there.
func (r *runner) probeOutputs() error {
	type output struct{ flag, dir string }
	var outs []output
	if r.single {
		if p := r.plotPath(); p != "" {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return usagef("-plot %q is a folder: give a file name", r.opts.Plot)
			}
			if !strings.EqualFold(filepath.Ext(p), ".png") {
				return usagef("-plot %q: the plot is a PNG: give a name ending in .png", r.opts.Plot)
			}
			flag := "-plot (relative to -out)"
			if filepath.IsAbs(r.opts.Plot) {
				flag = "-plot"
			} else if r.opts.Checkpoint != "" {
				flag = "-plot (relative to -checkpoint)"
			}
			outs = append(outs, output{flag, filepath.Dir(p)})
		}
		if r.opts.Checkpoint != "" {
			outs = append(outs, output{"-checkpoint", r.opts.Checkpoint})
		}
	} else {
		outs = append(outs, output{"-out", r.opts.Out})
	}
	for _, o := range outs {
		if err := grcheckpoint.ProbeDir(o.dir); err != nil {
			return usageError{errors.WithMessage(err, o.flag)}
		}
	}
	return nil
}

func (r *runner) initBackend() error {
	if r.backend != nil {
		return nil
	}
	if r.opts.Backend != "" {
		if err := os.Setenv(backends.ConfigEnvVar, r.opts.Backend); err != nil {
			return err
		}
	}
	// -gradients, else $GRADREG_GRADIENTS, else grgrad's gradients of matrix products; applied here
	// (an example's own NewBackend may not call grbackend.New) and put in the environment, which
	// grbackend.New reads, so that both agree.
	dot := r.opts.Gradients
	if dot == "" {
		dot = os.Getenv(grbackend.GradientsEnvVar)
	}
	if dot == "" {
		dot = "grgrad"
	}
	if err := grbackend.SetGradients(dot); err != nil {
		if errors.Is(err, grbackend.ErrGradientsChoice) {
			return usagef("-gradients (or $%s)=%v", grbackend.GradientsEnvVar, err)
		}
		return err
	}
	if err := os.Setenv(grbackend.GradientsEnvVar, dot); err != nil {
		return err
	}
	newBackend := grbackend.New
	if r.ex.NewBackend != nil {
		newBackend = r.ex.NewBackend
	}
	var be backends.Backend
	var err error
	if perr := Catch(func() { be, err = newBackend() }); perr != nil {
		err = perr
	}
	if err != nil {
		return usageError{errors.WithMessagef(err, "backend (-backend=%q, $%s=%q)", r.opts.Backend,
			backends.ConfigEnvVar, os.Getenv(backends.ConfigEnvVar))}
	}
	r.backend = be
	return nil
}

// describeBackend names the backend and the gradients of matrix products in effect.
func (r *runner) describeBackend() string {
	return grbackend.Describe(r.backend) + ", " + grgrad.Describe()
}

// stepText is the mean wall time per step, or says it was not measured (a resumed run that had already
// reached its last step trains none).
func (res *Result) stepText() string {
	if res.StepTime <= 0 {
		return "time per step not measured (no step trained in this process)"
	}
	return fmt.Sprintf("%s/step (mean, step_ms=%.3f)", res.StepTime.Round(time.Microsecond),
		float64(res.StepTime.Microseconds())/1000)
}

// cpuText is the process CPU time per step, or says it was not measured (it is measured from the end of
// the process's second step: a run of two steps or fewer, e.g. a short resume, has none).
func (res *Result) cpuText() string {
	if res.StepCPU <= 0 {
		return "time per step not measured (2 steps or fewer in this process)"
	}
	return res.StepCPU.Round(time.Microsecond).String() + "/step"
}

// Point is one evaluation of a run's curves. The train values and the GR metrics are means over the
// steps since the previous point; the GR metrics are absent for methods that do not compute them.
type Point struct {
	Step          int      `json:"step"`
	TrainLoss     float64  `json:"train_loss"`
	TrainAccuracy float64  `json:"train_accuracy"`
	TestLoss      float64  `json:"test_loss"`
	TestAccuracy  float64  `json:"test_accuracy"`
	GradNorm      *float64 `json:"grad_norm,omitempty"` // ‖g₁‖ (gr.MetricGradNorm)
	Curvature     *float64 `json:"curvature,omitempty"` // g₁ᵀHg₁ (gr.MetricCurvature)
}

// Result is what one run measured.
type Result struct {
	Entry         string        `json:"entry"` // Entry.Label
	Spec          string        `json:"spec"`  // Entry.String, as in -compare
	Method        string        `json:"method"`
	Seed          int64         `json:"seed"`
	Steps         int           `json:"steps"`
	TestAccuracy  float64       `json:"test_accuracy"`
	TestLoss      float64       `json:"test_loss"`
	TrainLoss     float64       `json:"train_loss"`             // on Data.TrainEval at the end (else the last point's)
	TrainAccuracy float64       `json:"train_accuracy"`         // idem
	ValAccuracy   *float64      `json:"val_accuracy,omitempty"` // on Data.Val at the end (-val); nil without
	ValLoss       *float64      `json:"val_loss,omitempty"`     // idem
	StepTime      time.Duration `json:"step_time_ns"`           // mean over the steps but the first two
	StepCPU       time.Duration `json:"step_cpu_ns"`            // mean process CPU time (user + system) per step, idem
	Wall          time.Duration `json:"wall_ns"`                // whole run, evaluations included
	Params        int           `json:"params"`                 // trainable scalars
	Fallbacks     int           `json:"fallbacks"`              // steps the non-finite guard ran as base steps
	Skipped       int           `json:"skipped"`                // steps the non-finite guard skipped
	// Diverged: the final training loss is not finite or above 10 times the first step's (the run's result
	// is not a trained model; marked in the table, and the command exits with ExitError).
	Diverged bool    `json:"diverged,omitempty"`
	Curve    []Point `json:"curve"`
	// Settings are the run's hyperparameters (context parameters, as JSON text): -merge pools only runs
	// whose settings agree.
	Settings map[string]string `json:"settings,omitempty"`

	Ctx       *context.Context `json:"-"` // the run's context (variables, hyperparameters) for tests and tools
	firstLoss float64          // training loss of the first step (NaN when unknown)
	saveErr   error            // the first checkpoint save that failed (training went on)
	file      string           // -merge: the file it was read from
}

// valText is ", validation accuracy A, validation loss L" with -val, "" without.
func (res *Result) valText() string {
	if res.ValAccuracy == nil {
		return ""
	}
	return fmt.Sprintf(", validation accuracy %.4f, validation loss %.4f", *res.ValAccuracy, *res.ValLoss)
}

// steps returns the number of training steps of a run.
func steps(ctx *context.Context, d *Data) (int, error) {
	n := context.GetParamOr(ctx, ParamSteps, 0)
	if n > 0 {
		return n, nil
	}
	epochs := context.GetParamOr(ctx, ParamEpochs, 0)
	if n < 0 || epochs <= 0 {
		return 0, errors.Errorf("give -steps > 0 or -epochs > 0 (%s=%d, %s=%d)", ParamSteps, n, ParamEpochs,
			epochs)
	}
	return epochs * max(d.StepsPerEpoch, 1), nil
}

// newOptimizer builds the base optimizer of the context, wrapped by the context's gr method.
func newOptimizer(ctx *context.Context, totalSteps int) (optimizers.Interface, error) {
	lr := context.GetParamOr(ctx, ParamLearningRate, 0.1)
	wd := context.GetParamOr(ctx, ParamWeightDecay, 0.0)
	cosine := false
	switch s := context.GetParamOr(ctx, ParamSchedule, "constant"); s {
	case "constant":
	case "cosine":
		cosine = true
	default:
		return nil, errors.Errorf("unknown -schedule (%s) %q: valid values are constant|cosine", ParamSchedule, s)
	}
	if !(lr > 0) {
		return nil, errors.Errorf("-lr (%s) must be > 0, got %g", ParamLearningRate, lr)
	}
	if wd < 0 {
		return nil, errors.Errorf("-wd (%s) must be >= 0, got %g", ParamWeightDecay, wd)
	}
	var base optimizers.Interface
	switch name := context.GetParamOr(ctx, ParamOptimizer, "sgd"); name {
	case "sgd", "momentum":
		o := &sgdm.Optimizer{LR: lr, WeightDecay: wd}
		if name == "momentum" {
			o.Momentum = context.GetParamOr(ctx, ParamMomentum, 0.9)
			if o.Momentum < 0 || o.Momentum >= 1 {
				return nil, errors.Errorf("-momentum (%s) must be in [0, 1), got %g", ParamMomentum, o.Momentum)
			}
		}
		if cosine {
			o.TotalSteps = totalSteps
		}
		base = o
	case "adam":
		if cosine || wd != 0 {
			return nil, errors.Errorf("-base=adam takes neither -schedule=cosine nor -wd (use -set=%s=…)",
				optimizers.ParamAdamWeightDecay)
		}
		base = optimizers.Adam().FromContext(ctx).LearningRate(lr).Done()
	default:
		return nil, errors.Errorf("unknown -base (%s) %q: valid values are sgd|momentum|adam", ParamOptimizer, name)
	}
	return gr.FromContext(ctx, base)
}

// describeOptimizer is e.g. "momentum 0.9, lr 0.05 cosine".
func describeOptimizer(ctx *context.Context) string {
	base := context.GetParamOr(ctx, ParamOptimizer, "sgd")
	if base == "momentum" {
		base += fmt.Sprintf(" %g", context.GetParamOr(ctx, ParamMomentum, 0.9))
	}
	s := fmt.Sprintf("%s, lr %g %s", base, context.GetParamOr(ctx, ParamLearningRate, 0.1),
		context.GetParamOr(ctx, ParamSchedule, "constant"))
	if wd := context.GetParamOr(ctx, ParamWeightDecay, 0.0); wd != 0 {
		s += fmt.Sprintf(", wd %g", wd)
	}
	return s
}

// meanStepTime is the mean training step duration without the time spent in the runner's hook
// (evaluations, checkpoints) and without the first two steps (which compile the train graphs).
func meanStepTime(durations, hookTime []time.Duration) time.Duration {
	var total time.Duration
	n := 0
	for i, d := range durations {
		if i < 2 && len(durations) > 2 {
			continue
		}
		if i < len(hookTime) {
			d -= hookTime[i]
		}
		total += d
		n++
	}
	if n == 0 {
		return 0
	}
	return total / time.Duration(n)
}

// stepAverages accumulates the train values between two points.
type stepAverages struct {
	n                           int
	loss, acc, gradNorm, curvat float64
}

// add adds one step's metrics m, whose positions by metric name are at (metricIndex).
func (a *stepAverages) add(m []*tensors.Tensor, at map[string]int, isGR bool) {
	a.n++
	a.loss += scalar(m[at[metricTrainLoss]])
	a.acc += scalar(m[at[metricTrainAccuracy]])
	if isGR {
		a.gradNorm += scalar(m[at[metricGradNorm]])
		a.curvat += scalar(m[at[metricCurvature]])
	}
}

// Names of the metrics the runner reads (metrics.Interface.Name): GoMLX's trainer's, the runner's own and
// those of gr.Metrics and gr.GuardMetrics.
const (
	metricTrainLoss     = "Batch Loss+Regularization"
	metricTrainAccuracy = "Batch Accuracy"
	metricEvalLoss      = "Mean Loss"
	metricEvalAccuracy  = "Mean Accuracy"
	metricGradNorm      = "GR ‖∇L‖"
	metricCurvature     = "GR curvature"
	metricFallbacks     = "GR fallbacks"
	metricSkipped       = "GR skipped"
)

// metricIndex returns the position of each metric of ms by name, checking that the metrics the runner reads
// are there (with gr, the GR metrics too): the trainer's results follow the order of its metrics, which
// changes with the metrics other packages add.
func metricIndex(ms []metrics.Interface, gr bool) (map[string]int, error) {
	at := make(map[string]int, len(ms))
	for i, m := range ms {
		at[m.Name()] = i
	}
	var want []string
	if _, train := at[metricTrainLoss]; train {
		want = []string{metricTrainLoss, metricTrainAccuracy}
		if gr {
			want = append(want, metricGradNorm, metricCurvature, metricFallbacks, metricSkipped)
		}
	} else {
		want = []string{metricEvalLoss, metricEvalAccuracy}
	}
	for _, name := range want {
		if _, found := at[name]; !found {
			return nil, errors.Errorf("run: the trainer has no metric named %q", name)
		}
	}
	return at, nil
}

func (a *stepAverages) fill(p *Point, isGR bool) {
	if a.n == 0 {
		return
	}
	n := float64(a.n)
	p.TrainLoss, p.TrainAccuracy = a.loss/n, a.acc/n
	if isGR {
		g, c := a.gradNorm/n, a.curvat/n
		p.GradNorm, p.Curvature = &g, &c
	}
}

func scalar(t *tensors.Tensor) float64 { return shapes.ConvertTo[float64](t.Value()) }

// resetting resets a dataset and returns it.
func resetting(ds train.Dataset) train.Dataset {
	ds.Reset()
	return ds
}

// Catch runs fn and returns the panic it raised, if any, as an error (GoMLX reports graph errors by
// panicking).
func Catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = errors.Errorf("%v", r)
			}
		}
	}()
	fn()
	return nil
}
