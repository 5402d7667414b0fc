package gr

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// DefaultScope is the default of Config.Scope: the scope, relative to the trainer's context, under which an
// optimizer of this package keeps its variables.
const DefaultScope = "gradreg"

// Scope is where an optimizer with the default scope keeps its variables when its trainer was built on the
// root context (the usual case): "/" + DefaultScope.
const Scope = context.ScopeSeparator + DefaultScope

// graphScope is the absolute scope of this package's graph parameters (per graph, not saved).
const graphScope = Scope

// graphParamPass is the graph parameter (in graphScope) that holds the *pass recorded by NewTrainer's model
// function for the graph being built.
const graphParamPass = "gr_pass"

// pass is what a second evaluation of the loss needs: the unwrapped model and loss functions and the
// arguments the trainer gave them for one graph.
type pass struct {
	ctx     *context.Context
	spec    any
	inputs  []*Node
	labels  []*Node
	modelFn train.ModelFn
	lossFn  train.LossFn
	phase   everyPhase     // graph of an Every(k) optimizer (every.go)
	trainer *train.Trainer // the trainer NewTrainer built
}

// NewTrainer has exactly the signature of train.NewTrainer and returns a plain *train.Trainer, so
// train.Loop, progress bars and checkpoints work unchanged. It records, for each graph the trainer builds,
// the model's inputs and labels, so that the finite-difference and SAM-family optimizers can evaluate the
// loss again at perturbed weights. With any other optimizer it behaves exactly like train.NewTrainer.
//
// With an optimizer of this package, the loss function it installs computes, in training graphs only, the
// method's combined gradient g when the trainer asks for the loss, and UpdateGraph applies it. Under
// Trainer.AccumulateGradients, which differentiates the loss itself, it returns instead the surrogate
//
//	stop_gradient(L_fn) + Σᵢ⟨stop_gradient(gᵢ), θᵢ − stop_gradient(θᵢ)⟩
//
// (L_fn the loss function's value; the train.AddLoss terms the model added are frozen likewise), whose
// value is the loss and whose gradient is g, so that the accumulated gradients are the method's
// (see Gradient accumulation in the package documentation). Evaluation graphs get the plain loss.
func NewTrainer(backend backends.Backend, ctx *context.Context,
	modelFn train.ModelFn, lossFn train.LossFn, optimizer optimizers.Interface,
	trainMetrics, evalMetrics []metrics.Interface) *train.Trainer {
	var trainer *train.Trainer
	reg, _ := optimizer.(*Regularized)
	recordingModelFn := func(ctx *context.Context, spec any, inputs []*Node) []*Node {
		g := inputs[0].Graph()
		spec, phase := unwrapSpec(spec) // The spec wrapped by stepSpec for EveryDataset or TrainStep (every.go).
		p := &pass{ctx: ctx, spec: spec, inputs: inputs, modelFn: modelFn, lossFn: lossFn, phase: phase,
			trainer: trainer}
		ctx.InAbsPath(graphScope).SetGraphParam(g, graphParamPass, p)
		return modelFn(ctx, spec, inputs)
	}
	var recordingLossFn train.LossFn
	if lossFn != nil {
		recordingLossFn = func(labels, predictions []*Node) *Node {
			g := anyGraph(labels, predictions)
			if g == nil {
				return lossFn(labels, predictions)
			}
			// The pass the model function recorded for this graph, in the context's graph parameters (the
			// trainer calls the model function, then the loss function, with its context).
			p := recordedPass(trainer.Context(), g)
			if p == nil {
				return lossFn(labels, predictions)
			}
			p.labels = labels
			loss := lossFn(labels, predictions)
			if reg == nil || !p.ctx.IsTraining(g) {
				return loss
			}
			return reg.prepareFromLoss(p, loss, trainer.NumAccumulatingSteps() > 0)
		}
	}
	trainer = train.NewTrainer(backend, ctx, recordingModelFn, recordingLossFn, optimizer, trainMetrics, evalMetrics)
	registerEveryTrainer(trainer, optimizer)
	watchStabilityLogs(trainer)
	return trainer
}

// anyGraph returns the graph of the first node found, or nil.
func anyGraph(lists ...[]*Node) *graph.Graph {
	for _, l := range lists {
		for _, n := range l {
			if n != nil {
				return n.Graph()
			}
		}
	}
	return nil
}

// recordedPass returns the pass NewTrainer recorded for g, or nil.
func recordedPass(ctx *context.Context, g *graph.Graph) *pass {
	p, found := ctx.InAbsPath(graphScope).GetGraphParam(g, graphParamPass)
	if !found {
		return nil
	}
	return p.(*pass)
}
