package gr

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// MetricType is the metrics.Interface MetricType of the GR metrics.
const MetricType = "gr"

// Names of the GR metrics: the variables under Config.Scope + "/metrics" that hold their last values.
const (
	MetricGradNorm  = "grad_norm" // ‖g₁‖
	MetricPenalty   = "penalty"   // (γ/2)‖g₁‖², or the method's own penalty (Config.Penalty)
	MetricCurvature = "curvature" // g₁ᵀHg₁
	MetricSharpness = "sharpness" // λ̂ = g₁ᵀHg₁/‖g₁‖²
)

// Metrics returns the GR metrics of the training step, to pass as trainMetrics to NewTrainer (or
// train.NewTrainer): the progress bar shows them and, since each keeps its last value in a non-trainable
// variable of the loss dtype under Config.Scope + "/metrics", checkpoints record them. With g₁ = ∇L(θ):
//
//   - "GR ‖∇L‖" (‖g‖): ‖g₁‖, the global L2 norm over all trainable variables.
//   - "GR penalty" (pen): w_t·P, with w_t the weight of WarmUp/ZeroWarmUp (1 without) and P the penalty
//     whose gradient the method's correction estimates: (γ/2)‖g₁‖² for the GR methods (DB, forward,
//     backward, central); for the SAM family, which has no γ, its own definition: ρ‖g₁‖ (SAM), (ρ/2)‖g₁‖²
//     (USAM), αρ‖g₁‖ (GNP), ρ‖Tg₁‖ (ASAM). A custom method defines it with Config.Penalty, or gets
//     (γ/2)‖g₁‖² when it declares γ; otherwise the penalty is not reported (the metric keeps its last value).
//   - "GR curvature" (gHg): g₁ᵀHg₁, free from the method's first perturbed gradient along g₁, Step.GradAlong
//     (o = h·g₁, e.g. o = εg₁ for F-GR, −εg₁ for B-GR, ρg₁/‖g₁‖ for SAM, USAM, GNP, GSAM, LookSAM, WSAM):
//     g₁ᵀ[∇L(θ + o) − g₁]·‖g₁‖²/(g₁ᵀo), which is g₁ᵀ[∇L(θ + εg₁) − g₁]/ε for F-GR, and exactly g₁ᵀHg₁ on a
//     quadratic loss. DoubleBackprop gives the exact g₁ᵀHg₁ (Step.SetCurvature). It is 0 when g₁ᵀo = 0. A
//     method whose perturbation is not along g₁ (Step.GradAt: ASAM, FriendlySAM, RWP) does not report it
//     unless it sets it (the metric keeps its last value, 0 at first). On the steps that compute no
//     perturbed gradient (the skip steps of Every) it keeps its last value.
//   - "GR sharpness" (λ̂): g₁ᵀHg₁/‖g₁‖², the curvature along the gradient (a Rayleigh quotient of H, so
//     at most its largest eigenvalue; at the edge of stability the gradient turns towards the top
//     eigenvector and λ̂ approaches it). It is the curvature metric divided by ‖g₁‖², no extra pass; 0 when
//     g₁ = 0, and it keeps its last value when the curvature does. The stability check (stability.go)
//     compares it with the learning rate.
//
// With an optimizer that is not from this package the metrics stay at 0.
func Metrics() []metrics.Interface {
	return []metrics.Interface{
		metrics.NewBaseMetric("GR ‖∇L‖", "‖g‖", MetricType, metricFn(MetricGradNorm), nil),
		metrics.NewBaseMetric("GR penalty", "pen", MetricType, metricFn(MetricPenalty), nil),
		metrics.NewBaseMetric("GR curvature", "gHg", MetricType, metricFn(MetricCurvature), nil),
		metrics.NewBaseMetric("GR sharpness", "λ̂", MetricType, metricFn(MetricSharpness), nil),
	}
}

// graphParamMetric is the graph parameter (in graphScope) that holds the value of a metric computed in this
// graph; graphParamCurvatureValid holds the Bool scalar that says whether the curvature is fresh (nil:
// always when present).
const (
	graphParamMetric         = "gr_metric_"
	graphParamCurvatureValid = "gr_metric_curvature_valid"
)

// metricFn returns the metrics.BaseMetricGraph of a GR metric: the value this step's UpdateGraph computed,
// stored in the metric's variable, or the variable's value when there is none.
func metricFn(name string) metrics.BaseMetricGraph {
	return func(ctx *context.Context, _, predictions []*Node) *Node {
		g := predictions[0].Graph()
		scoped := ctx.InAbsPath(graphScope)
		v := ownVar(ctx, metricsScope(ctx, g)+"/metrics", name, shapes.Make(metricDType(ctx, g)))
		last := v.ValueGraph(g)
		value, found := scoped.GetGraphParam(g, graphParamMetric+name)
		if !found || value == nil {
			return last
		}
		fresh := graph.ConvertDType(value.(*Node), last.DType())
		if name == MetricCurvature || name == MetricSharpness {
			if valid, ok := scoped.GetGraphParam(g, graphParamCurvatureValid); ok && valid != nil {
				fresh = graph.Where(valid.(*Node), fresh, last)
			}
		}
		v.SetValueGraph(fresh)
		return fresh
	}
}

// recordCurvature sets s.curvature, unless already set or outside the full phase, from the first perturbed
// gradient along g₁ (Step.GradAlong) grads = ∇L(θ + h·g₁): g₁ᵀ(grads − g₁)/h, or 0 when h·‖g₁‖² = 0 (the
// offset's g₁ᵀo = h‖g₁‖² is known without a pass over the gradient).
func (s *Step) recordCurvature(h *Node, grads []*Node) {
	if s.curvature != nil || s.phase != PhaseFull {
		return
	}
	num := grvec.InnerProduct(s.grad, grvec.SubVec(grads, s.grad))
	h = castTo(h, num)
	den := graph.Mul(h, s.gradSquaredNorm())
	zero := graph.ZerosLike(den)
	isZero := graph.Equal(den, zero)
	safeH := graph.Where(isZero, graph.OnesLike(h), h)
	s.curvature = graph.Where(isZero, zero, graph.Div(num, safeH))
}

// sharpness returns λ̂ = curvature/sq (sq = ‖g₁‖²), or 0 when sq = 0.
func sharpness(curvature, sq *Node) *Node {
	zero := graph.ZerosLike(sq)
	isZero := graph.Equal(sq, zero)
	return graph.Where(isZero, zero, graph.Div(curvature, graph.Where(isZero, graph.OnesLike(sq), sq)))
}

// penaltyValue returns the method's penalty (Config.Penalty; default (γ/2)‖g₁‖² for a method with γ) scaled
// by w_t under warm-up, or nil when the method defines none.
func (s *Step) penaltyValue(sq *Node) *Node {
	var penalty *Node
	switch {
	case s.cfg.penalty != nil:
		penalty = s.cfg.penalty(s)
	case s.cfg.lookup(ParamGamma) != nil:
		penalty = graph.Mul(graph.MulScalar(s.Param(ParamGamma), 0.5), sq)
	default:
		return nil
	}
	if s.warm != nil {
		penalty = graph.Mul(penalty, castTo(s.warm, penalty))
	}
	return penalty
}

// publishMetrics makes this step's metrics available to the metrics built by Metrics. curvatureValid, when
// not nil, is a Bool scalar that says whether the curvature was measured in this step.
func (s *Step) publishMetrics(curvatureValid *Node) {
	scoped := s.ctx.InAbsPath(graphScope)
	sq := s.gradSquaredNorm()
	scoped.SetGraphParam(s.g, graphParamMetric+MetricGradNorm, graph.Sqrt(sq))
	if penalty := s.penaltyValue(sq); penalty != nil {
		scoped.SetGraphParam(s.g, graphParamMetric+MetricPenalty, penalty)
	}
	if s.curvature != nil {
		scoped.SetGraphParam(s.g, graphParamMetric+MetricCurvature, s.curvature)
		scoped.SetGraphParam(s.g, graphParamMetric+MetricSharpness, sharpness(s.curvature, sq))
		if curvatureValid != nil {
			scoped.SetGraphParam(s.g, graphParamCurvatureValid, curvatureValid)
		}
	}
}

// metricDType is the dtype the GR metrics are shown in: the loss dtype, float32 when the graph has no loss.
func metricDType(ctx *context.Context, g *graph.Graph) dtypes.DType {
	if loss := train.GetLosses(ctx, g); loss != nil {
		return loss.DType()
	}
	return dtypes.Float32
}
