package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
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

// refGrad returns ∇L at (u, v) of one DLN model in float64, (2u⊙r, −2v⊙r) with r = Xᵀ(Xw − y)/n, and L.
func refGrad(p *Problem, u, v []float64) (gu, gv []float64, loss float64) {
	w := make([]float64, p.D)
	for i := range w {
		w[i] = u[i]*u[i] - v[i]*v[i]
	}
	r, loss := p.Residual(w)
	gu, gv = make([]float64, p.D), make([]float64, p.D)
	for i := range r {
		gu[i], gv[i] = 2*u[i]*r[i], -2*v[i]*r[i]
	}
	return gu, gv, loss
}

// refTrajectory runs one model alone in float64 with F-GR, g = g₁ + (γ/ε)(∇L(θ + εg₁) − g₁), or (db) with
// ClosedFormDB, with the masking rule of maskedPredict written out: the model stops at the first step whose
// loss at θ is non-finite or above MaxLoss, and (F-GR) a perturbed point whose loss is non-finite or above
// MaxLoss contributes a zero gradient. It returns the final (u, v), the number of updates applied and
// whether it stopped.
func refTrajectory(p *Problem, method string, alpha, lr, gamma, eps float64, steps int) (u, v []float64, updates int, stopped bool) {
	u, v = make([]float64, p.D), make([]float64, p.D)
	for i := range u {
		u[i], v[i] = alpha, alpha
	}
	bad := func(l float64) bool { return math.IsNaN(l) || math.IsInf(l, 0) || l > MaxLoss }
	for t := range steps {
		gu, gv, loss := refGrad(p, u, v)
		if bad(loss) {
			return u, v, t, true
		}
		if method == "db" {
			du, dv := p.ClosedFormDB(u, v, gamma)
			for i := range u {
				u[i] -= lr * du[i]
				v[i] -= lr * dv[i]
			}
			continue
		}
		pu, pv := make([]float64, p.D), make([]float64, p.D)
		for i := range u {
			pu[i], pv[i] = u[i]+eps*gu[i], v[i]+eps*gv[i]
		}
		au, av, ploss := refGrad(p, pu, pv)
		if bad(ploss) {
			au, av = make([]float64, p.D), make([]float64, p.D)
		}
		for i := range u {
			u[i] -= lr * (gu[i] + gamma/eps*(au[i]-gu[i]))
			v[i] -= lr * (gv[i] + gamma/eps*(av[i]-gv[i]))
		}
	}
	return u, v, steps, false
}

// TestDivergedModelIsMasked batches a model with a stable step size and one with a step size far above the
// stability limit (F-GR and DB-GR, pure-Go backend, float64), and one whose loss becomes NaN. Before the mask, the diverging model turned the batch
// loss into NaN and the whole batch was lost. Now the diverging model must be reported as diverged after
// exactly the number of updates the independent float64 trajectory takes before its loss leaves [0, MaxLoss],
// frozen at those weights, and the stable model must end exactly where it ends when trained alone.
func TestDivergedModelIsMasked(t *testing.T) {
	const gamma, eps, steps = 0.05, 0.05, 40
	p := NewProblem(3, 8, 5, 2, 0.1)
	stable := Model{Problem: p, Alpha: 0.5, LR: 0.01}
	diverging := Model{Problem: p, Alpha: 0.5, LR: 5}       // loss above MaxLoss after 2 updates
	overflowing := Model{Problem: p, Alpha: 0.5, LR: 1e200} // weights ~1e200 after 1 update: loss NaN (Inf − Inf)
	models := []Model{stable, diverging, overflowing}
	for _, method := range []Method{{Name: "forward", Epsilon: eps}, {Name: "db"}} {
		rs, err := TrainBatch(pureGo(t), method, models,
			Settings{Gamma: gamma, Tol: 0, MaxSteps: steps, CheckEvery: 7, Quiet: true})
		if err != nil {
			t.Fatalf("%s: a diverging model must not fail the batch: %v", method.Label(), err)
		}
		for k, m := range models {
			u, v, updates, stopped := refTrajectory(p, method.Name, m.Alpha, m.LR, gamma, eps, steps)
			r := rs[k]
			t.Logf("%s model %d (lr %g): diverged=%v steps=%d loss=%g; reference: stopped=%v after %d updates",
				method.Label(), k, m.LR, r.Diverged, r.Steps, r.TrainLoss, stopped, updates)
			if r.Diverged != stopped || r.Steps != updates {
				t.Fatalf("%s model %d: diverged=%v after %d updates, the reference %v after %d", method.Label(), k,
					r.Diverged, r.Steps, stopped, updates)
			}
			for i := range u {
				if !closeOrSameNaN(r.U[i], u[i]) || !closeOrSameNaN(r.V[i], v[i]) {
					t.Fatalf("%s model %d coordinate %d: (u, v) = (%.15g, %.15g), reference (%.15g, %.15g)",
						method.Label(), k, i, r.U[i], r.V[i], u[i], v[i])
				}
			}
		}
		if !rs[1].Diverged || rs[1].Steps == 0 || rs[1].Steps >= steps {
			t.Fatalf("%s: the test needs a model that diverges after a few updates: got diverged=%v after %d",
				method.Label(), rs[1].Diverged, rs[1].Steps)
		}
		if rs[0].Diverged || math.IsNaN(rs[0].TrainLoss) {
			t.Fatalf("%s: the stable model must not diverge: %+v", method.Label(), rs[0])
		}
		if l := rs[1].TrainLoss; !(math.IsNaN(l) || math.IsInf(l, 0) || l > MaxLoss) {
			t.Fatalf("%s: the diverged model's reported loss %g should be non-finite or above %g", method.Label(), l,
				float64(MaxLoss))
		}
		if r := rs[2]; !r.Diverged || r.Steps != 1 || !math.IsNaN(r.TrainLoss) || math.IsInf(r.U[0], 0) {
			t.Fatalf("%s: the overflowing model should be masked after 1 update with a NaN loss and its finite "+
				"weights kept: diverged=%v steps=%d loss=%g u[0]=%g", method.Label(), r.Diverged, r.Steps,
				r.TrainLoss, r.U[0])
		}
	}
}

// closeOrSameNaN reports whether a and b agree to a relative 1e-9 (or are both NaN).
func closeOrSameNaN(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// Every flag is checked before any work: a bad value exits with code 2 and a message naming the flag; a
// single α (a log axis of one point) plots.
func TestCommandLine(t *testing.T) {
	out := t.TempDir()
	file := filepath.Join(out, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		code  int
		words []string
	}{
		{[]string{"-d=0"}, 2, []string{"-d", "≥ 1", "got 0"}},
		{[]string{"-d=10", "-k=20"}, 2, []string{"-k", "at most -d = 10", "got 20"}},
		{[]string{"-seeds=0"}, 2, []string{"-seeds", "got 0"}},
		{[]string{"-n=0"}, 2, []string{"-n", "got 0"}},
		{[]string{"-max_steps=0"}, 2, []string{"-max_steps", "got 0"}},
		{[]string{"-lr=0"}, 2, []string{"-lr", "> 0", "got 0"}},
		{[]string{"-lr=Inf"}, 2, []string{"-lr", "finite"}},
		{[]string{"-lr_scale=-1"}, 2, []string{"-lr_scale"}},
		{[]string{"-noise=-1"}, 2, []string{"-noise", "≥ 0", "got -1"}},
		{[]string{"-gamma=NaN"}, 2, []string{"-gamma", "NaN"}},
		{[]string{"-tol=0"}, 2, []string{"-tol", "> 0"}},
		{[]string{"-alphas=0.1,x"}, 2, []string{"-alphas", "\"x\""}},
		{[]string{"-alphas=-1"}, 2, []string{"-alphas", "positive"}},
		{[]string{"-eps=0"}, 2, []string{"-eps", "positive"}},
		{[]string{"-methods=gd,sgd"}, 2, []string{"-methods", "sgd", "gd,db,forward,backward,central"}},
		{[]string{"-methods=gd,gd"}, 2, []string{"-methods", "twice"}},
		{[]string{"-bogus"}, 2, []string{"-bogus"}},
		{[]string{"-d=x"}, 2, []string{"-d"}},
		{[]string{"extra"}, 2, []string{"unexpected arguments"}},
		{[]string{"-out=" + file}, 2, []string{"-out", "plain-file"}},
		{[]string{"-alphas=0.1", "-d=10", "-n=5", "-k=2", "-seeds=1", "-max_steps=20", "-methods=gd,forward",
			"-eps=0.1", "-out=" + out}, 0, nil},
	} {
		var stderr bytes.Buffer
		code := runMain(c.args, &stderr)
		if code != c.code {
			t.Errorf("%q: exit code %d, want %d: %s", c.args, code, c.code, stderr.String())
		}
		for _, w := range c.words {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: message lacks %q: %s", c.args, w, stderr.String())
			}
		}
		if strings.Contains(stderr.String(), "goroutine ") {
			t.Errorf("%q: a stack trace: %s", c.args, stderr.String())
		}
	}
	for _, name := range []string{"dln.csv", "dln_test_error.png", "dln_alpha_eff.png"} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v (size %v): want a non-empty file", name, err, fi)
		}
	}
}
