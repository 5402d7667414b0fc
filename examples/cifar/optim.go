package main

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers/cosineschedule"
)

// sgdMomentum is SGD with heavy-ball momentum and weight decay, PyTorch style (the paper's setting):
//
//	v ← μ·v + (g + λ·θ);  θ ← θ − lr·v
//
// with the learning rate following a cosine decay from lr to 0 over totalSteps (GoMLX's cosineschedule).
// g is the gradient the optimizer is handed — the GR-combined gradient when wrapped by a gr method —
// so weight decay stays outside the GR penalty, as in PyTorch's SGD(weight_decay=…).
type sgdMomentum struct {
	lr, momentum, weightDecay float64
	totalSteps                int
}

var _ train.OptimizeWithGradients = (*sgdMomentum)(nil)

// velocityScope holds the velocities.
const velocityScope = "/sgd_momentum"

func (o *sgdMomentum) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *graph.Node) {
	o.UpdateGraphWithGradients(ctx, ctx.BuildTrainableVariablesGradientsGraph(loss), loss.DType())
}

func (o *sgdMomentum) UpdateGraphWithGradients(ctx *context.Context, grads []*graph.Node, lossDType dtypes.DType) {
	if len(grads) == 0 {
		return
	}
	g := grads[0].Graph()
	lrVar := optimizers.LearningRateVar(ctx, lossDType, o.lr)
	if o.totalSteps > 0 {
		// Called here, once per step, rather than in the model function (which GR methods evaluate twice).
		cosineschedule.New(ctx, g, lossDType).LearningRate(o.lr).PeriodSteps(o.totalSteps).Done()
	}
	lr := lrVar.ValueGraph(g)
	optimizers.IncrementGlobalStepGraph(ctx, g, lossDType)
	i := 0
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.InUseByGraph(g) {
			continue
		}
		grad := grads[i]
		i++
		theta := v.ValueGraph(g)
		if o.weightDecay > 0 {
			grad = graph.Add(grad, graph.MulScalar(theta, o.weightDecay))
		}
		vel := ctx.InAbsPath(velocityScope+v.Scope()).Checked(false).
			VariableWithValue(v.Name()+"_velocity", tensors.FromShape(grad.Shape())).SetTrainable(false)
		newVel := graph.Add(graph.MulScalar(vel.ValueGraph(g), o.momentum), grad)
		vel.SetValueGraph(newVel)
		v.SetValueGraph(graph.Sub(theta, graph.Mul(graph.ConvertDType(lr, grad.DType()), newVel)))
	}
}

func (o *sgdMomentum) Clear(ctx *context.Context) error {
	return ctx.InAbsPath(velocityScope).DeleteVariablesInScope()
}
