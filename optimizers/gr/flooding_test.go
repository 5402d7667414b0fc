package gr_test

import (
	"math"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/regularizers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of the regularizers package through the trainer, on the tanh model, against the float64 reference.

// trainWithLoss is trainSteps with the loss function lossFn instead of squaredLoss.
func (p *problem) trainWithLoss(t testing.TB, lossFn train.LossFn, opt optimizers.Interface, steps int) (theta, losses []float64) {
	return p.train(t, p.modelFn(false), lossFn, opt, steps)
}

// example returns the one-example problem of example i, without the AddLoss term: its loss and gradient
// are ℓ_i and ∇ℓ_i.
func (p *problem) example(i int) *problem {
	return &problem{x: p.x[i : i+1], t: p.t[i : i+1], w0: p.w0, v0: p.v0, hidden: p.hidden}
}

// dataGrad returns ∇ℓ̄ and ∇R, the gradients of the mean data loss and of the AddLoss term at θ.
func (p *problem) dataGrad(theta []float64) (data, reg []float64) {
	noReg := *p
	noReg.lambda = 0
	data = noReg.grad(theta, false)
	return data, axpy(-1, data, p.grad(theta, false))
}

// perExampleGrad returns (1/n) Σᵢ wᵢ ∇ℓᵢ(θ) with wᵢ = weight(ℓᵢ(θ)).
func (p *problem) perExampleGrad(theta []float64, weight func(ell float64) float64) []float64 {
	out := make([]float64, len(theta))
	for i := range p.x {
		ex := p.example(i)
		out = axpy(weight(ex.loss(theta))/float64(len(p.x)), ex.grad(theta, false), out)
	}
	return out
}

// TestFloodingAscentDescent: below the flood level the step is gradient ascent on the data loss, above it
// descent; the AddLoss term is outside the flood.
func TestFloodingAscentDescent(t *testing.T) {
	p := newProblem(21, 12, 3, 4, 0.01)
	const lr = 0.2
	theta0 := p.theta0()
	data, reg := p.dataGrad(theta0)
	noReg := *p
	noReg.lambda = 0
	meanLoss := noReg.loss(theta0) // ℓ̄(θ)
	for _, tc := range []struct {
		name string
		b    float64
		sign float64
	}{{"below b: ascent", meanLoss + 0.5, -1}, {"above b: descent", meanLoss / 2, +1}} {
		theta1, losses := p.trainWithLoss(t, regularizers.Flooding(squaredLoss, tc.b), sgd(lr), 1)
		want := axpy(-lr, axpy(tc.sign, data, reg), theta0)
		assert.Less(t, relErr(theta1, want), 1e-10, tc.name)
		assert.InDelta(t, math.Abs(meanLoss-tc.b)+tc.b+p.loss(theta0)-meanLoss, losses[0], 1e-12, tc.name)
	}
}

// TestIFloodPerExample: iFlood ascends the examples whose own loss is below b and descends the others.
func TestIFloodPerExample(t *testing.T) {
	p := newProblem(22, 12, 3, 4, 0.01)
	const lr = 0.2
	theta0 := p.theta0()
	var ells []float64
	for i := range p.x {
		ells = append(ells, p.example(i).loss(theta0))
	}
	sorted := slices.Sorted(slices.Values(ells))
	b := (sorted[5] + sorted[6]) / 2 // half the examples below b
	_, reg := p.dataGrad(theta0)
	sign := func(ell float64) float64 { return math.Copysign(1, ell-b) }
	theta1, _ := p.trainWithLoss(t, regularizers.IFlood(squaredLoss, b), sgd(lr), 1)
	want := axpy(-lr, axpy(1, p.perExampleGrad(theta0, sign), reg), theta0)
	assert.Less(t, relErr(theta1, want), 1e-10)
	// Differs from flooding the mean at the same b: the test can fail.
	flood, _ := p.trainWithLoss(t, regularizers.Flooding(squaredLoss, b), sgd(lr), 1)
	assert.Greater(t, relErr(theta1, flood), 1e-3)
}

// TestSoftADModel: SoftAD's step is −lr[(σ/n) Σᵢ φ((ℓᵢ − b)/σ)∇ℓᵢ + ∇R], φ(x) = x/√(x² + 1).
func TestSoftADModel(t *testing.T) {
	p := newProblem(23, 12, 3, 4, 0.01)
	const lr, b, sigma = 0.2, 0.3, 0.2
	theta0 := p.theta0()
	_, reg := p.dataGrad(theta0)
	phi := func(ell float64) float64 { x := (ell - b) / sigma; return sigma * x / math.Sqrt(x*x+1) }
	theta1, _ := p.trainWithLoss(t, regularizers.SoftAD(squaredLoss, b, sigma), sgd(lr), 1)
	want := axpy(-lr, axpy(1, p.perExampleGrad(theta0, phi), reg), theta0)
	assert.Less(t, relErr(theta1, want), 1e-10)
}

// TestFloodingPerformsFGR: with SGD at learning rate η, if L(θ) < b < L(θ + η∇L(θ)), two flooding steps
// give θ” = θ − η[∇L(θ + η∇L(θ)) − ∇L(θ)]: η times the F-GR correction γ[∇L(θ + εg₁) − g₁]/ε with
// γ = ε = η. Checked against the float64 formula and against the correction gr.ForwardDifference
// computes on the same batch.
func TestFloodingPerformsFGR(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(24, 12, 3, 4, 0) // no AddLoss term: L is the data loss that is flooded
	const eta = 0.1
	theta := p.theta0()
	g1 := p.grad(theta, false)
	ascended := axpy(eta, g1, theta)
	lower, upper := p.loss(theta), p.loss(ascended)
	require.Less(t, lower, upper, "the ascent step increases the loss")
	b := (lower + upper) / 2

	theta2, losses := p.trainWithLoss(t, regularizers.Flooding(squaredLoss, b), sgd(eta), 2)
	assert.InDelta(t, 2*b-lower, losses[0], 1e-12, "step 1 is below b")
	assert.InDelta(t, upper, losses[1], 1e-12, "step 2 is above b")

	// Against the formula.
	correction := axpy(-1, g1, p.grad(ascended, false)) // ∇L(θ + ηg₁) − g₁
	assert.Less(t, relErr(theta2, axpy(-eta, correction, theta)), 1e-10, "θ'' = θ − η[∇L(θ + η∇L(θ)) − ∇L(θ)]")

	// Against the gr package: one F-GR step with γ = ε = η and SGD(1) moves θ by −g_F, plain SGD(1) by −g₁,
	// so the F-GR correction is g_F − g₁ = θ_SGD − θ_F.
	thetaF, _ := p.trainSteps(t, gr.ForwardDifference(sgd(1)).Gamma(eta).Epsilon(eta).Done(), false, 1)
	thetaSGD, _ := p.trainSteps(t, sgd(1), false, 1)
	grCorrection := axpy(-1, thetaF, thetaSGD)
	assert.Less(t, relErr(grCorrection, correction), 1e-10, "gr's F-GR correction is the formula's")
	assert.Less(t, relErr(theta2, axpy(-eta, grCorrection, theta)), 1e-10, "θ'' = θ − η·(F-GR correction)")
	assert.Greater(t, normVec(correction), 1e-3*normVec(g1), "the correction is not negligible")
}
