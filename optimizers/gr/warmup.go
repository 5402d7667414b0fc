package gr

import (
	"github.com/pkg/errors"
)

// Context hyperparameters for the GR warm-up, read by FromContext.
const (
	// ParamWarmUp is the number of steps of WarmUp (linear ramp). Default: 0 (no warm-up).
	ParamWarmUp = "gr_warmup"

	// ParamZeroWarmUp is the number of steps of ZeroWarmUp. Default: 0 (no warm-up).
	ParamZeroWarmUp = "gr_zero_warmup"
)

// warmUpSteps returns the steps of ZeroWarmUp (zero) or WarmUp (!zero): 0 unless that one is configured.
func (c *Config) warmUpSteps(zero bool) int {
	if c.sched.zeroWarmUp != zero {
		return 0
	}
	return c.sched.warmUp
}

// WarmUp ramps the regularization linearly from 0 over the first steps steps (GR warm-up, Zhao, Zhang & Hu,
// "When Will Gradient Regularization Be Harmful?", ICML 2024); valid range [0, +∞). Default: 0 (none).
//
// With t the trainer's global step before the step (0 on the first step; optimizers.GetGlobalStepVar) and
// w_t = min(1, t/steps), the gradient handed to the base optimizer is
//
//	g = g₁ + w_t·c
//
// where g₁ + c is the method's gradient. For the GR methods c is proportional to γ, so this is exactly a
// γ ramp, γ_t = w_t·γ (the paper's λ-warm-up). For the SAM family it ramps the weight of the perturbed
// gradient (for GNP, α_t = w_t·α), not ρ. The first step (w = 0) is a plain base-optimizer step; the extra
// gradient is still computed. It replaces a previous ZeroWarmUp.
//
// w_t is the schedule LinearWarmUp(steps) of a weight 1, on the mechanism of Config.Schedule: its value is
// written to the variable "warmup_weight" under Config.Scope + "/hyperparameters" (HyperparameterVar). To ramp
// a hyperparameter itself instead, e.g. SAM's ρ, use Schedule(ParamRho, LinearWarmUp(steps)).
func (c *Config) WarmUp(steps int) *Config {
	c.checkWarmUp("WarmUp", ParamWarmUp, steps)
	c.sched.warmUp, c.sched.zeroWarmUp = steps, false
	return c
}

// ZeroWarmUp turns the regularization off for the first steps steps and fully on afterwards: the paper's
// zero-warm-up (Zhao, Zhang & Hu 2024), meant to span the learning-rate warm-up, during which an adaptive
// optimizer then accumulates its statistics from plain gradients; valid range [0, +∞). Default: 0 (none).
// With t the global step before the step, g = g₁ for t < steps and the method's gradient g₁ + c for
// t ≥ steps. It replaces a previous WarmUp. w_t is the schedule StepWarmUp(steps) of a weight 1 (see WarmUp).
func (c *Config) ZeroWarmUp(steps int) *Config {
	c.checkWarmUp("ZeroWarmUp", ParamZeroWarmUp, steps)
	c.sched.warmUp, c.sched.zeroWarmUp = steps, true
	return c
}

func (c *Config) checkWarmUp(param, key string, steps int) {
	if steps < 0 {
		c.setErr(errors.Errorf("gr.%s: %s (steps) [%s] must be an integer in [0, +∞), got %d", c.name, param, key, steps))
	}
}

// warmUpWeight is the name of the variable (schedule.go) of w_t, the weight of the correction under WarmUp or
// ZeroWarmUp.
const warmUpWeight = "warmup_weight"

// warmUpFactor returns w_t as a scalar of the compute dtype — the schedule LinearWarmUp (WarmUp) or StepWarmUp
// (ZeroWarmUp) of a weight 1, written to its variable like a hyperparameter — or nil without warm-up.
func warmUpFactor(s *Step) *Node {
	steps := s.cfg.sched.warmUp
	if steps <= 0 {
		return nil
	}
	fn := LinearWarmUp(steps)
	if s.cfg.sched.zeroWarmUp {
		fn = StepWarmUp(steps)
	}
	return s.scheduled(warmUpWeight, s.Scalar(1), fn)
}
