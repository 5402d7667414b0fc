package run

import (
	"fmt"
	"math"
	"os"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
	"github.com/gradreg/gradreg/regularizers"
)

// trainOne trains one run: it sets the run up (context, data, optimizer, trainer), resumes it from its
// checkpoint when there is one, trains it to its last step (evaluating and saving on the way) and measures
// the final model.
func (r *runner) trainOne(e Entry, seed int64) (*Result, error) {
	j, err := r.setUp(e, seed)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if err := j.resume(); err != nil {
		return nil, err
	}
	if err := j.train(); err != nil {
		return nil, err
	}
	if err := j.finish(); err != nil {
		return nil, err
	}
	return j.res, nil
}

// job is one run in training: what the steps of trainOne share.
type job struct {
	r     *runner
	e     Entry
	seed  int64
	start time.Time

	ctx     *context.Context
	params  map[string]string // runParams before the data are made: the settings the command line gives
	data    *Data
	trainer *train.Trainer
	isGR    bool           // the optimizer is a gr method (it publishes the GR metrics)
	trainAt map[string]int // position of each train metric by name (metricIndex)
	evalAt  map[string]int // idem, eval metrics

	total, batch, evalEvery, saveEvery int

	ckpt      *grcheckpoint.Handler // nil without -checkpoint
	startStep int                   // the step it resumes from (0 for a new run)
	res       *Result
	avg       stepAverages // train values since the last evaluation
}

// setUp builds the run's context, data, optimizer, loss and trainer, and checks the run's own settings.
func (r *runner) setUp(e Entry, seed int64) (*job, error) {
	j := &job{r: r, e: e, seed: seed, start: time.Now()}
	ctx, err := r.newContext(e, seed)
	if err != nil {
		return nil, err
	}
	j.ctx, j.params = ctx, runParams(ctx)
	if err := Catch(func() { j.data, err = r.ex.Data(r.backend, ctx, seed) }); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, asUsage(err) // The data's settings or files: the user's inputs.
	}
	if val := context.GetParamOr(ctx, ParamVal, 0.0); val != 0 && j.data.Val == nil {
		return nil, errors.Errorf("-val (%s) = %g: example %s does not hold out a validation split", ParamVal, val,
			r.ex.Name)
	}
	if j.total, err = steps(ctx, j.data); err != nil {
		return nil, err
	}
	if j.batch = context.GetParamOr(ctx, ParamBatch, 64); j.batch <= 0 {
		return nil, errors.Errorf("-batch (%s) must be positive, got %d", ParamBatch, j.batch)
	}
	if j.evalEvery = context.GetParamOr(ctx, ParamEvalEvery, 0); j.evalEvery <= 0 {
		j.evalEvery = max(j.data.StepsPerEpoch, 1)
	}
	if j.saveEvery = context.GetParamOr(ctx, ParamSaveEvery, 0); j.saveEvery <= 0 {
		j.saveEvery = j.evalEvery
	}
	opt, err := newOptimizer(ctx, j.total)
	if err != nil {
		return nil, err
	}
	lossFn, err := regularizers.FromContext(ctx, r.ex.Loss)
	if err != nil {
		return nil, err
	}
	reg, isGR := opt.(*gr.Regularized)
	j.isGR = isGR && reg.Method() != "none" // gr.FromContext's optimizer for gr_method=none is the base one's steps
	trainMetrics := []metrics.Interface{
		metrics.NewBaseMetric("Batch Accuracy", "acc", "accuracy", metrics.SparseCategoricalAccuracyGraph, nil),
		metrics.NewMovingAverageSparseCategoricalAccuracy("Moving Average Accuracy", "~acc", 0.01),
	}
	if j.isGR {
		trainMetrics = append(trainMetrics, gr.Metrics()...)
		trainMetrics = append(trainMetrics, gr.GuardMetrics()...)
	}
	j.trainer = gr.NewTrainer(r.backend, ctx, r.ex.Model, lossFn, opt, trainMetrics,
		[]metrics.Interface{metrics.NewSparseCategoricalAccuracy("Mean Accuracy", "#acc")})
	if j.trainAt, err = metricIndex(j.trainer.TrainMetrics(), j.isGR); err != nil {
		return nil, err
	}
	if j.evalAt, err = metricIndex(j.trainer.EvalMetrics(), false); err != nil {
		return nil, err
	}
	j.res = &Result{Entry: e.Label(), Spec: e.String(), Method: e.Method, Seed: seed, Steps: j.total, Ctx: ctx,
		Settings: j.params, firstLoss: math.NaN()}
	return j, nil
}

// resume opens -checkpoint (when given), checks that its run is this one and continues it: the variables,
// the curve so far, the training data seeked to its step.
func (j *job) resume() error {
	r := j.r
	if r.opts.Checkpoint != "" {
		// The flags stay the source of truth for the hyperparameters: they are checked against the
		// checkpoint's record, not read back.
		var err error
		if j.ckpt, err = grcheckpoint.Build(j.ctx).Dir(r.opts.Checkpoint).Keep(2).Done(); err != nil {
			return asUsage(errors.WithMessage(err, "-checkpoint"))
		}
		for _, b := range j.ckpt.Skipped() {
			fmt.Fprintf(r.stderr, "%s: %v: resuming from the newest intact one, %s\n", r.ex.Name, b, j.ckpt.Loaded())
		}
		if j.ckpt.Loaded() != "" {
			var rec checkpointRecord
			ok, err := j.ckpt.Meta(&rec)
			if err != nil {
				return err
			}
			if !ok {
				return usagef("checkpoint %s in -checkpoint %q has no record of its run's settings (it was not "+
					"written by this program): give another folder", j.ckpt.Loaded(), r.opts.Checkpoint)
			}
			if err := r.checkResume(&rec, j.e, j.seed, j.ctx, j.params, j.total); err != nil {
				return err
			}
			j.res.Curve, j.res.firstLoss = rec.Curve, float64(rec.FirstLoss)
		}
	}
	j.startStep = int(optimizers.GetGlobalStep(j.ctx))
	if j.startStep > 0 {
		j.trainer.SetContext(j.ctx.Reuse())
		fmt.Printf("resuming %s (seed %d) from %q at step %d of %d\n", j.e.Label(), j.seed, r.opts.Checkpoint,
			j.startStep, j.total) // Also with -quiet: a resumed run says so.
		for len(j.res.Curve) > 0 && j.res.Curve[len(j.res.Curve)-1].Step > j.startStep {
			j.res.Curve = j.res.Curve[:len(j.res.Curve)-1]
		}
	}
	if sk, ok := j.data.Train.(Seeker); ok {
		sk.Seek(j.startStep)
	} else if j.startStep > 0 {
		fmt.Fprintf(r.stderr, "%s: the training data restarts at its first batch (the dataset cannot seek)\n",
			r.ex.Name)
	}
	if !r.opts.Quiet {
		fmt.Printf("%s, seed %d: %s; %s, %d steps, batch %d, on %s\n", j.e.Label(), j.seed, j.data.Description,
			describeOptimizer(j.ctx), j.total, j.batch, r.describeBackend())
	}
	return nil
}

// close releases the checkpoint folder (its lock), if the run has one.
func (j *job) close() {
	if j.ckpt != nil {
		if err := j.ckpt.Close(); err != nil {
			fmt.Fprintf(j.r.stderr, "%s: %v\n", j.r.ex.Name, err)
		}
	}
}

// train runs the training loop from the resumed step to the last, with the runner's hook after each step
// (curves, evaluations, checkpoints), and measures the time per step.
func (j *job) train() error {
	if j.startStep >= j.total {
		return nil // A finished run resumed: nothing to train, no time per step to measure.
	}
	loop := train.NewLoop(j.trainer)
	if j.r.progressBar() {
		commandline.AttachProgressBar(loop)
	}
	var hookTime []time.Duration
	var cpuStart, hookCPU time.Duration // CPU time at the end of step 2, CPU time of the hooks since
	loop.OnStep("run: curves and checkpoints", train.Priority(200), func(loop *train.Loop, m []*tensors.Tensor) error {
		t0, c0 := time.Now(), cpuTime()
		defer func() {
			switch {
			case len(hookTime) == 2: // The first two steps compile the graphs: CPU time counts from here.
				cpuStart = cpuTime()
			case len(hookTime) > 2:
				hookCPU += cpuTime() - c0
			}
		}()
		err := j.afterStep(int(loop.LoopStep)+1, m)
		hookTime = append(hookTime, time.Since(t0))
		return err
	})
	var runErr error
	if err := Catch(func() { _, runErr = loop.RunToGlobalStep(gr.EveryDataset(j.trainer, j.data.Train), j.total) }); err != nil {
		runErr = err
	}
	if runErr != nil {
		if j.r.ex.ExplainError != nil {
			runErr = j.r.ex.ExplainError(runErr)
		}
		if j.startStep > 0 && j.ckpt != nil { // A variable of another shape, e.g.: say where it came from.
			runErr = errors.WithMessagef(runErr, "resumed from checkpoint %s of -checkpoint %q at step %d",
				j.ckpt.Loaded(), j.r.opts.Checkpoint, j.startStep)
		}
		return runErr
	}
	j.res.StepTime = meanStepTime(loop.TrainStepDurations, hookTime)
	if n := len(hookTime) - 2; n > 0 && cpuStart > 0 {
		j.res.StepCPU = (cpuTime() - cpuStart - hookCPU) / time.Duration(n)
	}
	return nil
}

// afterStep is the runner's hook after training step step (1-based) with train metrics m: it accumulates
// the train values, evaluates every -eval_every steps and at the end, and saves every -save_every steps
// and at the end.
func (j *job) afterStep(step int, m []*tensors.Tensor) error {
	res := j.res
	j.avg.add(m, j.trainAt, j.isGR)
	if j.isGR {
		res.Fallbacks, res.Skipped = int(scalar(m[j.trainAt[metricFallbacks]])), int(scalar(m[j.trainAt[metricSkipped]]))
	}
	if step == 1 {
		res.firstLoss = scalar(m[j.trainAt[metricTrainLoss]])
	}
	if step%j.evalEvery == 0 || step == j.total {
		if err := j.evaluate(step); err != nil {
			return err
		}
	}
	if j.ckpt != nil && (step%j.saveEvery == 0 || step == j.total) {
		j.ckpt.SetMeta(&checkpointRecord{Example: j.r.ex.Name, Spec: j.e.String(), Seed: j.seed, Steps: j.total,
			Step: step, Params: j.params, FirstLoss: jsonFloat(res.firstLoss), Curve: res.Curve})
		if err := j.ckpt.Save(); err != nil && res.saveErr == nil {
			// Training goes on (its result is still worth having); the command exits with an error.
			res.saveErr = err
			fmt.Fprintf(j.r.stderr, "%s: %v; training goes on\n", j.r.ex.Name, err)
		}
	}
	return nil
}

// evaluate adds the point of step to the curve: the test loss and accuracy, and the train values since the
// previous point; without a progress bar it prints a line.
func (j *job) evaluate(step int) error {
	m, err := j.trainer.Eval(resetting(j.data.Test))
	if err != nil {
		return err
	}
	p := Point{Step: step, TestLoss: scalar(m[j.evalAt[metricEvalLoss]]),
		TestAccuracy: scalar(m[j.evalAt[metricEvalAccuracy]])}
	j.avg.fill(&p, j.isGR)
	j.avg = stepAverages{}
	j.res.Curve = append(j.res.Curve, p)
	if !j.r.progressBar() { // One line per evaluation (for logs).
		fmt.Printf("  %s, seed %d, step %d/%d: test accuracy %.4f, train loss %.4f, %s\n", j.e.Label(), j.seed,
			step, j.total, p.TestAccuracy, p.TrainLoss, time.Since(j.start).Round(time.Second))
	}
	return nil
}

// finish measures the final model: the last point (evaluated now if the loop did not), the training set
// (Data.TrainEval), the validation split, divergence, the number of parameters.
func (j *job) finish() error {
	res := j.res
	if len(res.Curve) == 0 || res.Curve[len(res.Curve)-1].Step != j.total {
		if err := j.evaluate(j.total); err != nil {
			return err
		}
	}
	last := res.Curve[len(res.Curve)-1]
	res.TestAccuracy, res.TestLoss = last.TestAccuracy, last.TestLoss
	res.TrainLoss, res.TrainAccuracy = last.TrainLoss, last.TrainAccuracy
	if j.data.TrainEval != nil {
		m, err := j.trainer.Eval(resetting(j.data.TrainEval))
		if err != nil {
			return err
		}
		res.TrainLoss, res.TrainAccuracy = scalar(m[j.evalAt[metricEvalLoss]]), scalar(m[j.evalAt[metricEvalAccuracy]])
	}
	res.Diverged = math.IsNaN(res.TrainLoss) || math.IsInf(res.TrainLoss, 0) ||
		(res.firstLoss > 0 && res.TrainLoss > 10*res.firstLoss)
	if j.data.Val != nil {
		m, err := j.trainer.Eval(resetting(j.data.Val))
		if err != nil {
			return err
		}
		loss, acc := scalar(m[j.evalAt[metricEvalLoss]]), scalar(m[j.evalAt[metricEvalAccuracy]])
		res.ValLoss, res.ValAccuracy = &loss, &acc
	}
	for v := range j.ctx.IterVariables() {
		if v.Trainable {
			res.Params += v.Shape().Size()
		}
	}
	if w := res.warning(); w != "" {
		fmt.Printf("%s, seed %d: %s\n", j.e.Label(), j.seed, w)
	}
	res.Wall = time.Since(j.start)
	return nil
}

// progressBar reports whether runs draw a progress bar: on a terminal, without -quiet. Elsewhere (a log,
// a pipe) each evaluation prints one line instead.
func (r *runner) progressBar() bool { return !r.opts.Quiet && StdoutIsTerminal() }

// StdoutIsTerminal reports whether stdout is a terminal (a character device), where a progress bar may be
// drawn; a file or a pipe (a log) gets none.
func StdoutIsTerminal() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
