package gr_test

import (
	"fmt"
	"sync"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"math"
)

// group returns the problem restricted to examples [k·n/m, (k+1)·n/m), with the same θ₀ and λ.
func (p *problem) group(k, m int) *problem {
	size := len(p.x) / m
	q := *p
	q.x, q.t = p.x[k*size:(k+1)*size], p.t[k*size:(k+1)*size]
	return &q
}

// groupsReference is the mean over the m groups of the method's gradient on each group, in float64.
func groupsReference(p *problem, method string, m int, theta []float64, gamma, eps float64, hp samParams) []float64 {
	sum := make([]float64, len(theta))
	for k := range m {
		q := p.group(k, m)
		var gk []float64
		if isSAMMethod(method) {
			gk = samReference(q, method, theta, hp)
		} else {
			gk = referenceGradient(q, method, theta, gamma, eps, false, false)
		}
		sum = axpy(1, gk, sum)
	}
	return scaleVec(1/float64(m), sum)
}

func isSAMMethod(method string) bool {
	for _, s := range samMethods {
		if s == method {
			return true
		}
	}
	return false
}

// groupsConfig returns the method's builder with the test's hyperparameters.
func groupsConfig(method string, base optimizers.Interface, gamma, eps float64, hp samParams) *gr.Config {
	switch method {
	case "sam":
		return gr.SAM(base).Rho(hp.rho)
	case "usam":
		return gr.USAM(base).Rho(hp.rho)
	case "gnp":
		return gr.GNP(base).Rho(hp.rho).Alpha(hp.alpha)
	case "asam":
		return gr.ASAM(base).Rho(hp.rho).Eta(hp.eta)
	}
	return buildCfg(method, base, gamma, eps)
}

// The problem and hyperparameters of TestGroupsMatchesMeanOfGroups and TestAccumulationIsGroups, which share
// the Groups(m) steps (groupsStep).
var (
	groupsProblem = newProblem(21, 16, 3, 4, 0.01)
	groupsHP      = samParams{rho: 0.1, alpha: 0.7, eta: 0.01}
)

const groupsGamma, groupsEps = 0.07, 0.03

// groupsSteps holds groupsStep's results by method and m.
var groupsSteps sync.Map // fmt.Sprint(method, m) → *groupsStepResult

type groupsStepResult struct {
	once           sync.Once
	theta1, losses []float64
}

// groupsStep returns θ after one step of Groups(m) with SGD(lr = 1) on groupsProblem from θ₀, and its loss,
// trained once per method and m for all the tests that ask (each trainer compiles its graphs on first use).
func groupsStep(t *testing.T, method string, m int) (theta1, losses []float64) {
	r, _ := groupsSteps.LoadOrStore(fmt.Sprint(method, m), &groupsStepResult{})
	res := r.(*groupsStepResult)
	res.once.Do(func() {
		res.theta1, res.losses = groupsProblem.trainSteps(t,
			groupsConfig(method, sgd(1), groupsGamma, groupsEps, groupsHP).Groups(m).Done(), false, 1)
	})
	require.NotNil(t, res.theta1, "%s Groups(%d): the step failed in another test", method, m)
	return res.theta1, res.losses
}

// TestGroupsMatchesMeanOfGroups: one step with Groups(m), m = 2 and 4, equals the mean over the groups of
// each group's formula (own g₁ᵏ, own perturbation, the AddLoss term in every group), computed
// independently in float64, for every method; and differs from the whole-batch step (the float64 formula on the
// whole batch, Groups(1), which TestOneStepMatchesFormula and TestSAMOneStepMatchesFormula check GoMLX's
// whole-batch steps against).
func TestGroupsMatchesMeanOfGroups(t *testing.T) {
	parallelOnXLA(t)
	p := groupsProblem
	theta0 := p.theta0()
	gamma, eps, hp := groupsGamma, groupsEps, groupsHP
	for _, method := range append(append([]string{}, allMethods...), samMethods...) {
		whole := axpy(-1, groupsReference(p, method, 1, theta0, gamma, eps, hp), theta0)
		for _, m := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/m=%d", method, m), func(t *testing.T) {
				theta1, losses := groupsStep(t, method, m)
				want := groupsReference(p, method, m, theta0, gamma, eps, hp)
				assert.Less(t, relErr(gradientFromStep(theta0, theta1), want), 1e-9)
				assert.InDelta(t, p.loss(theta0), losses[0], 1e-12, "reported loss: the whole batch's")
				assert.Greater(t, relErr(theta1, whole), 1e-6, "differs from the whole-batch step")
			})
		}
	}
}

// TestGroupsOneIsPlain: Groups(1) is the plain method, bit for bit.
func TestGroupsOneIsPlain(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(22, 12, 3, 4, 0.01)
	for _, method := range []string{"forward", "db", "sam"} {
		plain, _ := p.trainSteps(t, groupsConfig(method, sgd(0.2), 0.05, 0.05, samParams{rho: 0.05}).Done(), false, 2)
		one, _ := p.trainSteps(t, groupsConfig(method, sgd(0.2), 0.05, 0.05, samParams{rho: 0.05}).Groups(1).Done(), false, 2)
		assert.Equal(t, plain, one, method)
	}
}

// TestGroupsErrors: m < 1 is refused by Build; a batch not divisible by m fails naming both numbers.
func TestGroupsErrors(t *testing.T) {
	parallelOnXLA(t)
	_, err := gr.ForwardDifference(sgd(1)).Groups(0).Build()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Groups (m) [gr_groups] must be an integer in [1, +∞), got 0")

	p := newProblem(23, 10, 3, 4, 0)
	trainer := gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss,
		gr.ForwardDifference(sgd(1)).Groups(4).Done(), nil, nil)
	x, y := p.tensors()
	_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the batch size 10 is not divisible by the number of groups 4")

	ctx := context.New()
	ctx.SetParam(gr.ParamMethod, "sam")
	ctx.SetParam(gr.ParamGroups, 2)
	opt, err := gr.FromContext(ctx, sgd(1))
	require.NoError(t, err)
	assert.Equal(t, 2, opt.(*gr.Regularized).Params()[gr.ParamGroups])
}

// TestGroupsWithOptions: Groups(2) combined with WarmUp, Every (via gr.TrainStep) and the metrics follows,
// step by step, the independent float64 recursion in which g₁ is the whole batch's gradient (the mean of the
// groups' g₁ᵏ) and G the mean of the groups' method gradients:
//
//	Every(k): c = G(θ_t) − g₁(θ_t) on t ≡ 0 mod k, kept otherwise;   WarmUp(W): g = g₁ + min(1, t/W)·c
//
// and the "GR ‖∇L‖" metric is ‖g₁(θ_t)‖. Kills the mutant "Groups' g₁ summed instead of averaged", which only
// these options read (the plain Groups step does not).
func TestGroupsWithOptions(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(51, 16, 3, 4, 0.01)
	const m, lr, steps = 2, 0.3, 5
	gamma, eps := 0.07, 0.03
	hp := samParams{rho: 0.1}
	for _, method := range []string{"forward", "sam"} {
		for _, tc := range []struct {
			name         string
			every, warm  int
			viaTrainStep bool
		}{{"warmup", 1, 3, false}, {"every", 2, 0, true}, {"every+warmup", 3, 2, true}} {
			t.Run(method+"/"+tc.name, func(t *testing.T) {
				cfg := groupsConfig(method, sgd(lr), gamma, eps, hp).Groups(m)
				if tc.every > 1 {
					cfg.Every(tc.every)
				}
				if tc.warm > 0 {
					cfg.WarmUp(tc.warm)
				}
				ctx := context.New()
				trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, cfg.Done(), gr.Metrics(), nil)
				x, y := p.tensors()
				theta := p.theta0()
				var c []float64
				for step := range steps {
					res, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
					require.NoError(t, err)
					g1 := p.grad(theta, false)
					assert.InDelta(t, normVec(g1), metricAt(t, trainer, res, "GR ‖∇L‖"), 1e-12*normVec(g1), "step %d: ‖g₁‖", step)
					if step%tc.every == 0 {
						c = axpy(-1, g1, groupsReference(p, method, m, theta, gamma, eps, hp))
					}
					w := 1.0
					if tc.warm > 0 {
						w = math.Min(1, float64(step)/float64(tc.warm))
					}
					theta = axpy(-lr, axpy(w, c, g1), theta)
					got := variableValues(ctx, "W", "v")
					require.Less(t, relErr(got, theta), 1e-9, "step %d", step)
				}
			})
		}
	}

	// The fallback with Groups: the base step with the whole batch's g₁. pred_i = exp(k·w·x_i) with x = (1, 1):
	// every group's loss and the whole batch's is exp(kw), g₁ = k·exp(kw) finite, the ascent overflows.
	k, w0, lr2 := 1e4, 0.03, 1e-136
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		w := ctx.VariableWithValue("w", w0).ValueGraph(inputs[0].Graph())
		return []*Node{Exp(MulScalar(Mul(w, inputs[0]), k))}
	}
	lossFn := func(_, predictions []*Node) *Node { return ReduceAllMean(predictions[0]) }
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, gr.ForwardDifference(sgd(lr2)).Groups(2).Done(),
		gr.GuardMetrics(), nil)
	x := tensors.FromValue([]float64{1, 1})
	res, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
	require.NoError(t, err)
	assert.Equal(t, 1.0, metricAt(t, trainer, res, "GR fallbacks"))
	w1 := ctx.GetVariableByScopeAndName(context.RootScope, "w").MustValue().Value().(float64)
	assert.InDelta(t, w0-lr2*k*math.Exp(k*w0), w1, 1e-12, "fallback: base step with the mean g₁")
}
