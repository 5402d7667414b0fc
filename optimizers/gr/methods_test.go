package gr_test

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// referenceGradient is each method's combined gradient computed independently in float64.
func referenceGradient(p *problem, method string, theta []float64, gamma, eps float64, normalized, linear bool) []float64 {
	g1 := p.grad(theta, linear)
	h := eps
	if normalized {
		h = eps / (normVec(g1) + gr.NormStabilizer)
	}
	at := func(c float64) []float64 { return p.grad(axpy(c, g1, theta), linear) }
	switch method {
	case "db":
		return axpy(gamma, p.hvp(theta, g1, linear), g1)
	case "forward":
		return axpy(gamma/h, at(h), scaleVec(1-gamma/h, g1))
	case "backward":
		return axpy(-gamma/h, at(-h), scaleVec(1+gamma/h, g1))
	case "central":
		plus, minus := at(h), at(-h)
		return axpy(gamma/(2*h), axpy(-1, minus, plus), g1)
	}
	panic(method)
}

func build(method string, base optimizers.Interface, gamma, eps float64, normalized bool) optimizers.Interface {
	cfg := buildCfg(method, base, gamma, eps)
	if method != "db" { // DB has γ only.
		cfg.Normalized(normalized)
	}
	return cfg.Done()
}

var allMethods = []string{"db", "forward", "backward", "central"}

// TestOneStepMatchesFormula: each method's one-step update equals its formula computed independently in
// float64, on a non-quadratic model (tanh) with an AddLoss term.
func TestOneStepMatchesFormula(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(1, 16, 3, 4, 0.01)
	const lr = 0.3
	theta0 := p.theta0()
	for _, method := range allMethods {
		for _, normalized := range []bool{false, true} {
			if method == "db" && normalized {
				continue
			}
			t.Run(fmt.Sprintf("%s/normalized=%v", method, normalized), func(t *testing.T) {
				gamma, eps := 0.07, 0.03
				theta1, losses := p.trainSteps(t, build(method, sgd(lr), gamma, eps, normalized), false, 1)
				want := axpy(-lr, referenceGradient(p, method, theta0, gamma, eps, normalized, false), theta0)
				assert.Less(t, relErr(theta1, want), 1e-8, "θ after one step")
				assert.InDelta(t, p.loss(theta0), losses[0], 1e-12, "reported loss is L(θ)")
				// And the step differs from plain SGD's: the test can fail.
				assert.Greater(t, relErr(theta1, axpy(-lr, p.grad(theta0, false), theta0)), 1e-6)
			})
		}
	}
}

// TestQuadraticAllCoincide: on a quadratic loss the finite differences are exact, so all four methods
// equal DB for any ε (DB has no ε: it runs once).
func TestQuadraticAllCoincide(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(2, 12, 3, 4, 0)
	theta0 := p.theta0()
	want := axpy(-0.1, referenceGradient(p, "db", theta0, 0.2, 0, false, true), theta0)
	for _, method := range allMethods {
		for _, eps := range []float64{1e-3, 0.1, 1} {
			if method == "db" && eps != 1e-3 {
				continue
			}
			theta1, _ := p.trainSteps(t, build(method, sgd(0.1), 0.2, eps, false), true, 1)
			assert.Less(t, relErr(theta1, want), 1e-10, "%s ε=%g", method, eps)
		}
	}
}

// TestGammaZeroIsBase: with γ = 0 every method is exactly the base step.
func TestGammaZeroIsBase(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(3, 10, 3, 4, 0.01)
	base, _ := p.trainSteps(t, sgd(0.2), false, 2)
	for _, method := range allMethods {
		theta, _ := p.trainSteps(t, build(method, sgd(0.2), 0, 0.05, false), false, 2)
		assert.Equal(t, base, theta, method)
	}
}

// TestForwardGammaEqualsEpsilonIsUSAM: with γ = ε, F-GR's gradient is ∇L(θ + εg₁).
func TestForwardGammaEqualsEpsilonIsUSAM(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(4, 10, 3, 4, 0.01)
	theta0 := p.theta0()
	theta1, _ := p.trainSteps(t, build("forward", sgd(1), 0.05, 0.05, false), false, 1)
	g1 := p.grad(theta0, false)
	want := p.grad(axpy(0.05, g1, theta0), false)
	assert.Less(t, relErr(gradientFromStep(theta0, theta1), want), 1e-8)
}

// TestAdamBase: the combined gradient is handed to Adam like a plain gradient: several steps reduce the loss.
func TestBasesReduceLoss(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(5, 32, 3, 6, 0.001)
	for _, base := range []struct {
		name string
		opt  func() optimizers.Interface
	}{
		{"sgd", func() optimizers.Interface { return sgd(0.1) }},
		{"adam", func() optimizers.Interface { return optimizers.Adam().LearningRate(0.02).Done() }},
	} {
		for _, method := range allMethods {
			_, losses := p.trainSteps(t, build(method, base.opt(), 0.02, 0.02, false), false, 20)
			require.Len(t, losses, 20)
			assert.Less(t, losses[19], 0.8*losses[0], "%s with %s: loss %v", method, base.name, losses)
		}
	}
}
