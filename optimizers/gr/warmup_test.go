package gr_test

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
)

// TestWarmUpSchedule: with WarmUp(W) step t uses g₁ + min(1, t/W)·c, with ZeroWarmUp(W) g₁ for t < W and
// the full method after; checked against the float64 reference over a trajectory, with and without Every.
func TestWarmUpSchedule(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(21, 12, 3, 4, 0.01)
	const lr, gamma, eps, steps = 0.3, 0.07, 0.03, 7
	for _, tc := range []struct {
		name  string
		cfg   func(*gr.Config) *gr.Config
		w     func(t int) float64
		every int
	}{
		{"linear4", func(c *gr.Config) *gr.Config { return c.WarmUp(4) },
			func(t int) float64 { return math.Min(1, float64(t)/4) }, 1},
		{"zero3", func(c *gr.Config) *gr.Config { return c.ZeroWarmUp(3) },
			func(t int) float64 { return map[bool]float64{true: 0, false: 1}[t < 3] }, 1},
		{"linear5-every2", func(c *gr.Config) *gr.Config { return c.WarmUp(5).Every(2) },
			func(t int) float64 { return math.Min(1, float64(t)/5) }, 2},
		{"none", func(c *gr.Config) *gr.Config { return c.WarmUp(0) },
			func(int) float64 { return 1 }, 1},
	} {
		for _, method := range []string{"forward", "db"} {
			theta := p.theta0()
			var c []float64
			var want [][]float64
			for step := range steps {
				g1 := p.grad(theta, false)
				if step%tc.every == 0 {
					c = axpy(-1, g1, referenceGradient(p, method, theta, gamma, eps, false, false))
				}
				theta = axpy(-lr, axpy(tc.w(step), c, g1), theta)
				want = append(want, theta)
			}
			got := p.run(t, context.New(), tc.cfg(buildCfg(method, sgd(lr), gamma, eps)).Done(), steps, true, nil)
			for step := range steps {
				assert.Less(t, relErr(got[step], want[step]), 1e-8, "%s %s step %d", tc.name, method, step)
			}
			if tc.name == "zero3" {
				// The first steps are plain SGD steps, exactly.
				plain := p.run(t, context.New(), sgd(lr), 3, false, nil)
				assert.Less(t, relErr(got[2], plain[2]), 1e-14)
			}
		}
	}
}
