package gr_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// slope fits log(err) = a + s·log(ε) by least squares and returns s.
func slope(eps, errs []float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(eps))
	for i := range eps {
		x, y := math.Log(eps[i]), math.Log(errs[i])
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// TestFiniteDifferencesConvergeToDB: on the tanh MLP, F-GR and B-GR converge to DB as ε → 0 with error
// ∝ ε, the central difference with error ∝ ε². Gradients are read off one SGD step with learning rate 1.
func TestFiniteDifferencesConvergeToDB(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(8, 16, 3, 4, 0.01)
	theta0 := p.theta0()
	const gamma = 0.1
	thetaDB, _ := p.trainSteps(t, build("db", sgd(1), gamma, 1, false), false, 1)
	gDB := gradientFromStep(theta0, thetaDB)
	epsilons := []float64{0.04, 0.02, 0.01, 0.005}
	for method, want := range map[string]float64{"forward": 1, "backward": 1, "central": 2} {
		errs := make([]float64, len(epsilons))
		for i, eps := range epsilons {
			theta, _ := p.trainSteps(t, build(method, sgd(1), gamma, eps, false), false, 1)
			errs[i] = relErr(gradientFromStep(theta0, theta), gDB)
		}
		s := slope(epsilons, errs)
		t.Logf("%s: errors %.3g at ε=%v, slope %.3f", method, errs, epsilons, s)
		assert.InDelta(t, want, s, 0.1, "%s: convergence order", method)
		assert.Less(t, errs[len(errs)-1], 1e-2, "%s: error at the smallest ε", method)
	}
}

// TestDBHessianVectorProduct: DB's Hg₁ = (g_DB − g₁)/γ matches a central finite difference of the
// independent reference gradients.
func TestDBHessianVectorProduct(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(9, 16, 3, 4, 0.01)
	theta0 := p.theta0()
	const gamma = 0.5
	thetaDB, _ := p.trainSteps(t, build("db", sgd(1), gamma, 1, false), false, 1)
	g1 := p.grad(theta0, false)
	hg := scaleVec(1/gamma, axpy(-1, g1, gradientFromStep(theta0, thetaDB)))
	const h = 1e-5
	fd := scaleVec(1/(2*h), axpy(-1, p.grad(axpy(-h, g1, theta0), false), p.grad(axpy(h, g1, theta0), false)))
	assert.Less(t, relErr(hg, fd), 1e-6)
}
