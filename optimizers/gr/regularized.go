package gr

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/pkg/errors"
)

// Regularized is the optimizer returned by Config.Done: it computes the method's combined gradient and
// hands it to the base optimizer's UpdateGraphWithGradients.
//
// With a trainer built by NewTrainer, the combined gradient is computed by the loss function NewTrainer
// installs (in training graphs only), when the trainer asks for the loss; UpdateGraph then only applies it.
// It also implements train.OptimizeWithGradients, so Trainer.AccumulateGradients works (see Gradient accumulation in the package documentation).
type Regularized struct {
	cfg *Config          // as built (Config.Build), or as the context described it when FromContext ran; never changed
	ctx *context.Context // built by FromContext: the context it reads again for each training graph; nil otherwise
}

var (
	_ optimizers.Interface        = (*Regularized)(nil)
	_ train.OptimizeWithGradients = (*Regularized)(nil)
)

// Method returns the method's name ("DoubleBackprop", "ForwardDifference", "SAM", ...; "none" for the base
// optimizer alone built by FromContext). For an optimizer built by FromContext it is the method the context
// names now (see FromContext).
func (r *Regularized) Method() string { return r.current().name }

// Base returns the wrapped base optimizer.
func (r *Regularized) Base() optimizers.Interface { return r.cfg.base }

// current returns the configuration: for an optimizer built by FromContext, the one the context describes
// now (the one it described when FromContext ran if its values are invalid now); otherwise the one built.
// It is for the methods that run outside graph building; a training graph reads the context once (resolve).
func (r *Regularized) current() *Config {
	cfg, _ := r.fromContext()
	return cfg
}

// fromContext reads the context again for an optimizer built by FromContext and returns the configuration it
// describes, or the one of FromContext's time and the error.
func (r *Regularized) fromContext() (*Config, error) {
	if r.ctx == nil {
		return r.cfg, nil
	}
	cfg := configFromContext(r.ctx, r.cfg.base)
	if cfg.err != nil {
		return r.cfg, errors.WithMessagef(cfg.err, "gr.FromContext: the context of the optimizer it built "+
			"(method %q then) is invalid now", r.cfg.methodKey())
	}
	return cfg, nil
}

// graphParamConfig prefixes the graph parameter (in graphScope) that holds the configuration an optimizer
// resolved for a training graph.
const graphParamConfig = "gr_config_"

// resolve returns the configuration of training graph g, built once per graph and kept with it (the Step
// holds it): for an optimizer built by FromContext, the one the context describes when the graph is built
// (it panics with the error if the context's values are invalid then); otherwise the one built.
func (r *Regularized) resolve(ctx *context.Context, g *graph.Graph) *Config {
	if r.ctx == nil {
		return r.cfg
	}
	scoped, key := ctx.InAbsPath(graphScope), fmt.Sprintf("%s%p", graphParamConfig, r)
	if cfg, found := scoped.GetGraphParam(g, key); found && cfg != nil {
		return cfg.(*Config)
	}
	cfg, err := r.fromContext()
	if err != nil {
		panic(err)
	}
	scoped.SetGraphParam(g, key, cfg)
	return cfg
}

// Clear deletes the base optimizer's variables and this optimizer's own (everything under its Scope in
// ctx: the stored correction of Every, the methods' state, the metrics, the guard's counters). It implements
// optimizers.Interface.
func (r *Regularized) Clear(ctx *context.Context) error {
	if err := r.cfg.base.Clear(ctx); err != nil {
		return err
	}
	return ctx.In(r.cfg.scopeName()).DeleteVariablesInScope()
}

// UpdateGraph builds one training step: g₁ = ∇L(θ), the method's combined gradient, and the base
// optimizer's update with it, guarded by GuardNonFinite. It implements optimizers.Interface.
//
// With a trainer built by NewTrainer the gradient was already computed by NewTrainer's loss function for
// this graph, and is applied as is; with plain train.NewTrainer (methods that do not re-evaluate the model,
// such as DoubleBackprop) it is computed here from loss.
func (r *Regularized) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *Node) {
	if r.resolve(ctx, g).none() {
		r.cfg.base.UpdateGraph(ctx, g, loss)
		return
	}
	prep := preparedFor(ctx, g)
	if prep == nil {
		prep = r.prepare(ctx, g, loss, recordedPass(ctx, g), false)
	}
	r.apply(ctx, g, prep, prep.all, prep.ok, loss.DType())
	r.watchStability(ctx, g, prep)
}

// baseWithGradients returns the base optimizer as a train.OptimizeWithGradients, or panics naming it.
func (r *Regularized) baseWithGradients() train.OptimizeWithGradients {
	base, ok := r.cfg.base.(train.OptimizeWithGradients)
	if !ok {
		panicf("gr.%s: base optimizer %T does not implement UpdateGraphWithGradients "+
			"(train.OptimizeWithGradients); use a GoMLX optimizer such as SGD or Adam", r.cfg.name, r.cfg.base)
	}
	return base
}

// prepared is the combined gradient of one training graph, computed by prepare.
type prepared struct {
	step  *Step
	all   []*Node // the gradient handed to the base optimizer, one per trainable variable (stepGraph.all)
	grads []*Node // its elements of the variables the method acts on, in the order of step.vars
	ok    *Node   // Bool scalar: L and the gradient are finite (GuardNonFinite); nil when the guard is off
}

// graphParamPrepared is the graph parameter (in graphScope) that holds the *prepared of a training graph.
const graphParamPrepared = "gr_prepared"

// preparedFor returns what prepare stored for graph g, or nil.
func preparedFor(ctx *context.Context, g *graph.Graph) *prepared {
	p, found := ctx.InAbsPath(graphScope).GetGraphParam(g, graphParamPrepared)
	if !found || p == nil {
		return nil
	}
	return p.(*prepared)
}

// apply hands grads to the base optimizer and, with GuardNonFinite, keeps every variable the step changed
// at its pre-step value when the step is not finite (guard.go).
func (r *Regularized) apply(ctx *context.Context, g *graph.Graph, prep *prepared, grads []*Node, ok *Node, lossDType dtypes.DType) {
	r.baseWithGradients().UpdateGraphWithGradients(ctx, grads, lossDType)
	if ok != nil {
		guardStep(ctx, g, prep.step.own, ok)
	}
}

// Step is the graph of one training step while a method builds its combined gradient: a method is a
// function of *Step that returns the gradient handed to the base optimizer, one node per variable of
// Variables (the trainable variables the method acts on, see Config.Mask), in the order of Theta (see
// NewMethod).
type Step struct {
	*stepGraph

	loss    *Node   // L(θ), as the trainer built it (with Groups: of the whole batch; of a group's sub-step: Lₖ)
	grad    []*Node // g₁ = ∇L(θ) of the variables the method acts on (with Groups: the mean of the groups' g₁ᵏ; of a group's sub-step: g₁ᵏ)
	allGrad []*Node // g₁ of every trainable variable (stepGraph.all)
	sq      *Node   // ‖g₁‖², built once by gradSquaredNorm
	pass    *pass   // model and inputs recorded by NewTrainer (of the group for a sub-step); nil with train.NewTrainer

	phase   Phase              // of the branch being built (every.go)
	pending map[string][]*Node // state written in this branch, by name (state.go)

	// Metrics (metrics.go): curvature is g₁ᵀHg₁ estimated by the first GradAlong (or set by the method, e.g. DB).
	// nil: not measured in this step.
	curvature *Node

	warm *Node // w_t of WarmUp/ZeroWarmUp (warmup.go); nil without warm-up

	groups    []*Step  // with Groups(m > 1): one sub-step per group of the batch (groups.go)
	groupLoss *Node    // with Groups(m > 1): the mean of the groups' losses
	fallback  *Node    // Bool scalar: the method's gradient was not finite and g₁ was used (compose.go)
	guarded   *guarded // the fallback's output and finiteness tests, for the guard (compose.go)
}

// stepGraph is what the Step of a training graph and its groups' sub-steps share (compose.go).
type stepGraph struct {
	cfg      *Config
	ctx      *context.Context
	g        *graph.Graph
	vars     []*context.Variable // trainable variables the method acts on (Config.Mask), in context order
	theta    []*Node             // their values θ at the start of the step
	all      []*context.Variable // every trainable variable the graph uses, in context order
	allTheta []*Node             // their values at the start of the step
	acting   []int               // the index in all of each element of vars
	params   map[string]*Node    // hyperparameters as scalars (Param), built once
	own      string              // absolute scope of the optimizer's variables (Config.Scope)

	rngVar *context.Variable // the context's random-number state, once a draw needs it (rng.go)
	rng    *Node             // its state after the last draw of the phase being built; nil: no draw yet
}

// Theta returns θ, the values at the start of the step of the trainable variables the method acts on, one node
// per variable of Variables, in that order (the context's order).
func (s *Step) Theta() []*Node { return s.theta }

// Grad returns g₁ = ∇L(θ), one node per variable of Variables, in the order of Theta.
func (s *Step) Grad() []*Node { return s.grad }

// Loss returns L(θ), the scalar loss of the step (with every train.AddLoss term).
func (s *Step) Loss() *Node { return s.loss }

// Param returns the method's float64 hyperparameter with context key key for this step, as a scalar of the
// compute dtype (the loss dtype, float32 for a half-precision loss): the configured value, or with
// Config.Schedule the schedule's value for this step. The value is also written to the hyperparameter's
// variable (see Hyperparameters in variables in the package documentation), so checkpoints save it and other graph code can read it. It panics if the method does
// not declare key.
func (s *Step) Param(key string) *Node {
	if n, found := s.params[key]; found {
		return n
	}
	n := s.scheduled(key, s.Scalar(s.ParamFloat(key)), s.cfg.schedules[key])
	s.params[key] = n
	return n
}

// ParamFloat returns the value of the method's float64 hyperparameter key; it panics if the method does not
// declare it or it is not a float64.
func (s *Step) ParamFloat(key string) float64 { return paramAs[float64](s, key) }

// ParamBool returns the value of the method's bool hyperparameter key; it panics if the method does not
// declare it or it is not a bool.
func (s *Step) ParamBool(key string) bool { return paramAs[bool](s, key) }

// ParamInt returns the value of the method's int hyperparameter key (declared with an int Default); it panics
// if the method does not declare it or it is not an int.
func (s *Step) ParamInt(key string) int { return paramAs[int](s, key) }

// ParamString returns the value of the method's string hyperparameter key; it panics if the method does not
// declare it or it is not a string.
func (s *Step) ParamString(key string) string { return paramAs[string](s, key) }

// paramAs returns the value of hyperparameter key as a T, or panics naming its type.
func paramAs[T any](s *Step, key string) T {
	v, ok := s.paramValue(key).(T)
	if !ok {
		panicf("gr.%s: hyperparameter %q is a %T, not a %T", s.cfg.name, key, s.paramValue(key), v)
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
// half-precision loss): the dtype of Param, InnerProduct and GlobalNorm.
func (s *Step) Scalar(v float64) *Node {
	return graph.Scalar(s.g, computeDType(s.loss.DType()), v)
}

// GlobalStep returns the trainer's global step before this step (an int64 scalar, 0 on the first step): the
// variable optimizers.GetGlobalStepVar of the trainer's context, which the base optimizer increments
// afterwards.
func (s *Step) GlobalStep() *Node {
	return optimizers.GetGlobalStepVar(s.ctx).ValueGraph(s.g)
}

// SetCurvature sets the curvature metric g₁ᵀHg₁ of this step (see Metrics), for a method that computes it
// better than the estimate from its first GradAlong (e.g. DoubleBackprop's exact value), or that perturbs
// along another direction (GradAt) and knows g₁ᵀHg₁ otherwise.
func (s *Step) SetCurvature(curvature *Node) { s.curvature = curvature }

// fdStep returns the finite-difference step h: ε, or ε/(‖g₁‖ + δ) with Config.Normalized.
func (s *Step) fdStep() *Node {
	if !s.ParamBool(ParamNormalized) {
		return s.Param(ParamEpsilon)
	}
	return graph.Div(s.Param(ParamEpsilon), graph.AddScalar(graph.Sqrt(s.gradSquaredNorm()), NormStabilizer))
}

// gradSquaredNorm returns ‖g₁‖² = grvec.InnerProduct(g₁, g₁), built once per step: the normalized finite
// difference, the curvature metric, the published metrics and the stability check all use it (the pure-Go
// backend would otherwise run one pass over the gradient for each).
func (s *Step) gradSquaredNorm() *Node {
	if s.sq == nil {
		s.sq = grvec.InnerProduct(s.grad, s.grad)
	}
	return s.sq
}

// GradAt returns ∇L(θ + offset): the model and loss are built again, on the same inputs and labels, with
// the trainable variables at θ + offset and every other variable the graph uses at its value from the
// start of the step (so the random-number state, hence the dropout mask, repeats). Afterwards every
// variable is back where the first pass left it: trainable ones at θ, the others with the first pass's
// updates (e.g. batch-norm moving statistics), so the second pass changes nothing but the gradient.
// With Groups, a group's GradAt evaluates that group of the batch only. With low-precision variables
// θ + offset is summed in float32 and rounded once, and the gradient is returned in float32 (see Low-precision variables in the package documentation).
//
// GradAt gives no curvature metric (see Metrics): a method whose offset is a multiple of g₁ calls GradAlong
// instead, and one that knows g₁ᵀHg₁ otherwise sets it with SetCurvature.
//
// It needs the trainer built by NewTrainer, and panics with a message saying so otherwise.
func (s *Step) GradAt(offset []*Node) []*Node {
	s.needPass("it evaluates the model a second time at perturbed weights")
	perturbed := s.perturb(offset)
	loss := s.evaluate(s.pass, perturbed)
	return widen(graph.Gradient(loss, perturbed...))
}

// GradAlong returns ∇L(θ + h·g₁) for the scalar h (any sign, 0 included): GradAt with the offset h·g₁ along
// the gradient. The first GradAlong of the full phase also gives the curvature metric g₁ᵀHg₁ (see Metrics):
// g₁ᵀ[∇L(θ + hg₁) − g₁]/h, 0 when h·‖g₁‖² = 0.
func (s *Step) GradAlong(h *Node) []*Node {
	offset := grvec.ScaleVec(h, s.grad)
	grads := s.GradAt(offset)
	s.recordCurvature(h, grads)
	return grads
}

// needPass panics, saying why (what) the step needs the model function, when the trainer was not built by
// NewTrainer.
func (s *Step) needPass(what string) {
	if s.pass == nil {
		panicf("gr.%s: %s and needs the model function: build the trainer with gr.NewTrainer (same "+
			"arguments as train.NewTrainer) instead of train.NewTrainer", s.cfg.name, what)
	}
}

// evaluate builds the model and loss of p again, with the trainable variables at values and every other
// variable the graph uses at its value from the start of the step, and returns the loss with its own
// train.AddLoss terms. Afterwards every variable is back where it was before the call.
func (s *Step) evaluate(p *pass, values []*Node) *Node {
	ctx, g := p.ctx, s.g

	// Values before the call, to restore at the end.
	before := make(map[*context.Variable]*Node)
	for v := range ctx.IterVariables() {
		if v.InUseByGraph(g) {
			before[v] = v.ValueGraph(g)
		}
	}
	for v := range before {
		if !v.Trainable {
			v.SetValueGraph(s.startValue(v))
		}
	}
	for i, v := range s.vars {
		v.SetValueGraph(values[i])
	}

	// Own loss accumulator (train.AddLoss terms count again).
	trainerCtx := ctx.InAbsPath(train.TrainerAbsoluteScope)
	savedLoss, found := trainerCtx.GetGraphParam(g, train.TrainerLossGraphParamKey)
	if !found || savedLoss == nil {
		// No term yet (NewTrainer's loss function runs before the trainer adds the base loss): the trainer
		// will add its terms to zero.
		savedLoss = graph.ScalarZero(g, s.loss.DType())
	}
	trainerCtx.SetGraphParam(g, train.TrainerLossGraphParamKey, graph.ScalarZero(g, s.loss.DType()))
	predictions := p.modelFn(ctx.Reuse(), p.spec, p.inputs)
	if p.lossFn != nil {
		train.AddLoss(ctx, p.lossFn(p.labels, predictions))
	}
	loss := train.GetLosses(ctx, g)
	trainerCtx.SetGraphParam(g, train.TrainerLossGraphParamKey, savedLoss)

	// Restore.
	for v := range ctx.IterVariables() {
		if !v.InUseByGraph(g) {
			continue
		}
		if value, found := before[v]; found {
			v.SetValueGraph(value)
		} else {
			v.SetValueGraph(s.startValue(v)) // First used by this pass: leave it unchanged.
		}
	}
	return loss
}

// startValue returns the value variable v had at the start of the step: its parameter node.
func (s *Step) startValue(v *context.Variable) *Node {
	node := s.g.GetParameterByName(v.ParameterName())
	if node == nil {
		panicf("gr.%s: no parameter node for variable %q in graph #%d", s.cfg.name, v.ScopeAndName(), s.g.GraphId())
	}
	return node
}

// fdCoefficient returns γ/h for the finite-difference step h.
func (s *Step) fdCoefficient(h *Node) *Node {
	return graph.Div(s.Param(ParamGamma), h)
}

// panicf panics with an error, as GoMLX's graph-building functions do.
func panicf(format string, args ...any) {
	panic(errors.Errorf(format, args...))
}
