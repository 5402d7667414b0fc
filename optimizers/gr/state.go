package gr

import (
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/pkg/errors"
)

// State returns the method's state name: one tensor per variable of Variables, in the order of Theta, shaped like
// it, of its compute dtype (float32 for half-precision variables), zero before the first SetState. It is the
// value written by SetState earlier in this step, else the value at the start of the step.
//
// The state is kept in non-trainable variables under Config.Scope + "/state/" + name (memory: one copy of the
// parameters per name), so checkpoints save it and a resumed run continues it; Regularized.Clear deletes it.
// Under Every(k) a write in either phase is kept only when that phase is the step's (the both-branches graph
// selects it), like the stored correction.
func (s *Step) State(name string) []*Node {
	scope := stateScope(name)
	if values, found := s.pending[scope]; found {
		return values
	}
	return varValues(s.g, s.stateVars(scope))
}

// SetState sets the method's state name to values (one tensor per variable of Variables, converted to the
// state's dtype); the variables are written at the end of the step.
func (s *Step) SetState(name string, values []*Node) {
	scope := stateScope(name)
	vars := s.stateVars(scope)
	if len(values) != len(vars) {
		panicf("gr.%s: SetState(%q) got %d tensors, want one per trainable variable (%d)",
			s.cfg.name, name, len(values), len(vars))
	}
	out := make([]*Node, len(values))
	for i, v := range vars {
		out[i] = graph.ConvertDType(values[i], v.Shape().DType)
	}
	s.pending[scope] = out
}

// stateScope is the scope of the variables of state name, relative to the optimizer's scope.
func stateScope(name string) string { return "state/" + name }

// commit writes the state of the step: written, by scope, when the step runs one phase; with ascent (a Bool
// scalar, the both-branches graph of Every) the values of the full phase where ascent is true and those of
// the reuse phase elsewhere, each phase keeping the old value of a state it did not write.
func (s *Step) commit(full, reuse map[string][]*Node, ascent *Node) {
	for scope, values := range full {
		vars := s.stateVars(scope)
		if ascent != nil {
			other, found := reuse[scope]
			if !found {
				other = varValues(s.g, vars)
			}
			values = whereVec(ascent, values, other)
		}
		for i, v := range vars {
			v.SetValueGraph(values[i])
		}
	}
	if ascent == nil {
		return
	}
	for scope, values := range reuse {
		if _, found := full[scope]; found {
			continue
		}
		vars := s.stateVars(scope)
		values = whereVec(ascent, varValues(s.g, vars), values)
		for i, v := range vars {
			v.SetValueGraph(values[i])
		}
	}
}

// whereVec returns x where cond (a Bool scalar) is true, else y.
func whereVec(cond *Node, x, y []*Node) []*Node {
	out := make([]*Node, len(x))
	for i := range x {
		out[i] = graph.Where(cond, x[i], y[i])
	}
	return out
}

// varValues returns the values of vars in graph g.
func varValues(g *graph.Graph, vars []*context.Variable) []*Node {
	out := make([]*Node, len(vars))
	for i, v := range vars {
		out[i] = v.ValueGraph(g)
	}
	return out
}

// stateVars returns non-trainable variables under <the optimizer's scope>/scope/<the variable's scope>, one
// per trainable variable, same name and shape, of its compute dtype, initialized to zero.
func (s *Step) stateVars(scope string) []*context.Variable {
	out := make([]*context.Variable, len(s.vars))
	for i, v := range s.vars {
		sc := s.own + context.ScopeSeparator + scope
		if v.Scope() != context.RootScope {
			sc += v.Scope()
		}
		shape := v.Shape().Clone()
		shape.DType = computeDType(shape.DType)
		out[i] = ownVar(s.ctx, sc, v.Name(), shape)
	}
	return out
}

// ownVar returns this package's non-trainable variable name in the absolute scope, zeros of shape when new:
// the Every correction, method state, metrics and the guard's counters (checkpoints save them all).
func ownVar(ctx *context.Context, scope, name string, shape shapes.Shape) *context.Variable {
	return ctx.InAbsPath(scope).Checked(false).VariableWithValue(name, tensors.FromShape(shape)).SetTrainable(false)
}

// Scope sets the scope, relative to the context the trainer gives the optimizer (usually the root context), under
// which the optimizer keeps its variables: the stored correction of Every (<scope>/every/...), the methods'
// state (<scope>/state/<name>/...), the metrics (<scope>/metrics) and the guard's counters (<scope>/guard).
// Default: DefaultScope ("gradreg", so "/gradreg" for a trainer on the root context). Two optimizers of this
// package whose trainers share one context scope need different names (e.g. "gradreg_gen" and
// "gradreg_disc" for a GAN's two trainers), as GoMLX's Adam needs AdamConfig.Scope there; trainers built on
// different scopes of one context (ctx.In("gen"), ctx.In("disc")) are apart with the default. name must be one
// scope element: not empty, without "/".
func (c *Config) Scope(name string) *Config {
	if name == "" || strings.Contains(name, context.ScopeSeparator) {
		c.setErr(errors.Errorf("gr.%s: Scope (name) must be one non-empty scope element without %q, got %q",
			c.name, context.ScopeSeparator, name))
	}
	c.scope = name
	return c
}

// Scope returns the scope name of Config.Scope (DefaultScope when not set).
func (r *Regularized) Scope() string { return r.cfg.scopeName() }

func (c *Config) scopeName() string {
	if c.scope == "" {
		return DefaultScope
	}
	return c.scope
}

// ownScope returns the absolute scope of the optimizer's variables for a trainer on ctx.
func (c *Config) ownScope(ctx *context.Context) string { return ctx.In(c.scopeName()).Scope() }

// metricsScope returns the absolute scope of the variables of the optimizer that built graph g (published by
// prepare), or of an optimizer with the default scope when there is none (the metrics then stay at 0).
func metricsScope(ctx *context.Context, g *graph.Graph) string {
	if own, found := ctx.InAbsPath(graphScope).GetGraphParam(g, graphParamOwnScope); found && own != nil {
		return own.(string)
	}
	return ctx.In(DefaultScope).Scope()
}

// graphParamOwnScope is the graph parameter (in graphScope) that holds the absolute scope of the variables of
// the optimizer that built the graph.
const graphParamOwnScope = "gr_own_scope"
