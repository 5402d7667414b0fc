package optimizers

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"
)

// Regularized is the optimizer returned by Config.Done: it computes the method's combined gradient and
// hands it to the base optimizer's UpdateGraphWithGradients.
//
// It does not implement train.OptimizeWithGradients, so Trainer.AccumulateGradients refuses it with an
// error: a GR step needs the model re-evaluated on the batch, which accumulated gradients cannot provide.
type Regularized struct {
	cfg *Config
}

var _ optimizers.Interface = (*Regularized)(nil)

// Method returns the method's name ("db", "forward", ...).
func (r *Regularized) Method() string { return r.cfg.name }

// Base returns the wrapped base optimizer.
func (r *Regularized) Base() optimizers.Interface { return r.cfg.base }

// Clear deletes the base optimizer's variables and gradreg's own (everything under Scope: the stored
// correction of Every, the metrics, the methods' state). It implements optimizers.Interface.
func (r *Regularized) Clear(ctx *context.Context) error {
	if err := r.cfg.base.Clear(ctx); err != nil {
		return err
	}
	return ctx.InAbsPath(Scope).DeleteVariablesInScope()
}

// UpdateGraph builds one training step: g₁ = ∇L(θ), the method's combined gradient, and the base
// optimizer's update with it. It implements optimizers.Interface.
func (r *Regularized) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *Node) {
	if !loss.Shape().IsScalar() {
		panicf("gr.%s: the loss must be a scalar, got shape %s", r.cfg.name, loss.Shape())
	}
	base, ok := r.cfg.base.(train.OptimizeWithGradients)
	if !ok {
		panicf("gr.%s: base optimizer %T does not implement UpdateGraphWithGradients "+
			"(train.OptimizeWithGradients); use a GoMLX optimizer such as SGD or Adam", r.cfg.name, r.cfg.base)
	}
	s := newStep(r.cfg, ctx, g, loss)
	grads := r.cfg.combine(s) // The method, with Every and WarmUp applied (every.go).
	base.UpdateGraphWithGradients(ctx, grads, loss.DType())
}

// Step is the graph of one training step while a method builds its combined gradient: a method is a
// function of *Step that returns the gradient handed to the base optimizer, one node per trainable
// variable, in the order of Theta (see NewMethod).
type Step struct {
	cfg   *Config
	ctx   *context.Context
	g     *graph.Graph
	loss  *Node               // L(θ), as the trainer built it
	vars  []*context.Variable // trainable variables used by the graph, in context order
	theta []*Node             // their values θ at the start of the step
	grad  []*Node             // g₁ = ∇L(θ)
	pass  *pass               // model and inputs recorded by NewTrainer; nil with train.NewTrainer

	params map[string]*Node // hyperparameters as scalars (Param), built once

	phase   Phase              // of the branch being built (every.go)
	pending map[string][]*Node // state written in this branch, by name (state.go)

	// Metrics (metrics.go): curvature is g₁ᵀHg₁ estimated by the first GradAt (or set by the method, e.g. DB).
	// nil: not measured in this step.
	curvature *Node

	warm *Node // w_t of WarmUp/ZeroWarmUp (warmup.go); nil without warm-up
}

func newStep(cfg *Config, ctx *context.Context, g *graph.Graph, loss *Node) *Step {
	s := &Step{cfg: cfg, ctx: ctx, g: g, loss: loss, pass: recordedPass(ctx, g), params: map[string]*Node{}}
	for v := range ctx.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) {
			s.vars = append(s.vars, v)
			s.theta = append(s.theta, v.ValueGraph(g))
		}
	}
	s.grad = graph.Gradient(loss, s.theta...)
	return s
}

// Theta returns θ, the values of the trainable variables at the start of the step, in context order.
func (s *Step) Theta() []*Node { return s.theta }

// Grad returns g₁ = ∇L(θ), one node per trainable variable, in the order of Theta.
func (s *Step) Grad() []*Node { return s.grad }

// Loss returns L(θ), the scalar loss of the step (with every train.AddLoss term).
func (s *Step) Loss() *Node { return s.loss }

// Gamma returns γ (ParamGamma) as a scalar (Param); it panics if the method has no γ.
func (s *Step) Gamma() *Node { return s.Param(ParamGamma) }

// Epsilon returns ε (ParamEpsilon) as a scalar (Param); it panics if the method has no ε.
func (s *Step) Epsilon() *Node { return s.Param(ParamEpsilon) }

// Param returns the method's float64 hyperparameter with context key key as a scalar of the compute dtype
// (the loss dtype, float32 for a half-precision loss). It panics if the method does not declare key.
func (s *Step) Param(key string) *Node {
	if n, found := s.params[key]; found {
		return n
	}
	n := s.Scalar(s.ParamFloat(key))
	s.params[key] = n
	return n
}

// ParamFloat returns the value of the method's float64 hyperparameter key; it panics if the method does not
// declare it or it is not a float64.
func (s *Step) ParamFloat(key string) float64 {
	v, ok := s.paramValue(key).(float64)
	if !ok {
		panicf("gr.%s: hyperparameter %q is a %T, not a float64", s.cfg.name, key, s.paramValue(key))
	}
	return v
}

// ParamBool returns the value of the method's bool hyperparameter key; it panics if the method does not
// declare it or it is not a bool.
func (s *Step) ParamBool(key string) bool {
	v, ok := s.paramValue(key).(bool)
	if !ok {
		panicf("gr.%s: hyperparameter %q is a %T, not a bool", s.cfg.name, key, s.paramValue(key))
	}
	return v
}

func (s *Step) paramValue(key string) any {
	v, found := s.cfg.values[key]
	if !found {
		panicf("gr.%s: the method reads hyperparameter %q but does not declare it (Config.Declare or Param)",
			s.cfg.name, key)
	}
	return v
}

// Scalar returns the constant v as a scalar of the compute dtype (the loss dtype, float32 for a
// half-precision loss): the dtype of Param, Dot and Norm.
func (s *Step) Scalar(v float64) *Node {
	return graph.Scalar(s.g, computeDType(s.loss.DType()), v)
}

// GlobalStep returns the trainer's global step before this step (an int64 scalar, 0 on the first step), as
// the base optimizer increments it afterwards.
func (s *Step) GlobalStep() *Node {
	return optimizers.GetGlobalStepVar(s.ctx.InAbsPath(context.RootScope)).ValueGraph(s.g)
}

// SetCurvature sets the curvature metric g₁ᵀHg₁ of this step (see Metrics), for a method that computes it
// better than the default estimate from its first GradAt (e.g. DoubleBackprop's exact value).
func (s *Step) SetCurvature(curvature *Node) { s.curvature = curvature }

// fdStep returns the finite-difference step h: ε, or ε/(‖g₁‖ + δ) with Config.Normalized.
func (s *Step) fdStep() *Node {
	if !s.ParamBool(ParamNormalized) {
		return s.Epsilon()
	}
	return graph.Div(s.Epsilon(), graph.AddScalar(Norm(s.grad), NormStabilizer))
}

// GradAt returns ∇L(θ + offset): the model and loss are built again, on the same inputs and labels, with
// the trainable variables at θ + offset and every other variable the graph uses at its value from the
// start of the step (so the random-number state, hence the dropout mask, repeats). Afterwards every
// variable is back where the first pass left it: trainable ones at θ, the others with the first pass's
// updates (e.g. batch-norm moving statistics), so the second pass changes nothing but the gradient.
//
// It needs the trainer built by NewTrainer, and panics with a message saying so otherwise.
func (s *Step) GradAt(offset []*Node) []*Node {
	if s.pass == nil {
		panicf("gr.%s evaluates the model a second time at perturbed weights and needs the "+
			"model function: build the trainer with gr.NewTrainer (same arguments as train.NewTrainer) "+
			"instead of train.NewTrainer", s.cfg.name)
	}
	ctx, g := s.pass.ctx, s.g

	// Values after the first pass, to restore at the end.
	after := make(map[*context.Variable]*Node)
	for v := range ctx.IterVariables() {
		if v.InUseByGraph(g) {
			after[v] = v.ValueGraph(g)
		}
	}
	for v := range after {
		if !v.Trainable {
			v.SetValueGraph(startValue(v, g))
		}
	}
	perturbed := Add(s.theta, offset)
	for i, v := range s.vars {
		v.SetValueGraph(perturbed[i])
	}

	// Second pass, with its own loss accumulator (train.AddLoss terms count again).
	trainerCtx := ctx.InAbsPath(train.TrainerAbsoluteScope)
	savedLoss, _ := trainerCtx.GetGraphParam(g, train.TrainerLossGraphParamKey)
	trainerCtx.SetGraphParam(g, train.TrainerLossGraphParamKey, graph.ScalarZero(g, s.loss.DType()))
	predictions := s.pass.modelFn(ctx.Reuse(), s.pass.spec, s.pass.inputs)
	if s.pass.lossFn != nil {
		train.AddLoss(ctx, s.pass.lossFn(s.pass.labels, predictions))
	}
	loss := train.GetLosses(ctx, g)
	trainerCtx.SetGraphParam(g, train.TrainerLossGraphParamKey, savedLoss)
	grads := graph.Gradient(loss, perturbed...)
	s.recordCurvature(offset, grads)

	// Restore.
	for v := range ctx.IterVariables() {
		if !v.InUseByGraph(g) {
			continue
		}
		if value, found := after[v]; found {
			v.SetValueGraph(value)
		} else {
			v.SetValueGraph(startValue(v, g)) // First used by the second pass: leave it unchanged.
		}
	}
	return grads
}

// startValue returns the value variable v had in graph g at the start of the step: its parameter node.
func startValue(v *context.Variable, g *graph.Graph) *Node {
	node := g.GetParameterByName(v.ParameterName())
	if node == nil {
		panicf("gradreg: no parameter node for variable %q in graph #%d", v.ScopeAndName(), g.GraphId())
	}
	return node
}

// fdCoefficient returns γ/h for the finite-difference step h.
func (s *Step) fdCoefficient(h *Node) *Node {
	return graph.Div(s.Gamma(), h)
}

// panicf panics with an error, as GoMLX's graph-building functions do.
func panicf(format string, args ...any) {
	panic(errors.Errorf(format, args...))
}
