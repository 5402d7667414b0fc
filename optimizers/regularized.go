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

// Clear deletes the base optimizer's variables. It implements optimizers.Interface.
func (r *Regularized) Clear(ctx *context.Context) error { return r.cfg.base.Clear(ctx) }

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
// variable, in the order of Theta.
type Step struct {
	cfg   *Config
	ctx   *context.Context
	g     *graph.Graph
	loss  *Node               // L(θ), as the trainer built it
	vars  []*context.Variable // trainable variables used by the graph, in context order
	theta []*Node             // their values θ at the start of the step
	grad  []*Node             // g₁ = ∇L(θ)
	pass  *pass               // model and inputs recorded by NewTrainer; nil with train.NewTrainer

	gamma, epsilon *Node // γ and ε as scalars of the loss dtype

	// Metrics (metrics.go): curvature is g₁ᵀHg₁ estimated by the first GradAt (or set by the method, e.g. DB);
	// penalty may be set by a method whose penalty is not (γ/2)‖g₁‖². nil: not measured in this step.
	curvature, penalty *Node

	warm *Node // w_t of WarmUp/ZeroWarmUp (warmup.go); nil without warm-up
}

func newStep(cfg *Config, ctx *context.Context, g *graph.Graph, loss *Node) *Step {
	s := &Step{cfg: cfg, ctx: ctx, g: g, loss: loss, pass: recordedPass(ctx, g)}
	if cfg.needsModel && s.pass == nil {
		panicf("gr.%s evaluates the model a second time at perturbed weights and needs the "+
			"model function: build the trainer with gr.NewTrainer (same arguments as train.NewTrainer) "+
			"instead of train.NewTrainer", cfg.name)
	}
	for v := range ctx.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) {
			s.vars = append(s.vars, v)
			s.theta = append(s.theta, v.ValueGraph(g))
		}
	}
	s.grad = graph.Gradient(loss, s.theta...)
	s.gamma = s.scalar(cfg.gamma)
	s.epsilon = s.scalar(cfg.epsilon)
	return s
}

// Theta returns θ, the values of the trainable variables at the start of the step, in context order.
func (s *Step) Theta() []*Node { return s.theta }

// Grad returns g₁ = ∇L(θ), one node per trainable variable, in the order of Theta.
func (s *Step) Grad() []*Node { return s.grad }

// Loss returns L(θ), the scalar loss of the step (with every train.AddLoss term).
func (s *Step) Loss() *Node { return s.loss }

// Gamma returns γ as a scalar of the loss dtype.
func (s *Step) Gamma() *Node { return s.gamma }

// Epsilon returns ε as a scalar of the loss dtype.
func (s *Step) Epsilon() *Node { return s.epsilon }

// scalar returns a constant of the loss dtype.
func (s *Step) scalar(v float64) *Node {
	return graph.Scalar(s.g, s.loss.DType(), v)
}

// fdStep returns the finite-difference step h: ε, or ε/(‖g₁‖ + δ) with Config.Normalized.
func (s *Step) fdStep() *Node {
	if !s.cfg.normalized {
		return s.epsilon
	}
	return graph.Div(s.epsilon, graph.AddScalar(norm(s.loss, s.grad), NormStabilizer))
}

// GradAt returns ∇L(θ + offset): the model and loss are built again, on the same inputs and labels, with
// the trainable variables at θ + offset and every other variable the graph uses at its value from the
// start of the step (so the random-number state, hence the dropout mask, repeats). Afterwards every
// variable is back where the first pass left it: trainable ones at θ, the others with the first pass's
// updates (e.g. batch-norm moving statistics), so the second pass changes nothing but the gradient.
func (s *Step) GradAt(offset []*Node) []*Node {
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
	perturbed := add(s.theta, offset)
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
	return graph.Div(s.gamma, h)
}

// panicf panics with an error, as GoMLX's graph-building functions do.
func panicf(format string, args ...any) {
	panic(errors.Errorf(format, args...))
}
