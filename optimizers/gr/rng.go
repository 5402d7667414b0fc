package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// RandomNormal returns independent draws from the standard normal distribution N(0, 1), one tensor per
// variable of Variables, shaped like it, in its compute dtype (float32 for half-precision variables), in the
// order of Theta: e.g. the random perturbation of RWP. RandomUniform draws from [0, 1) likewise.
//
// The draws come from the context's random-number generator (its state variable "#rngState" in the root
// scope, the one GoMLX's dropout and ctx.RandomNormal use), so they are:
//   - reproducible from the context's seed (ctx.SetRNGStateFromSeed or context.ParamInitialSeed), and the
//     state is saved by checkpoints, so a resumed run draws what the uninterrupted one would have;
//   - different in every call, in every group of Groups(m) (the groups draw one after the other) and in
//     every micro-batch of gradient accumulation (each advances the saved state);
//   - the same numbers wherever the method uses the returned nodes: a draw is made once per call, and the
//     second evaluation of GradAt does not change the generator's state (dropout in it repeats the first
//     pass's mask, and the method's draws are taken from the state the first pass left).
//
// Under Every(k) the state advances by the draws of the phase the step runs: the graph that computes both
// phases and selects one (without EveryDataset) keeps the selected phase's state, so both ways give the same
// trajectory. With GuardNonFinite a step that writes nothing leaves the state unchanged too.
func (s *Step) RandomNormal() []*Node { return s.random(graph.RandomNormal) }

// RandomUniform returns independent draws from the uniform distribution on [0, 1), one tensor per variable
// of Variables, like RandomNormal.
func (s *Step) RandomUniform() []*Node { return s.random(graph.RandomUniform) }

// random draws one tensor per trainable variable with draw, chaining the generator's state.
func (s *Step) random(draw func(state *Node, shape shapes.Shape) (newState, values *Node)) []*Node {
	state := s.rngState()
	out := make([]*Node, len(s.vars))
	for i, v := range s.vars {
		shape := v.Shape().Clone()
		shape.DType = computeDType(shape.DType)
		state, out[i] = draw(state, shape)
	}
	s.rng = state
	return out
}

// rngState returns the generator's state for the next draw of this phase: the last draw's new state, or
// the context's state variable as the first pass left it (created and seeded as GoMLX does if the model
// draws nothing).
func (s *Step) rngState() *Node {
	if s.rng != nil {
		return s.rng
	}
	if s.rngVar == nil {
		root := s.ctx.InAbsPath(context.RootScope)
		v := root.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
		if v == nil || !v.HasValue() {
			if err := root.ResetRNGState(); err != nil {
				panicf("gr.%s: creating the context's random-number state: %v", s.cfg.name, err)
			}
			v = root.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
		}
		// GoMLX v0.26.0 marks a variable loaded from a checkpoint on first access as trainable, this one too.
		s.rngVar = v.SetTrainable(false)
	}
	return s.rngVar.ValueGraph(s.g)
}

// commitRNG writes the generator's state after the step's draws: full's (a phase's last state, nil if it
// drew nothing) when ascent is nil; with ascent (the both-phases graph of Every) full's where ascent is true
// and reuse's elsewhere.
func (s *Step) commitRNG(full, reuse, ascent *Node) {
	if full == nil && reuse == nil {
		return
	}
	if ascent == nil {
		s.rngVar.SetValueGraph(full)
		return
	}
	old := s.rngVar.ValueGraph(s.g)
	if full == nil {
		full = old
	}
	if reuse == nil {
		reuse = old
	}
	s.rngVar.SetValueGraph(graph.Where(ascent, full, reuse))
}
