package gr

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// ParamEvery is k of Config.Every, read by FromContext. Default: 1 (every step).
const ParamEvery = "gr_every"

// cadence holds the settings of Every (every.go) and WarmUp/ZeroWarmUp (warmup.go).
type cadence struct {
	every      int  // k of Every; 0 or 1: every step
	warmUp     int  // warm-up steps; 0: none
	zeroWarmUp bool // step function instead of the linear ramp
}

// Every makes the method's extra gradient evaluations run on every k-th step only; valid range [1, +∞).
// Default: 1 (every step: exactly the plain method, bit for bit).
//
// Every method's combined gradient is written as g = g₁ + c, with c the method's correction (for F-GR
// c = (γ/ε)[∇L(θ + εg₁) − g₁]; for SAM c = ∇L(θ + e) − g₁). On the steps whose global step t (the trainer's
// step counter before the step, starting at 0) is a multiple of k, the method runs as usual — the
// gradient handed to the base optimizer is the plain method's, bit for bit — and c is stored. On the other
// steps only g₁ is computed and g = g₁ + c_stored: the cost is one gradient evaluation, so a step costs
// about 1 + 1/k gradient evaluations on average (1 + 2/k for CentralDifference).
//
// The stored correction is optimizer state: one non-trainable variable per trainable variable, under
// Scope + "/every" (memory: one copy of the parameters), saved by checkpoints, so a resumed run is identical to
// an uninterrupted one.
//
// The saving needs the trainer to run a different graph on the skip steps, since GoMLX graphs have no
// conditional execution: pass the training dataset through EveryDataset (for train.Loop) or call TrainStep
// instead of trainer.TrainStep. Without them the results are the same, but each step computes both
// branches and selects one, so nothing is saved.
func (c *Config) Every(k int) *Config {
	if k < 1 {
		c.setErr(errors.Errorf("gr.%s: Every (k) [%s] must be an integer in [1, +∞), got %d", c.name, ParamEvery, k))
	}
	c.sched.every = k
	return c
}

// every returns k of Every (1 when not set).
func (c *Config) every() int { return max(c.sched.every, 1) }

// everyPhase says which graph the trainer is building for an Every(k) optimizer.
type everyPhase int

const (
	phaseAny    everyPhase = iota // unknown: compute both branches and select in the graph
	phaseAscent                   // t % k == 0: run the method, store the correction
	phaseSkip                     // reuse the stored correction
)

// everySpec wraps the dataset's spec so that the trainer keeps one graph per phase (train.Trainer keys its
// executors by spec).
type everySpec struct {
	spec  any
	phase everyPhase
}

// everyTrainers maps the trainers built by NewTrainer with an Every(k > 1) optimizer, or one built by
// FromContext (whose k may change when a checkpoint loads), to their everyTrainer.
var everyTrainers sync.Map // weak.Pointer[train.Trainer] → *everyTrainer

// everyTrainer is the optimizer of a trainer in everyTrainers and its k, read once (at the first stepSpec).
type everyTrainer struct {
	r *Regularized
	k atomic.Int64 // 0: not read yet
}

func registerEveryTrainer(trainer *train.Trainer, optimizer optimizers.Interface) {
	r, ok := optimizer.(*Regularized)
	if !ok || (r.cfg.every() <= 1 && r.ctx == nil) {
		return
	}
	key := weak.Make(trainer)
	everyTrainers.Store(key, &everyTrainer{r: r})
	runtime.AddCleanup(trainer, func(key weak.Pointer[train.Trainer]) { everyTrainers.Delete(key) }, key)
}

// stepSpec returns the spec to give trainer.TrainStep for its next step: spec itself, unless the trainer was
// built by NewTrainer with an optimizer configured with Every(k > 1); then a wrapped spec that selects the
// graph of the step (ascent or skip, from the trainer's global step), which NewTrainer's model function
// unwraps before calling the model. It reads the global step from the trainer's context, and k of an optimizer
// built by FromContext from the context at its first call (after a checkpoint loaded).
func stepSpec(trainer *train.Trainer, spec any) any {
	e, found := everyTrainers.Load(weak.Make(trainer))
	if !found {
		return spec
	}
	et := e.(*everyTrainer)
	k := et.k.Load()
	if k == 0 {
		k = int64(et.r.current().every())
		et.k.Store(k)
	}
	if k <= 1 {
		return spec
	}
	phase := phaseSkip
	if trainer.GlobalStep()%k == 0 {
		phase = phaseAscent
	}
	return everySpec{spec: spec, phase: phase}
}

// TrainStep is trainer.TrainStep for a trainer built by NewTrainer: with an optimizer configured with
// Every(k > 1), it gives the trainer a spec that selects the graph of the step, so that the steps that reuse
// the correction run the cheap graph (one gradient evaluation); NewTrainer's model function unwraps the spec
// before calling the model. With any other optimizer it is trainer.TrainStep. k of an optimizer built by
// FromContext is read from the context at the first step (after a checkpoint loaded).
func TrainStep(trainer *train.Trainer, spec any, inputs, labels []*tensors.Tensor) ([]*tensors.Tensor, error) {
	return trainer.TrainStep(stepSpec(trainer, spec), inputs, labels)
}

// EveryDataset wraps a training dataset for train.Loop so that each yielded spec selects the graph of the
// step as TrainStep does:
// with an optimizer configured with Every(k), the skip steps run the cheap graph. With any other optimizer
// it changes nothing. Use it for the training dataset only.
//
// A train.DistributedDataset stays one: the wrapper forwards Strategy, DeviceAssignment and DistributedYield
// (with the spec wrapped likewise), so train.Loop still runs it distributed (see Several devices in the package documentation).
func EveryDataset(trainer *train.Trainer, ds train.Dataset) train.Dataset {
	d := &everyDataset{Dataset: ds, trainer: trainer}
	if dds, ok := ds.(train.DistributedDataset); ok {
		return &everyDistributedDataset{everyDataset: d, dist: dds}
	}
	return d
}

type everyDataset struct {
	train.Dataset
	trainer *train.Trainer
}

// Yield implements train.Dataset.
func (d *everyDataset) Yield() (spec any, inputs, labels []*tensors.Tensor, err error) {
	spec, inputs, labels, err = d.Dataset.Yield()
	if err != nil {
		return
	}
	return stepSpec(d.trainer, spec), inputs, labels, nil
}

// IsOwnershipTransferred implements train.DatasetCustomOwnership as the wrapped dataset does.
func (d *everyDataset) IsOwnershipTransferred() bool {
	if o, ok := d.Dataset.(train.DatasetCustomOwnership); ok {
		return o.IsOwnershipTransferred()
	}
	return true
}

// unwrapSpec returns the dataset's own spec and the phase.
func unwrapSpec(spec any) (any, everyPhase) {
	if es, ok := spec.(everySpec); ok {
		return es.spec, es.phase
	}
	return spec, phaseAny
}

// Phase says which computation a step runs under Every(k) (Step.Phase).
type Phase int

const (
	// PhaseFull: the method's gradient (every step without Every(k); the steps t ≡ 0 mod k with it).
	PhaseFull Phase = iota

	// PhaseReuse: the cheap steps of Every(k): the method's Config.Reuse computation, by default g₁ plus the
	// correction stored on the last full step.
	PhaseReuse
)

// Phase returns the phase of the computation being built. When the trainer builds one graph for both
// phases (without EveryDataset or TrainStep), a method's Reuse computation is built with PhaseReuse and its
// gradient with PhaseFull, and the graph selects one.
func (s *Step) Phase() Phase { return s.phase }

// correctionScope holds the correction stored by Every(k) for the default reuse: one non-trainable variable
// per trainable variable, under <Config.Scope>/every/<the variable's scope>, same name and shape.
const correctionScope = "every"
