package main

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego"
)

func pureGo(t *testing.T) backends.Backend {
	t.Helper()
	backend, err := backends.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	return backend
}

// TestDBGradientClosedForm checks two DB-GR steps of two batched models against the closed form of the DLN
// gradient plus γHg₁ (pure-Go backend, float64).
func TestDBGradientClosedForm(t *testing.T) {
	const gamma = 0.3
	p1, p2 := NewProblem(1, 8, 5, 2, 0.1), NewProblem(2, 8, 5, 2, 0.1)
	models := []Model{{Problem: p1, Alpha: 0.7, LR: 0.01}, {Problem: p2, Alpha: 1.3, LR: 0.02}}
	const steps = 2
	rs, err := TrainBatch(pureGo(t), Method{Name: "db"}, models,
		Settings{Gamma: gamma, Tol: 0, MaxSteps: steps, CheckEvery: 100, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	for k, m := range models {
		d := m.Problem.D
		u, v := make([]float64, d), make([]float64, d)
		for i := range d {
			u[i], v[i] = m.Alpha, m.Alpha
		}
		for range steps {
			gu, gv := m.Problem.ClosedFormDB(u, v, gamma)
			for i := range d {
				u[i] -= m.LR * gu[i]
				v[i] -= m.LR * gv[i]
			}
		}
		for i := range d {
			if math.Abs(rs[k].U[i]-u[i]) > 1e-12 || math.Abs(rs[k].V[i]-v[i]) > 1e-12 {
				t.Fatalf("model %d coordinate %d: (u, v) = (%.15g, %.15g), closed form gives (%.15g, %.15g)",
					k, i, rs[k].U[i], rs[k].V[i], u[i], v[i])
			}
		}
		if rs[k].U[0] == m.Alpha {
			t.Fatalf("model %d did not move", k)
		}
	}
}

// TestAlphaEffOrderings runs a reduced grid (one α, one seed) and checks the orderings the theory predicts
// for the effective initialization scale: F-GR with the larger ε < F-GR with the smaller ε < DB-GR < B-GR,
// and DB-GR < GD.
func TestAlphaEffOrderings(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: trains five DLN models to convergence (a few seconds)")
	}
	c := DefaultConfig()
	c.Alphas, c.Seeds, c.Quiet = []float64{0.1}, 1, true
	c.Epsilons = []float64{0.02, 0.1}
	c.Methods = []string{"gd", "db", "forward", "backward"}
	results, err := Run(pureGo(t), c)
	if err != nil {
		t.Fatal(err)
	}
	eff := map[string]float64{}
	for _, r := range results {
		if !r.Converged {
			t.Fatalf("%s did not converge in %d steps (loss %g)", r.Method.Label(), r.Steps, r.TrainLoss)
		}
		eff[r.Method.Label()] = r.AlphaEff
		t.Logf("%-12s α_eff/α = %.4f, test error %.4f, %d steps", r.Method.Label(), r.AlphaEff/r.Alpha,
			r.TestError, r.Steps)
	}
	order := []string{"F-GR ε=0.1", "F-GR ε=0.02", "DB-GR", "B-GR ε=0.02", "B-GR ε=0.1"}
	for i := 1; i < len(order); i++ {
		if !(eff[order[i-1]] < eff[order[i]]) {
			t.Errorf("want α_eff(%s) < α_eff(%s), got %.5g ≥ %.5g", order[i-1], order[i], eff[order[i-1]], eff[order[i]])
		}
	}
	if !(eff["DB-GR"] < eff["GD"]) {
		t.Errorf("want α_eff(DB-GR) < α_eff(GD), got %.5g ≥ %.5g", eff["DB-GR"], eff["GD"])
	}
}
