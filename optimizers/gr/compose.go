package gr

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// prepare builds the step's combined gradient from the total loss L (every train.AddLoss term included) and
// stores it for the graph. accumulating says the graph is one of Trainer.AccumulateGradients.
func (r *Regularized) prepare(ctx *context.Context, g *graph.Graph, loss *Node, p *pass, accumulating bool) *prepared {
	cfg := r.resolve(ctx, g)
	if !loss.Shape().IsScalar() {
		panicf("gr.%s: the loss must be a scalar, got shape %s", cfg.name, loss.Shape())
	}
	if accumulating && cfg.every() > 1 {
		panicf("gr.%s: Every(%d) cannot be combined with Trainer.AccumulateGradients (the stored correction "+
			"would be refreshed by one micro-batch of the cycle only): use Every(1), or no accumulation",
			cfg.name, cfg.every())
	}
	s := newStep(cfg, ctx, g, loss, p)                       // 1. Groups.
	all := s.narrow(s.withPlain(cfg.combine(s)))             // 2.–5. The method, fallback, Every, WarmUp.
	prep := &prepared{step: s, all: all, grads: s.pick(all)} // 6. The guard (with apply).
	if cfg.guardOn() {
		prep.ok = s.finiteStep(all)
		if s.fallback != nil {
			addToCounter(ctx, g, s.own, MetricFallbacks, s.fallback)
		}
	}
	ctx.InAbsPath(graphScope).SetGraphParam(g, graphParamPrepared, prep)
	ctx.InAbsPath(graphScope).SetGraphParam(g, graphParamOwnScope, s.own) // For the metrics (metrics.go).
	return prep
}

// newStep returns the Step of a training graph: θ, g₁ and, with Groups, the groups' sub-steps.
func newStep(cfg *Config, ctx *context.Context, g *graph.Graph, loss *Node, p *pass) *Step {
	sg := &stepGraph{cfg: cfg, ctx: ctx, g: g, params: map[string]*Node{}, own: cfg.ownScope(ctx)}
	for v := range ctx.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) {
			sg.all = append(sg.all, v)
			sg.allTheta = append(sg.allTheta, v.ValueGraph(g))
			if cfg.acts(v) {
				sg.acting = append(sg.acting, len(sg.all)-1)
				sg.vars = append(sg.vars, v)
				sg.theta = append(sg.theta, v.ValueGraph(g))
			}
		}
	}
	if len(sg.vars) == 0 && len(sg.all) > 0 {
		panicf("gr.%s: Mask and Exclude (%s = %q) leave the method none of the %d trainable variables (e.g. %q): "+
			"nothing to regularize; use the base optimizer alone (gr_method=none) or a narrower pattern",
			cfg.name, ParamExclude, cfg.exclude, len(sg.all), sg.all[0].ScopeAndName())
	}
	s := newSubStep(sg, p, loss)
	if cfg.groupsOn() {
		s.needPass(fmt.Sprintf("Groups(%d) evaluates the model on each group of the batch", cfg.groups))
		s.splitGroups() // Sets s.groups and s.allGrad (groups.go).
	} else {
		s.allGrad = widen(graph.Gradient(loss, sg.allTheta...))
	}
	s.grad = s.pick(s.allGrad)
	return s
}

// pick returns the elements of x, one per trainable variable of the graph (stepGraph.all), that belong to the
// variables the method acts on (Step.Variables): x itself when it acts on all.
func (sg *stepGraph) pick(x []*Node) []*Node {
	if len(sg.acting) == len(sg.all) {
		return x
	}
	out := make([]*Node, len(sg.acting))
	for i, j := range sg.acting {
		out[i] = x[j]
	}
	return out
}

// withPlain returns the gradient for every trainable variable of the graph: the method's gradient grads for
// the variables it acts on, the plain g₁ for the others (Config.Mask).
func (s *Step) withPlain(grads []*Node) []*Node {
	if len(s.acting) == len(s.all) {
		return grads
	}
	out := slices.Clone(s.allGrad)
	for i, j := range s.acting {
		out[j] = grads[i]
	}
	return out
}

// newSubStep returns a Step of graph sg evaluated on p (the whole batch, or one group of it) with loss
// loss: the one constructor of the whole step and of the groups' steps. The caller sets its g₁.
func newSubStep(sg *stepGraph, p *pass, loss *Node) *Step {
	return &Step{stepGraph: sg, pass: p, loss: loss, pending: map[string][]*Node{}}
}

// combine returns the gradient handed to the base optimizer: the method's with the fallback, Every and
// WarmUp applied (steps 2–5 above); it writes the step's state and publishes the step's metrics.
func (c *Config) combine(s *Step) []*Node {
	s.warm = warmUpFactor(s)
	k := max(c.sched.every, 1)
	phase := phaseAscent
	if k > 1 {
		phase = phaseAny
		if s.pass != nil {
			phase = s.pass.phase
		}
	}
	store := k > 1 && c.reuse == nil // store the correction for the default reuse
	switch phase {
	case phaseAscent, phaseSkip:
		branch := PhaseFull
		if phase == phaseSkip {
			branch = PhaseReuse
		}
		g, corr := s.branch(branch, store)
		s.commit(s.pending, nil, nil)
		s.commitRNG(s.rng, nil, nil)
		s.publishMetrics(nil)
		return s.warmed(g, corr)
	}

	// Unknown phase: both branches, selected by t % k == 0.
	s.warnBothBranches() // Once per trainer (everywarn.go).
	gFull, corrFull := s.branch(PhaseFull, store)
	full, curvature, rngFull := s.pending, s.curvature, s.rng
	gReuse, corrReuse := s.branch(PhaseReuse, store)
	step := s.GlobalStep()
	ascent := graph.Equal(graph.ModScalar(step, k), graph.ScalarZero(s.g, step.DType()))
	s.commit(full, s.pending, ascent)
	s.commitRNG(rngFull, s.rng, ascent)
	if s.fallback != nil { // Counted when the full phase is the step's.
		s.fallback = graph.LogicalAnd(s.fallback, ascent)
	}
	s.curvature = curvature
	s.publishMetrics(ascent)
	if s.warm == nil {
		return whereVec(ascent, gFull, gReuse)
	}
	return s.warmed(nil, whereVec(ascent, s.correction(gFull, corrFull), s.correction(gReuse, corrReuse)))
}

// branch builds one phase of Every: the method's gradient with the fallback (PhaseFull) or its reuse
// computation (PhaseReuse), then the state updates. It returns the gradient g and, when known, the
// correction g − g₁ (nil otherwise). With store, the full phase writes the correction and the reuse phase
// returns g₁ + it.
func (s *Step) branch(phase Phase, store bool) (g, corr []*Node) {
	s.phase, s.pending, s.rng = phase, map[string][]*Node{}, nil
	switch {
	case phase == PhaseFull:
		g = s.withFallback(s.groupsGrad()) // Steps 2 and 3.
		if store {
			corr = grvec.SubVec(g, s.grad)
			s.pending[correctionScope] = corr
		}
	case s.cfg.reuse != nil:
		g = s.cfg.reuse(s)
	default:
		corr = varValues(s.g, s.stateVars(correctionScope))
		g = grvec.AddVec(s.grad, corr)
	}
	if s.cfg.update != nil {
		s.cfg.update(s)
	}
	return g, corr
}

// withFallback returns the method's gradient out where it is finite and g₁ elsewhere, when the guard is on,
// and sets s.fallback: the method's gradient was not finite while L and g₁ were.
func (s *Step) withFallback(out []*Node) []*Node {
	if !s.cfg.guardOn() {
		return out
	}
	t := &guarded{gOK: allFinite(out...), lossOK: allFinite(s.stepLoss()), g1OK: allFinite(s.grad...)}
	s.fallback = graph.LogicalAnd(graph.LogicalNot(t.gOK), graph.LogicalAnd(t.lossOK, t.g1OK))
	for i := range out {
		out[i] = graph.Where(t.gOK, out[i], s.grad[i])
	}
	t.out = slices.Clone(out)
	s.guarded = t
	return out
}

// guarded is what withFallback built: its output out (Where(gOK, g, g₁) per variable) and the finiteness
// tests of the method's gradient g, of L and of g₁.
type guarded struct {
	out               []*Node
	gOK, lossOK, g1OK *Node // Bool scalars
}

// finiteStep returns the guard's Bool scalar for the gradient all handed to the base optimizer: L and every
// element of all are finite. When all is withFallback's output unchanged (no Mask, no WarmUp, no narrowing,
// and Every's ascent steps or no Every), it is finite exactly where g or g₁ is, so the answer comes from the
// fallback's tests without another pass over the gradient.
func (s *Step) finiteStep(all []*Node) *Node {
	if t := s.guarded; t != nil && slices.Equal(all, t.out) {
		return graph.LogicalAnd(t.lossOK, graph.LogicalOr(t.gOK, t.g1OK))
	}
	return graph.LogicalAnd(allFinite(s.stepLoss()), allFinite(all...))
}

// correction returns corr, or g − g₁ when corr is nil.
func (s *Step) correction(g, corr []*Node) []*Node {
	if corr != nil {
		return corr
	}
	return grvec.SubVec(g, s.grad)
}

// warmed returns g without warm-up, else g₁ + w_t·c, with c the correction (from g when corr is nil).
func (s *Step) warmed(g, corr []*Node) []*Node {
	if s.warm == nil {
		return g
	}
	return grvec.AddVec(s.grad, grvec.ScaleVec(s.warm, s.correction(g, corr)))
}
