package gr

import (
	"fmt"
	"maps"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// Schedule gives the value of a hyperparameter for the step being built (Config.Schedule) from its configured
// value: LinearWarmUp, StepWarmUp, FollowLearningRate, or one made by NewSchedule. Its String names it, as
// Regularized.Params shows it (e.g. "LinearWarmUp(100)"). The zero Schedule is none (the configured value).
type Schedule struct {
	name string
	fn   func(s *Step, value *Node) *Node
}

// NewSchedule returns the Schedule named name (what Regularized.Params shows, e.g. "Cosine(1000)") that
// computes the value of the step from the configured value (a scalar of the compute dtype) with fn. fn gets
// the step's graph, its global step (Step.GlobalStep) and GoMLX's learning rate (Step.LearningRate) from s; its
// result is converted to the compute dtype. It panics if name is empty or fn is nil.
func NewSchedule(name string, fn func(s *Step, value *Node) *Node) Schedule {
	if name == "" || fn == nil {
		panicf("gr.NewSchedule: the name (%q) must not be empty and fn must not be nil", name)
	}
	return Schedule{name: name, fn: fn}
}

// String returns the schedule's name, e.g. "LinearWarmUp(100)"; "" for the zero Schedule.
func (sc Schedule) String() string { return sc.name }

// Schedule makes the float64 hyperparameter key follow fn: on each step the method reads fn(s, value) with
// value the configured value (Set, Rho, Gamma, ...). E.g. the GSAM paper's ρ, which follows the learning rate
// (FollowLearningRate), or an annealed γ:
//
//	gr.ForwardDifference(base).Gamma(0.1).Schedule(gr.ParamGamma, gr.LinearWarmUp(1000))
//
// It is an error (reported by Build) if the method does not declare key as a float64 hyperparameter. A later
// Schedule of the same key replaces the earlier one; the zero Schedule removes it. Regularized.Params shows it
// under key + "_schedule", e.g. "gr_rho_schedule": "LinearWarmUp(100)".
func (c *Config) Schedule(key string, fn Schedule) *Config {
	if h := c.lookup(key); h == nil || !isFloat(h.Default) {
		c.setErr(errors.Errorf("gr.%s: Schedule(%q): %s has no float64 hyperparameter %q", c.name, key, c.name, key))
		return c
	}
	c.schedules = maps.Clone(c.schedules) // Built optimizers keep theirs.
	if c.schedules == nil {
		c.schedules = map[string]Schedule{}
	}
	if fn.fn == nil {
		delete(c.schedules, key)
	} else {
		c.schedules[key] = fn
	}
	return c
}

// LinearWarmUp returns the schedule value·min(1, t/steps), t the global step before the step: 0 on the first
// step, the configured value from step steps on. steps must be at least 1.
func LinearWarmUp(steps int) Schedule {
	if steps < 1 {
		panicf("gr.LinearWarmUp: steps must be an integer in [1, +∞), got %d", steps)
	}
	return NewSchedule(fmt.Sprintf("LinearWarmUp(%d)", steps), func(s *Step, value *Node) *Node {
		t := graph.ConvertDType(s.GlobalStep(), value.DType())
		return graph.Mul(value, graph.MinScalar(graph.DivScalar(t, float64(steps)), 1.0))
	})
}

// StepWarmUp returns the schedule 0 for t < steps and the configured value from t = steps on (t the global step
// before the step). steps must be at least 1.
func StepWarmUp(steps int) Schedule {
	if steps < 1 {
		panicf("gr.StepWarmUp: steps must be an integer in [1, +∞), got %d", steps)
	}
	return NewSchedule(fmt.Sprintf("StepWarmUp(%d)", steps), func(s *Step, value *Node) *Node {
		t := graph.ConvertDType(s.GlobalStep(), value.DType())
		return graph.Mul(value, graph.ConvertDType(graph.GreaterOrEqual(t, graph.Scalar(s.g, t.DType(), float64(steps))), value.DType()))
	})
}

// FollowLearningRate returns the GSAM paper's schedule (Zhuang et al., ICLR 2022): the hyperparameter moves
// with GoMLX's learning rate lr_t (Step.LearningRate) between minValue, at lr_t = lrMin, and the configured
// value, at lr_t = lrMax:
//
//	value_t = minValue + (value − minValue)·(lr_t − lrMin)/(lrMax − lrMin)
//
// e.g. ρ_t for a cosine learning-rate decay from lrMax to lrMin. lrMax must be the base optimizer's initial
// learning rate (see Step.LearningRate); lrMax > lrMin ≥ 0 and minValue ≥ 0, else it panics.
func FollowLearningRate(lrMax, lrMin, minValue float64) Schedule {
	if !(lrMax > lrMin) || lrMin < 0 || minValue < 0 {
		panicf("gr.FollowLearningRate: want lrMax > lrMin ≥ 0 and minValue ≥ 0, got lrMax %g, lrMin %g, minValue %g",
			lrMax, lrMin, minValue)
	}
	return NewSchedule(fmt.Sprintf("FollowLearningRate(%g, %g, %g)", lrMax, lrMin, minValue), func(s *Step, value *Node) *Node {
		lr := graph.ConvertDType(s.LearningRate(lrMax), value.DType())
		frac := graph.DivScalar(graph.AddScalar(lr, -lrMin), lrMax-lrMin)
		return graph.AddScalar(graph.Mul(graph.AddScalar(value, -minValue), frac), minValue)
	})
}

// LearningRate returns GoMLX's learning rate for this step: the value at the start of the step of the variable
// optimizers.LearningRateVar of the trainer's context, which GoMLX's optimizers (SGD, Adam, ...) and
// learning-rate schedules (cosineschedule) read and write. When no step has created it yet (the first graph
// of a run: the base optimizer creates it after the method's gradient is built), it is created with initial,
// which must then be the base optimizer's initial learning rate: the base optimizer finds it and uses it.
// (SGD's WithDecay divides its learning rate by √t on top of this value; this is the variable's value.)
func (s *Step) LearningRate(initial float64) *Node {
	dtype := computeDType(s.loss.DType())
	v := s.ctx.In(optimizers.Scope).GetVariable(optimizers.ParamLearningRate)
	if v == nil {
		v = optimizers.LearningRateVar(s.ctx, s.loss.DType(), initial)
	}
	return graph.ConvertDType(v.ValueGraph(s.g), dtype)
}

// scheduled returns value, or fn(s, value) converted to its dtype, and writes it to the variable of
// hyperparameter key.
func (s *Step) scheduled(key string, value *Node, fn Schedule) *Node {
	if fn.fn != nil {
		value = castTo(fn.fn(s, value), value)
	}
	v := ownVar(s.ctx, s.own+"/"+hyperparametersScope, key, shapes.Make(value.DType()))
	v.SetValueGraph(value)
	return value
}

// hyperparametersScope is the scope, under Config.Scope, of the hyperparameters' variables.
const hyperparametersScope = "hyperparameters"

// HyperparameterVar returns the variable that holds the value of hyperparameter key (a context key such as
// ParamRho, or "warmup_weight") of the optimizer opt for a trainer on ctx, or nil if no step wrote it yet.
func HyperparameterVar(ctx *context.Context, opt *Regularized, key string) *context.Variable {
	return ctx.InAbsPath(opt.cfg.ownScope(ctx) + "/" + hyperparametersScope).GetVariable(key)
}
