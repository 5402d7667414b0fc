// Package sgdm is SGD with heavy-ball momentum, weight decay and an optional cosine learning-rate decay,
// shared by the examples (GoMLX v0.26.0 has no momentum optimizer).
package sgdm

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers/cosineschedule"
)

// Optimizer is SGD with heavy-ball momentum and weight decay, PyTorch style (the paper's setting):
//
//	v ← μ·v + (g + λ·θ);  θ ← θ − lr·v
//
// with the learning rate following a cosine decay from LR to 0 over TotalSteps (GoMLX's cosineschedule)
// when TotalSteps > 0, constant otherwise. Momentum 0 and WeightDecay 0 give plain SGD (with Momentum 0
// there is no velocity: θ ← θ − lr·(g + λ·θ)).
// g is the gradient the optimizer is handed — the GR-combined gradient when wrapped by a gr method —
// so weight decay stays outside the GR penalty, as in PyTorch's SGD(weight_decay=…).
type Optimizer struct {
	LR, Momentum, WeightDecay float64
	TotalSteps                int
}

var _ train.OptimizeWithGradients = (*Optimizer)(nil)

// VelocityScope holds the velocities.
const VelocityScope = "/sgd_momentum"

func (o *Optimizer) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *graph.Node) {
	o.UpdateGraphWithGradients(ctx, ctx.BuildTrainableVariablesGradientsGraph(loss), loss.DType())
}

func (o *Optimizer) UpdateGraphWithGradients(ctx *context.Context, grads []*graph.Node, lossDType dtypes.DType) {
	if len(grads) == 0 {
		return
	}
	g := grads[0].Graph()
	lrVar := optimizers.LearningRateVar(ctx, lossDType, o.LR)
	if o.TotalSteps > 0 {
		// Called here, once per step, rather than in the model function (which GR methods evaluate twice).
		cosineschedule.New(ctx, g, lossDType).LearningRate(o.LR).PeriodSteps(o.TotalSteps).Done()
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
		if o.WeightDecay > 0 {
			grad = graph.Add(grad, graph.MulScalar(theta, o.WeightDecay))
		}
		if o.Momentum == 0 {
			v.SetValueGraph(graph.Sub(theta, graph.Mul(graph.ConvertDType(lr, grad.DType()), grad)))
			continue
		}
		vel := ctx.InAbsPath(VelocityScope+v.Scope()).Checked(false).
			VariableWithValue(v.Name()+"_velocity", tensors.FromShape(grad.Shape())).SetTrainable(false)
		newVel := graph.Add(graph.MulScalar(vel.ValueGraph(g), o.Momentum), grad)
		vel.SetValueGraph(newVel)
		v.SetValueGraph(graph.Sub(theta, graph.Mul(graph.ConvertDType(lr, grad.DType()), newVel)))
	}
}

// HeavyBall returns the learning rate of the step of graph g (after the cosine schedule) and the momentum: it
// implements gr.HeavyBallBase, so gradreg's stability check knows them.
func (o *Optimizer) HeavyBall(ctx *context.Context, g *graph.Graph) (*graph.Node, float64) {
	return optimizers.LearningRateVar(ctx, dtypes.Float32, o.LR).ValueGraph(g), o.Momentum
}

func (o *Optimizer) Clear(ctx *context.Context) error {
	return ctx.InAbsPath(VelocityScope).DeleteVariablesInScope()
}
