package gr

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

// guardCycleVar is the name of the guard's cycle variable (cycleVar).
const guardCycleVar = "cycle_not_finite"

// prepareFromLoss is the body of NewTrainer's loss function in a training graph: fnLoss is the loss
// function's value. It computes the combined gradient (prepare) and returns the loss to give the trainer.
func (r *Regularized) prepareFromLoss(p *pass, fnLoss *Node, accumulating bool) *Node {
	g := fnLoss.Graph()
	if r.resolve(p.ctx, g).none() {
		return fnLoss
	}
	if !fnLoss.Shape().IsScalar() {
		fnLoss = graph.ReduceAllMean(fnLoss) // As train.Trainer does.
	}
	trainerCtx := p.ctx.InAbsPath(train.TrainerAbsoluteScope)
	total := fnLoss
	var terms *Node
	if t, found := trainerCtx.GetGraphParam(g, train.TrainerLossGraphParamKey); found && t != nil {
		terms = t.(*Node)
		total = graph.Add(fnLoss, terms) // As train.AddLoss will.
	}
	prep := r.prepare(p.ctx, g, total, p, accumulating)
	if prep.step.groupLoss != nil {
		// Groups: report the mean of the groups' losses (the trainer adds the terms back), so that the trainer's
		// own evaluation on the whole batch is not needed.
		fnLoss = prep.step.groupLoss
		if terms != nil {
			fnLoss = graph.Sub(fnLoss, terms)
		}
	}
	if !accumulating {
		return fnLoss
	}

	grads := prep.all
	if prep.ok != nil {
		grads = make([]*Node, len(prep.all))
		for i, gi := range prep.all {
			grads[i] = graph.Where(prep.ok, gi, graph.ZerosLike(gi))
		}
		guardVariables(p.ctx, g, prep.ok) // The model's own updates (e.g. batch-norm statistics).
		v := cycleVar(p.ctx, prep.step.own)
		v.SetValueGraph(graph.LogicalOr(v.ValueGraph(g), graph.LogicalNot(prep.ok)))
	}
	if terms != nil {
		trainerCtx.SetGraphParam(g, train.TrainerLossGraphParamKey, graph.StopGradient(terms))
	}
	surrogate := graph.StopGradient(fnLoss)
	for i, theta := range prep.step.allTheta {
		d := graph.Sub(theta, graph.StopGradient(theta))
		term := graph.ReduceAllSum(graph.Mul(graph.StopGradient(grads[i]), d))
		surrogate = graph.Add(surrogate, castTo(term, surrogate))
	}
	return surrogate
}

// cycleVar is the Bool variable that marks an accumulation cycle with a non-finite micro-batch.
func cycleVar(ctx *context.Context, own string) *context.Variable {
	return ownVar(ctx, own+"/guard", guardCycleVar, shapes.Make(dtypes.Bool))
}

// UpdateGraphWithGradients applies gradients computed elsewhere — by Trainer.AccumulateGradients, from the
// surrogate loss of NewTrainer — with the base optimizer, guarded by GuardNonFinite. It implements
// train.OptimizeWithGradients. It panics, with an error saying what to do, in a graph whose loss was not
// prepared by NewTrainer's loss function (e.g. a trainer built by train.NewTrainer): the gradients would be
// the plain ∇L and the step silently the base optimizer's.
func (r *Regularized) UpdateGraphWithGradients(ctx *context.Context, grads []*Node, lossDType dtypes.DType) {
	if len(grads) == 0 {
		panicf("gr.%s: UpdateGraphWithGradients got no gradients", r.cfg.name)
	}
	g := grads[0].Graph()
	if r.resolve(ctx, g).none() {
		r.baseWithGradients().UpdateGraphWithGradients(ctx, grads, lossDType)
		return
	}
	prep := preparedFor(ctx, g)
	if prep == nil {
		panicf("gr.%s: UpdateGraphWithGradients (used by Trainer.AccumulateGradients) got gradients that "+
			"gr.NewTrainer's loss function did not prepare, so they are plain ∇L and the step would silently be "+
			"the base optimizer's: build the trainer with gr.NewTrainer (same arguments as train.NewTrainer), "+
			"with a loss function", r.cfg.name)
	}
	var ok *Node
	if prep.ok != nil {
		v := cycleVar(ctx, prep.step.own)
		ok = graph.LogicalAnd(graph.LogicalNot(v.ValueGraph(g)), allFinite(grads...))
	}
	r.apply(ctx, g, prep, grads, ok, lossDType)
	if ok != nil {
		cycleVar(ctx, prep.step.own).SetValueGraph(graph.Const(g, false)) // Next cycle.
	}
}
