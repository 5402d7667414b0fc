package gr

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"weak"
)

// warnOutput receives the message of warnBothBranches (a variable for the tests).
var warnOutput io.Writer = os.Stderr

// warnedTrainers holds the trainers (or, without NewTrainer, the optimizers) already warned.
var warnedTrainers sync.Map // weak.Pointer → struct{}

// warnBothBranches prints, once per trainer, that the trainer is building the graph that computes both
// phases of Every(k) and selects one, so that Every saves nothing, and what to add.
func (s *Step) warnBothBranches() {
	var first bool
	if s.pass != nil && s.pass.trainer != nil {
		first = firstTime(s.pass.trainer)
	} else {
		first = firstTime(s.cfg) // train.NewTrainer: one message per optimizer.
	}
	if !first {
		return
	}
	fmt.Fprintf(warnOutput, "gr.%s with Every(%d): this trainer builds the graph that computes both the "+
		"full step and the cheap one and selects one (GoMLX graphs have no conditional), so every step costs the "+
		"full method and Every saves nothing. Pass the training dataset through gr.EveryDataset(trainer, ds) "+
		"for train.Loop, or call gr.TrainStep(trainer, spec, inputs, labels) instead of trainer.TrainStep "+
		"(the trainer must come from gr.NewTrainer).\n", s.cfg.name, s.cfg.sched.every)
}

// firstTime records p in warnedTrainers (until p is collected) and says whether it was not there yet.
func firstTime[T any](p *T) bool {
	key := weak.Make(p)
	if _, loaded := warnedTrainers.LoadOrStore(key, struct{}{}); loaded {
		return false
	}
	runtime.AddCleanup(p, func(key weak.Pointer[T]) { warnedTrainers.Delete(key) }, key)
	return true
}
