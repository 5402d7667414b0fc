package grcontrib_test

import (
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGSAMScheduled: GSAM with the paper's ρ schedule, the learning-rate variable changed between steps as a
// cosine schedule would, follows in float64 θ ← θ − lr_t·g_GSAM(θ; ρ_t) with
// ρ_t = ρ_min + (ρ − ρ_min)(lr_t − lr_min)/(lr_max − lr_min).
func TestGSAMScheduled(t *testing.T) {
	p := newLogistic(7)
	const rho, rhoMin, alpha, lrMax, lrMin = 0.3, 0.1, 0.4, 0.5, 0.0
	b, err := grbackend.New()
	require.NoError(t, err)
	ctx := context.New()
	opt := grcontrib.GSAMScheduled(sgd(lrMax), lrMax, lrMin, rhoMin).Rho(rho).Alpha(alpha).Done()
	trainer := gr.NewTrainer(b, ctx, p.modelFn, logLoss, opt, nil, nil)
	x, y := p.tensors()
	theta := p.theta0()
	for step, lr := range []float64{lrMax, 0.4, 0.2, 0.05} {
		if step > 0 {
			ctx.In(optimizers.Scope).GetVariable(optimizers.ParamLearningRate).MustSetValue(tensors.FromValue(lr))
		}
		_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
		rhoT := rhoMin + (rho-rhoMin)*(lr-lrMin)/(lrMax-lrMin)
		g1 := p.grad(theta)
		gp := p.grad(axpby(1, theta, 1, rescale(rhoT, g1)))
		vertical := axpby(1, g1, -dot(g1, gp)/(dot(gp, gp)+gr.NormStabilizer), gp)
		theta = axpby(1, theta, -lr, axpby(1, gp, -alpha, vertical))
		assert.Less(t, relErr(thetaOf(ctx), theta), 1e-12, "step %d", step)
	}
}
