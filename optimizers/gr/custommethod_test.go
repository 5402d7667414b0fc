package gr_test

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ascentMethod is a method written on the public API only: g = ∇L(θ + ρg₁) (USAM's formula).
var newAscent = gr.NewMethod("Ascent", func(s *gr.Step) []*Node {
	return s.GradAt(grvec.ScaleVec(s.Param(gr.ParamRho), s.Grad()))
})

func ascentMethod(base optimizers.Interface, rho float64) *gr.Config {
	return newAscent(base).Declare(gr.Hyperparameter{Key: gr.ParamRho, Default: 0.05, Max: math.Inf(1)}).Set(gr.ParamRho, rho)
}

// TestCustomMethodGetsPracticeOptions: a method defined through gr.NewMethod gets Groups, accumulation and
// the non-finite guard without its code knowing, checked against the float64 formulas.
func TestCustomMethodGetsPracticeOptions(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(51, 16, 3, 4, 0.01)
	theta0 := p.theta0()
	const rho = 0.1
	want := groupsReference(p, "usam", 4, theta0, 0, 0, samParams{rho: rho})

	groups, _ := p.trainSteps(t, ascentMethod(sgd(1), rho).Groups(4).Done(), false, 1)
	assert.Less(t, relErr(gradientFromStep(theta0, groups), want), 1e-9, "Groups(4)")

	acc, _ := p.accumulate(t, context.New(), ascentMethod(sgd(1), rho).Done(), 4, 1)
	assert.Less(t, relErr(acc[0], groups), 1e-13, "accumulation = Groups")

	// Guard: a NaN batch writes nothing.
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, ascentMethod(sgd(0.1), rho).Done(), nil, nil)
	nx, ny := p.nanBatch()
	m, err := trainer.TrainStep(nil, []*tensors.Tensor{nx}, []*tensors.Tensor{ny})
	require.NoError(t, err)
	assert.True(t, math.IsNaN(m[0].Value().(float64)))
	assert.Equal(t, theta0, variableValues(ctx, "W", "v"))
	assert.Equal(t, int64(0), optimizers.GetGlobalStep(ctx))
}
