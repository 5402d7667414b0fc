package gr_test

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestGroupsMatchesMeanOfGroups: one step with Groups(m), m = 2 and 4, equals the mean over the groups of
// each group's formula (own g₁ᵏ, own perturbation, the AddLoss term in every group), computed
// independently in float64, for every method; and differs from the whole-batch step.
func TestGroupsMatchesMeanOfGroups(t *testing.T) {
	p := newProblem(21, 16, 3, 4, 0.01)
	theta0 := p.theta0()
	gamma, eps := 0.07, 0.03
	hp := samParams{rho: 0.1, alpha: 0.7, eta: 0.01}
	for _, method := range append(append([]string{}, allMethods...), samMethods...) {
		whole, _ := p.trainSteps(t, groupsConfig(method, sgd(1), gamma, eps, hp).Done(), false, 1)
		for _, m := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/m=%d", method, m), func(t *testing.T) {
				theta1, losses := p.trainSteps(t, groupsConfig(method, sgd(1), gamma, eps, hp).Groups(m).Done(), false, 1)
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
	p := newProblem(22, 12, 3, 4, 0.01)
	for _, method := range []string{"forward", "db", "sam"} {
		plain, _ := p.trainSteps(t, groupsConfig(method, sgd(0.2), 0.05, 0.05, samParams{rho: 0.05}).Done(), false, 2)
		one, _ := p.trainSteps(t, groupsConfig(method, sgd(0.2), 0.05, 0.05, samParams{rho: 0.05}).Groups(1).Done(), false, 2)
		assert.Equal(t, plain, one, method)
	}
}

// TestGroupsErrors: m < 1 is refused by Build; a batch not divisible by m fails naming both numbers.
func TestGroupsErrors(t *testing.T) {
	_, err := gr.ForwardDifference(sgd(1)).Groups(0).Build()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Groups (m) must be an integer in [1, +∞), got 0")

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
