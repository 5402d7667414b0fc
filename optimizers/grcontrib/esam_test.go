package grcontrib_test

import (
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// esamReference is one ESAM step of p in float64 for the mask (keepW, keepB) of θ = (w, b): d = m⊙g₁,
// e = ρd/(β(‖d‖ + δ)), θ' = θ − lr·∇L(θ + e).
func esamReference(p *logistic, theta []float64, keepW, keepB bool, lr, rho, beta float64) []float64 {
	g1 := p.grad(theta)
	d := make([]float64, len(g1))
	for i := range g1 {
		if (i < len(p.w0) && keepW) || (i == len(p.w0) && keepB) {
			d[i] = g1[i]
		}
	}
	e := axpby(rho/(beta*(norm(d)+gr.NormStabilizer)), d, 0, d)
	return axpby(1, theta, -lr, p.grad(axpby(1, theta, 1, e)))
}

// TestESAMMaskOfOnesIsSAM: with β = 1 every variable is drawn (a mask of ones) and ESAM's steps are SAM's,
// bit for bit.
func TestESAMMaskOfOnesIsSAM(t *testing.T) {
	p := newLogistic(7)
	esam, _ := p.run(t, seeded(3), grcontrib.ESAM(sgd(0.5)).Rho(0.3).Set(grcontrib.ParamESAMBeta, 1.0).Done(), 4, true)
	sam, _ := p.run(t, seeded(3), gr.SAM(sgd(0.5)).Rho(0.3).Done(), 4, true)
	assert.Equal(t, sam, esam)
	sgdRun, _ := p.run(t, seeded(3), sgd(0.5), 4, true)
	assert.Greater(t, relErr(esam[3], sgdRun[3]), 1e-6, "SAM differs from SGD: the test can fail")
}

// TestESAMStochasticPerturbation: with β = 0.5 each step equals the float64 ESAM step of one of the four
// masks of θ = (w, b), perturbation scaled by 1/β, and the draws differ between steps (over 12 steps more than
// one mask occurs, and the all-zero mask gives the plain step).
func TestESAMStochasticPerturbation(t *testing.T) {
	p := newLogistic(8)
	const lr, rho, beta = 0.5, 0.3, 0.5
	thetas, _ := p.run(t, seeded(5), grcontrib.ESAM(sgd(lr)).Rho(rho).Set(grcontrib.ParamESAMBeta, beta).Done(), 12, true)
	seen := map[[2]bool]int{}
	prev := p.theta0()
	for step, theta := range thetas {
		found := false
		for _, m := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			if relErr(theta, esamReference(p, prev, m[0], m[1], lr, rho, beta)) < 1e-12 {
				seen[m]++
				found = true
				break
			}
		}
		require.True(t, found, "step %d matches the ESAM step of no mask", step)
		prev = theta
	}
	assert.Greater(t, len(seen), 1, "the mask is drawn anew each step: %v", seen)
	// With β = 0.5, the 1/β scale matters: the step of the mask of ones with scale 1 is not ESAM's.
	full := esamReference(p, p.theta0(), true, true, lr, rho, 1)
	assert.Greater(t, relErr(esamReference(p, p.theta0(), true, true, lr, rho, beta), full), 1e-6)
}

// TestESAMRegistered: "esam" is a gr_method value; β outside (0, 1] is an error naming its key.
func TestESAMRegistered(t *testing.T) {
	assert.Contains(t, gr.Methods(), "esam")
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "esam", grcontrib.ParamESAMBeta: 0.0})
	_, err := gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, "gr.ESAM: Beta (β) [gr_esam_beta] must be a finite number in (0, 1], got 0")
}
