package gr

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
)

// MetricRoundedToZero is the name of the metric of PrecisionMetrics: the variable under Config.Scope + "/metrics"
// that holds its last value.
const MetricRoundedToZero = "rounded_to_zero"

// isLowPrecision says whether dtype is a float narrower than float32.
func isLowPrecision(dtype dtypes.DType) bool {
	return dtype == dtypes.BFloat16 || dtype == dtypes.Float16
}

// widen converts the low-precision elements of x to float32.
func widen(x []*Node) []*Node {
	out := make([]*Node, len(x))
	for i, xi := range x {
		out[i] = xi
		if isLowPrecision(xi.DType()) {
			out[i] = graph.ConvertDType(xi, dtypes.Float32)
		}
	}
	return out
}

// narrow converts each gradient, one per trainable variable of the graph (stepGraph.all), to the dtype of
// its variable.
func (s *Step) narrow(grads []*Node) []*Node {
	out := make([]*Node, len(grads))
	for i, gi := range grads {
		out[i] = gi
		if dt := s.allTheta[i].DType(); gi.DType() != dt {
			out[i] = graph.ConvertDType(gi, dt)
		}
	}
	return out
}

// perturb returns θ + offset in the variables' dtypes (the sum in float32 for low-precision variables),
// and publishes, for the first perturbation of the step, the fraction of weights whose perturbation
// rounded to zero (PrecisionMetrics).
func (s *Step) perturb(offset []*Node) []*Node {
	out := make([]*Node, len(offset))
	var lost, moved *Node // counts, float32
	for i, theta := range s.theta {
		o := offset[i]
		if o.DType() == theta.DType() {
			out[i] = graph.Add(theta, o)
		} else {
			out[i] = graph.ConvertDType(graph.Add(graph.ConvertDType(theta, o.DType()), o), theta.DType())
		}
		nonZero := graph.NotEqual(o, graph.ZerosLike(o))
		rounded := graph.LogicalAnd(nonZero, graph.Equal(out[i], theta))
		l := graph.ReduceAllSum(graph.ConvertDType(rounded, dtypes.Float32))
		m := graph.ReduceAllSum(graph.ConvertDType(nonZero, dtypes.Float32))
		if lost == nil {
			lost, moved = l, m
		} else {
			lost, moved = graph.Add(lost, l), graph.Add(moved, m)
		}
	}
	scoped := s.ctx.InAbsPath(graphScope)
	if _, found := scoped.GetGraphParam(s.g, graphParamMetric+MetricRoundedToZero); !found && lost != nil {
		// Nodes the metric does not read are pruned by the backends: no cost without PrecisionMetrics.
		zero := graph.ZerosLike(moved)
		isZero := graph.Equal(moved, zero)
		fraction := graph.Where(isZero, zero, graph.Div(lost, graph.Where(isZero, graph.OnesLike(moved), moved)))
		scoped.SetGraphParam(s.g, graphParamMetric+MetricRoundedToZero, fraction)
	}
	return out
}

// PrecisionMetrics returns the train metric "GR rounded to zero" (rnd0): among the weights with a non-zero
// perturbation in the step's first perturbed evaluation (o = εg₁ for F-GR, ρg₁/‖g₁‖ for SAM, ...), the
// fraction whose perturbed value fl(θ + o) equals θ — the perturbation was lost to rounding (0 when no
// weight has a non-zero perturbation). Near 0 with float32 variables; with bfloat16 variables (8 bits of
// mantissa) a large fraction says the method's correction is mostly rounding: keep the variables in
// float32 and cast inside the model (mixed precision) instead. It keeps its last value on steps without a
// perturbed evaluation, in a variable under Config.Scope + "/metrics" (saved by checkpoints).
func PrecisionMetrics() []metrics.Interface {
	return []metrics.Interface{
		metrics.NewBaseMetric("GR rounded to zero", "rnd0", MetricType, metricFn(MetricRoundedToZero), nil),
	}
}
