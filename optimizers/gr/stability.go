package gr

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// ParamWarnUnstable turns the stability warning of Config.WarnUnstable on or off, read by FromContext.
// Default: true.
const ParamWarnUnstable = "gr_warn_unstable"

// StabilityMargin, StabilityWindow and StabilityShare define when the stability warning fires: the step's
// stability ratio r (see Config.WarnUnstable) exceeds 1 + StabilityMargin on enough recent steps that the
// leaky count c ← c·(1 − 1/StabilityWindow) + [r > 1 + StabilityMargin] passes
// StabilityShare·StabilityWindow: six consecutive violating steps, or about a quarter of a longer stretch.
// Measured on MNIST (docs/methods.md, edge of stability): with SGD at lr 1.0, at its own edge, c hovers
// around 4–6 and peaks at 9–10, with lr 0.5 it stays below 3.3.
const (
	StabilityMargin = 0.1
	StabilityWindow = 20
	StabilityShare  = 0.25
)

// MetricViolations is the leaky count c of the stability check: a scalar variable of the metric dtype under
// Config.Scope + "/stability", saved by checkpoints.
const MetricViolations = "violations"

// HeavyBallBase is implemented by a base optimizer whose update is heavy-ball SGD,
//
//	v ← βv + g;  θ ← θ − ηv        (β = 0: plain SGD, θ ← θ − ηg),
//
// so that the stability check (Config.WarnUnstable) knows η and β. GoMLX's SGD
// (optimizers.StochasticGradientDescent, with or without its 1/√t decay) is recognized without it.
type HeavyBallBase interface {
	optimizers.Interface

	// HeavyBall returns the learning rate η of the step of graph g as a scalar node and the momentum β in
	// [0, 1). It is called after the optimizer built the step's update (so a schedule has set η).
	HeavyBall(ctx *context.Context, g *graph.Graph) (lr *Node, momentum float64)
}

// WarnUnstable turns the stability warning on or off. Default: on.
//
// On a quadratic with curvature λ along the gradient, the GR methods replace the gradient λθ by
// g₁ + γHg₁ = (1 + γλ)λθ (exactly, for DoubleBackprop and the finite differences at any ε; USAM is the
// same with γ = ρ), so the base optimizer sees the curvature λ(1 + γλ). Heavy-ball SGD with learning rate
// η and momentum β (v ← βv + g, θ ← θ − ηv) is stable on a quadratic iff 0 < ηa < 2(1 + β) for every
// curvature a (the roots of z² − (1 + β − ηa)z + β have modulus < 1), so the GR step is stable iff
//
//	η·λ(1 + γλ) < 2(1 + β)        (plain SGD, β = 0: η·λ(1 + γλ) < 2)
//
// which holds for a smaller learning rate than SGD's ηλ < 2(1 + β). Each full step the check computes the
// stability ratio r = η·λ̂(1 + γλ̂)/(2(1 + β)), with λ̂ = g₁ᵀHg₁/‖g₁‖² the sharpness metric (Metrics; from
// the curvature the method already measures, no extra pass), and keeps a leaky count of the steps with
// r > 1 + StabilityMargin; when it passes StabilityShare·StabilityWindow (r past the bound on about a quarter
// of the recent steps: training sits at, or beyond, the edge of stability of the GR step) the graph latches
// that step's values, and at the next read (every StabilityReadEvery steps) the trainer prints, once, a
// warning to stderr with r, λ̂, η and the largest stable learning rate
// 2(1 + β)/(λ̂(1 + γλ̂)), and what to do. On MNIST with SGD at lr 1.0, the edge of stability of SGD itself
// (λ̂ settles at 2/η), F-GR at γ = 0.05 lost most of its test accuracy (docs/methods.md): the band between
// the two bounds is narrow (γλ̂ ≈ 0.1 there), and the warning marks the regime, not only the band.
//
// It covers the methods with a fixed γ — DoubleBackprop, ForwardDifference, BackwardDifference,
// CentralDifference (with or without Normalized) and USAM — on bases whose learning rate the graph can see:
// GoMLX's SGD (η measured from the update itself, ⟨θ − θ′, g⟩/‖g‖² over its smallest variables, so its decay
// is included; a step whose gradient is 0 on all of them counts as stable) and any
// HeavyBallBase. For other bases (Adam, ...), the SAM family with a normalized ascent (SAM, GNP, ASAM and
// methods of other packages), Every(k > 1) (whose skip steps add a stored correction that does not scale
// with θ), the check is off: SAM's ascent ρg₁/‖g₁‖ acts as γ = ρ/‖g₁‖, which shrinks as the iterate leaves
// the stable region and the gradient grows, so the instability limits itself. λ̂ is a Rayleigh quotient,
// at most the top eigenvalue of H, so the check can miss an instability (it warns late) but a warning means
// the bound is exceeded along the gradient itself. Weight decay in the base adds its coefficient to the
// curvature and is left out. The warning needs a trainer from NewTrainer (the graph hands the check's values
// to a node logger that NewTrainer installs); with train.NewTrainer the check is off.
// Cost: per step, two passes over the gradient that end in a scalar (‖g₁‖² and g₁ᵀ(g₂ − g₁), shared with
// Metrics) and a few scalar operations — measured at 0.1–0.2× of an SGD step of a 270k-parameter MLP on XLA's
// CPU backend and 0.04–0.13× on the pure-Go backend (docs/benchmarks.md); the 7-value report is copied to
// the host once every StabilityReadEvery steps and released unread on the others (no transfer, no wait for
// the step's result).
func (c *Config) WarnUnstable(on bool) *Config {
	c.noStabilityWarning = !on
	return c
}

// stableAs declares that the method's combined gradient is g₁ + γHg₁ on a quadratic, with γ the
// hyperparameter key: the stability check covers it.
func (c *Config) stableAs(key string) *Config {
	c.stabilityKey = key
	return c
}

// StabilityReadEvery is how often, in training steps of one executor, the host reads the stability check's
// report: the check itself runs in the graph at every step, and the report it latches at the first step whose
// count passes the threshold is copied to the host (and the warning printed) at the next read, at most
// StabilityReadEvery − 1 steps late. The other steps transfer nothing.
const StabilityReadEvery = 100

// MetricStabilityReport is the stability check's latched report: a float vector variable under
// Config.Scope + "/stability" (saved by checkpoints) holding [fired, c, r, λ̂, η, γ, β], all 0 until the
// first step whose count c passed StabilityShare·StabilityWindow, then the values of that step with fired = 1.
const MetricStabilityReport = "report"

// stabilityMessage prefixes the logged node of the stability check.
const stabilityMessage = "gradreg stability check"

// watchStability adds the stability check to the training graph of prep's step, after the base optimizer
// built its update (see Config.WarnUnstable). Its variables are under the optimizer's scope (Config.Scope).
func (r *Regularized) watchStability(ctx *context.Context, g *graph.Graph, prep *prepared) {
	s := prep.step
	key := s.cfg.stabilityKey
	if s.cfg.noStabilityWarning || key == "" || s.cfg.every() > 1 || s.curvature == nil || s.pass == nil ||
		s.pass.trainer == nil {
		return
	}
	lr, beta, ok := baseStep(s.cfg.base, ctx, g, s, prep.grads)
	if !ok {
		return
	}
	gamma := s.Param(key)
	if s.warm != nil { // γ_t = w_t·γ under WarmUp.
		gamma = graph.Mul(gamma, castTo(s.warm, gamma))
	}
	lambda := sharpness(s.curvature, s.gradSquaredNorm())
	dtype := lambda.DType()
	lr = graph.ConvertDType(lr, dtype)
	gamma = graph.ConvertDType(gamma, dtype)
	// r = η·λ̂(1 + γλ̂)/(2(1 + β)).
	ratio := graph.DivScalar(graph.Mul(lr, graph.Mul(lambda, graph.OnePlus(graph.Mul(gamma, lambda)))), 2*(1+beta))
	violated := graph.GreaterThan(ratio, graph.Scalar(g, dtype, 1+StabilityMargin))
	scope := s.own + "/stability"
	counter := ownVar(ctx, scope, MetricViolations, shapes.Make(dtype))
	count := graph.Add(graph.MulScalar(counter.ValueGraph(g), 1-1.0/StabilityWindow),
		graph.ConvertDType(violated, dtype))
	counter.SetValueGraph(count)

	// Latch the values of the first step whose count passes the threshold.
	latch := ownVar(ctx, scope, MetricStabilityReport, shapes.Make(dtype, 7))
	old := latch.ValueGraph(g)
	fired := graph.GreaterThan(graph.Slice(old, graph.AxisElem(0)), graph.ScalarZero(g, dtype))
	fired = graph.Reshape(fired)
	crossed := graph.GreaterThan(count, graph.Scalar(g, dtype, StabilityShare*StabilityWindow))
	now := graph.Stack([]*Node{graph.ScalarOne(g, dtype), count, ratio, lambda, lr, gamma,
		graph.Scalar(g, dtype, beta)}, 0)
	report := graph.Where(graph.LogicalAnd(graph.LogicalNot(fired), crossed), now, old)
	latch.SetValueGraph(report)
	report.SetLoggedf("%s: gr.%s", stabilityMessage, s.cfg.name)
}

// baseStep returns the learning rate η (a scalar of graph g) and momentum β of base, if the check knows
// them: GoMLX's SGD (η = ⟨θ − θ′, g⟩/‖g‖² from the update just built, with g the gradient handed to it,
// over the smallest variables: see etaVariables) or a HeavyBallBase.
func baseStep(base optimizers.Interface, ctx *context.Context, g *graph.Graph, s *Step, grads []*Node) (
	lr *Node, momentum float64, ok bool) {
	switch b := base.(type) {
	case HeavyBallBase:
		lr, momentum = b.HeavyBall(ctx, g)
		return lr, momentum, true
	case *optimizers.SGDConfig:
		var before, after, grad []*Node
		for _, i := range etaVariables(s.vars) {
			before, after, grad = append(before, s.theta[i]), append(after, s.vars[i].ValueGraph(g)), append(grad, grads[i])
		}
		num := grvec.InnerProduct(grvec.SubVec(before, after), grad)
		den := grvec.InnerProduct(grad, grad)
		zero := graph.ZerosLike(den)
		isZero := graph.Equal(den, zero)
		return graph.Where(isZero, zero, graph.Div(num, graph.Where(isZero, graph.OnesLike(den), den))), 0, true
	}
	return nil, 0, false
}

// etaVariables returns the indices of the variables over which the check measures SGD's learning rate: SGD
// moves every variable by the same −ηg, so any of them gives η; the smallest ones (usually the biases), up
// to 1/64 of the parameters and at least one variable, make it cost nothing next to the step (a pass over
// every parameter costs about 0.1× of an SGD step on XLA CPU). A step whose gradient is 0 on all of them
// reads η = 0 and counts as stable.
func etaVariables(vars []*context.Variable) []int {
	order := make([]int, len(vars))
	total := 0
	for i, v := range vars {
		order[i] = i
		total += v.Shape().Size()
	}
	slices.SortStableFunc(order, func(a, b int) int { return vars[a].Shape().Size() - vars[b].Shape().Size() })
	n, size := 1, vars[order[0]].Shape().Size()
	for n < len(order) && size+vars[order[n]].Shape().Size() <= total/64 {
		size += vars[order[n]].Shape().Size()
		n++
	}
	return order[:n]
}

// stabilityWatch is the per-trainer state of the stability warning's node logger.
type stabilityWatch struct {
	once  sync.Once
	mu    sync.Mutex
	steps map[*graph.Graph]int // training steps run by each graph since the trainer was built
	reads int                  // reports copied to the host (tests)
	fired bool                 // the warning was printed: no more reads
}

// onStabilityWatch, when set (by tests), is called with each trainer's stabilityWatch.
var onStabilityWatch func(*train.Trainer, *stabilityWatch)

// watchStabilityLogs installs, on every training executor trainer creates, a node logger that handles the
// stability check's logged node — copied to the host every StabilityReadEvery steps of its graph, released
// unread otherwise — and passes the other logged nodes to the executor's previous logger.
func watchStabilityLogs(trainer *train.Trainer) {
	w := &stabilityWatch{steps: map[*graph.Graph]int{}}
	if onStabilityWatch != nil {
		onStabilityWatch(trainer, w)
	}
	trainer.OnExecCreation(func(exec *context.Exec, graphType train.GraphType) {
		if graphType != train.TrainType {
			return
		}
		previous := exec.GetNodeLogger()
		exec.SetNodeLogger(func(g *graph.Graph, messages []string, values []*tensors.Tensor, nodes []graph.NodeId) {
			var restMsg []string
			var restValues []*tensors.Tensor
			var restNodes []graph.NodeId
			for i, msg := range messages {
				if method, found := strings.CutPrefix(msg, stabilityMessage+": "); found {
					w.step(g, method, values[i])
					continue
				}
				restMsg, restValues, restNodes = append(restMsg, msg), append(restValues, values[i]),
					append(restNodes, nodes[i])
			}
			if len(restMsg) > 0 && previous != nil {
				previous(g, restMsg, restValues, restNodes)
			}
		})
	})
}

// step handles the report of one training step of graph g: every StabilityReadEvery steps of g (until the
// warning was printed) it is copied to the host and checked, otherwise released.
func (w *stabilityWatch) step(g *graph.Graph, method string, report *tensors.Tensor) {
	w.mu.Lock()
	w.steps[g]++
	read := !w.fired && w.steps[g]%StabilityReadEvery == 0
	if read {
		w.reads++
	}
	w.mu.Unlock()
	if !read {
		report.FinalizeAll()
		return
	}
	w.check(method, report)
	report.FinalizeAll()
}

// check prints the warning if the latched report says the count passed StabilityShare·StabilityWindow.
func (w *stabilityWatch) check(method string, report *tensors.Tensor) {
	var v []float64
	switch x := report.Value().(type) { // The metric dtype: float32 or float64.
	case []float32:
		for _, xi := range x {
			v = append(v, float64(xi))
		}
	case []float64:
		v = x
	default:
		return
	}
	fired, ratio, lambda, lr, gamma, beta := v[0], v[2], v[3], v[4], v[5], v[6]
	if !(fired > 0) {
		return
	}
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.once.Do(func() {
		bound := 2 * (1 + beta) / (lambda * (1 + gamma*lambda))
		fmt.Fprintf(warnOutput, "%s runs at or past its edge of stability: η·λ̂(1 + γλ̂)/(2(1 + β)) = %.3g > %g "+
			"on about a quarter or more of the last ~%d steps (then λ̂ = g₁ᵀHg₁/‖g₁‖² = %.4g, learning rate η = %.4g, γ = %.4g, "+
			"momentum β = %.3g). Gradient regularization turns the curvature λ into λ(1 + γλ), so this learning "+
			"rate, stable for the base optimizer up to λ = %.4g, is stable with γ only up to η = %.4g at that "+
			"λ̂; the loss can jump and accuracy collapse. Use a smaller learning rate (≤ %.3g), a smaller "+
			"γ, or SAM (its normalized ascent limits itself); turn this check off with WarnUnstable(false) "+
			"(%s=false).\n", method, ratio, 1+StabilityMargin, StabilityWindow, lambda, lr, gamma, beta,
			2*(1+beta)/lr, bound, bound, ParamWarnUnstable)
	})
}
