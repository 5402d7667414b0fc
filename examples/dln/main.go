// Command dln reproduces the diagonal-linear-network experiment of Karakida et al. (ICML 2023) in the
// setting of Woodworth et al. (2020): f(x) = ⟨u⊙u − v⊙v, x⟩, u = v = α·1 at initialization, sparse noiseless
// regression (d = 100, n = 40, 5 non-zero entries of w*), full-batch gradient descent until the training
// loss is below 1e-6, with GD, DB-GR, F-GR, B-GR and C-GR through the gr optimizers.
//
// It measures the test error ‖w − w*‖² and the effective initialization scale α_eff = √(uᵢvᵢ) (geometric
// mean over coordinates, and on/off the support of w*), writes examples/dln/out/dln.csv, two PNGs and a
// summary table. Every model of the α × seed grid trains in one graph per method (the GR terms of
// independent models separate exactly). Each model's step size is
// min(-lr, -lr_scale/(λ(1 + γλ))), λ = 8·max(α²·λ_max(XᵀX/n), 2) (a bound on the curvature at
// initialization and, with |w*ᵢ| = 1, near the sparse solution), the same for every method.
//
//	go run ./examples/dln
//	go run ./examples/dln -gamma=0.1 -eps=0.02,0.1 -seeds=5
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
)

// Config is the whole experiment.
type Config struct {
	D, N, K          int
	Noise            float64
	Alphas, Epsilons []float64
	Seeds            int
	Methods          []string // gd, db, forward, backward, central (the last three for every ε)
	LRMax, LRScale   float64
	Settings
}

// DefaultConfig is the default run.
func DefaultConfig() Config {
	return Config{D: 100, N: 40, K: 5, Alphas: []float64{0.01, 0.03, 0.1, 0.3, 1},
		Epsilons: []float64{0.02, 0.1}, Seeds: 2, Methods: []string{"gd", "db", "forward", "backward"},
		LRMax: 0.05, LRScale: 1,
		Settings: Settings{Gamma: 0.1, Tol: 1e-6, MaxSteps: 12000, CheckEvery: 10}}
}

// stepSize is the step size of a model: the same for every method.
func (c Config) stepSize(p *Problem, alpha float64) float64 {
	lambda := 8 * math.Max(alpha*alpha*p.LambdaH, 2)
	return math.Min(c.LRMax, c.LRScale/(lambda*(1+c.Gamma*lambda)))
}

// methods expands Methods over the ε grid.
func (c Config) methods() []Method {
	var out []Method
	for _, name := range c.Methods {
		switch name {
		case "forward", "backward", "central":
			for _, eps := range c.Epsilons {
				out = append(out, Method{Name: name, Epsilon: eps})
			}
		default:
			out = append(out, Method{Name: name})
		}
	}
	return out
}

// Run trains the whole grid.
func Run(backend backends.Backend, c Config) ([]*Result, error) {
	var models []Model
	for seed := range c.Seeds {
		p := NewProblem(uint64(seed+1), c.D, c.N, c.K, c.Noise)
		for _, a := range c.Alphas {
			models = append(models, Model{Problem: p, Seed: uint64(seed + 1), Alpha: a, LR: c.stepSize(p, a)})
		}
	}
	var all []*Result
	for _, m := range c.methods() {
		if !c.Quiet {
			fmt.Printf("%s: %d models (α × seed) in one graph\n", m.Label(), len(models))
		}
		start := time.Now()
		rs, err := TrainBatch(backend, m, models, c.Settings)
		if err != nil {
			return nil, errors.WithMessagef(err, "training %s", m.Label())
		}
		if !c.Quiet {
			fmt.Printf("  %s\n", time.Since(start).Round(time.Millisecond))
		}
		all = append(all, rs...)
	}
	return all, nil
}

func main() { os.Exit(runMain(os.Args[1:], os.Stderr)) }

// Exit codes of runMain.
const (
	exitError = 1 // training or writing failed
	exitUsage = 2 // a bad flag, named by the message
)

// runMain is the command: it parses args, validates every flag before any work, trains, prints the
// summary, and writes the CSV and the PNGs (all-or-nothing each). It returns the exit code.
func runMain(args []string, stderr io.Writer) (code int) {
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "dln:", err)
		return code
	}
	defer func() {
		if p := recover(); p != nil {
			code = fail(exitError, fmt.Errorf("internal error: %v", p))
		}
	}()
	c := DefaultConfig()
	fs := flag.NewFlagSet("dln", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alphas := fs.String("alphas", floats(c.Alphas), "initialization scales α (positive, comma-separated)")
	eps := fs.String("eps", floats(c.Epsilons), "finite-difference steps ε of F-GR, B-GR and C-GR (positive)")
	methods := fs.String("methods", strings.Join(c.Methods, ","), "methods: gd,db,forward,backward,central")
	fs.Float64Var(&c.Gamma, "gamma", c.Gamma, "γ of every GR method (≥ 0)")
	fs.IntVar(&c.Seeds, "seeds", c.Seeds, "data seeds (≥ 1)")
	fs.IntVar(&c.D, "d", c.D, "dimension (≥ 1)")
	fs.IntVar(&c.N, "n", c.N, "training points (≥ 1)")
	fs.IntVar(&c.K, "k", c.K, "non-zero entries of w* (1 to -d)")
	fs.Float64Var(&c.Noise, "noise", 0, "standard deviation of label noise (≥ 0)")
	fs.Float64Var(&c.Tol, "tol", c.Tol, "stop a model when its training loss is below this (> 0)")
	fs.IntVar(&c.MaxSteps, "max_steps", c.MaxSteps, "step cap (≥ 1)")
	fs.Float64Var(&c.LRMax, "lr", c.LRMax, "largest step size (> 0)")
	fs.Float64Var(&c.LRScale, "lr_scale", c.LRScale, "step size = min(lr, lr_scale/(λ(1+γλ))) (> 0)")
	out := fs.String("out", filepath.Join("examples", "dln", "out"), "output folder")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, errors.Errorf("unexpected arguments %q: flags only", fs.Args()))
	}
	var err error
	if c.Alphas, err = parseFloats("-alphas", *alphas); err == nil {
		c.Epsilons, err = parseFloats("-eps", *eps)
	}
	if err != nil {
		return fail(exitUsage, err)
	}
	c.Methods = strings.Split(*methods, ",")
	if err := c.Validate(); err != nil {
		return fail(exitUsage, err)
	}
	if err := grcheckpoint.ProbeDir(*out); err != nil { // Before the work, not after it.
		return fail(exitUsage, errors.WithMessage(err, "-out"))
	}
	backend, err := grbackend.New() // An unknown $GOMLX_BACKEND is an error naming it.
	if err != nil {
		return fail(exitUsage, err)
	}
	start := time.Now()
	results, err := Run(backend, c)
	if err != nil {
		return fail(exitError, err)
	}
	fmt.Printf("\nd=%d n=%d k=%d noise=%g γ=%g, %d seeds, tol %g, cap %d steps; %s in all\n", c.D, c.N, c.K,
		c.Noise, c.Gamma, c.Seeds, c.Tol, c.MaxSteps, time.Since(start).Round(time.Second))
	fmt.Print(Summary(c, results))
	if err := WriteCSV(filepath.Join(*out, "dln.csv"), results); err != nil {
		return fail(exitError, err)
	}
	if err := Plot(*out, c, results); err != nil {
		return fail(exitError, err)
	}
	fmt.Printf("wrote %s/dln.csv, dln_test_error.png, dln_alpha_eff.png\n", *out)
	return 0
}

// Validate checks every setting, naming the flag and its valid range.
func (c Config) Validate() error {
	for _, v := range []struct {
		flag     string
		val, min int
	}{{"seeds", c.Seeds, 1}, {"d", c.D, 1}, {"n", c.N, 1}, {"k", c.K, 1}, {"max_steps", c.MaxSteps, 1}} {
		if v.val < v.min {
			return errors.Errorf("-%s must be ≥ %d, got %d", v.flag, v.min, v.val)
		}
	}
	if c.K > c.D {
		return errors.Errorf("-k (non-zero entries of w*) must be at most -d = %d, got %d", c.D, c.K)
	}
	for _, v := range []struct {
		flag     string
		val      float64
		positive bool
	}{{"gamma", c.Gamma, false}, {"noise", c.Noise, false}, {"tol", c.Tol, true}, {"lr", c.LRMax, true},
		{"lr_scale", c.LRScale, true}} {
		if math.IsNaN(v.val) || math.IsInf(v.val, 0) || v.val < 0 || (v.positive && v.val == 0) {
			want := "a finite number ≥ 0"
			if v.positive {
				want = "a finite number > 0"
			}
			return errors.Errorf("-%s must be %s, got %g", v.flag, want, v.val)
		}
	}
	valid := []string{"gd", "db", "forward", "backward", "central"}
	seen := map[string]bool{}
	for _, m := range c.Methods {
		if !slices.Contains(valid, m) {
			return errors.Errorf("unknown method %q in -methods: valid values are %s", m, strings.Join(valid, ","))
		}
		if seen[m] {
			return errors.Errorf("-methods lists %q twice", m)
		}
		seen[m] = true
	}
	return nil
}

func floats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func parseFloats(flag, s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(x > 0) || math.IsInf(x, 0) {
			return nil, errors.Errorf("invalid value %q in %s=%q: want positive finite numbers separated by commas",
				f, flag, s)
		}
		out = append(out, x)
	}
	return out, nil
}

// Cell aggregates the seeds of one (method, α).
type Cell struct {
	Method                                     Method
	Alpha                                      float64
	TestError, AlphaEff, AlphaEffS, AlphaEffS0 float64 // geometric means over seeds (test error: mean)
	Steps                                      int     // largest over seeds
	Converged, Diverged, Runs                  int
}

// Aggregate groups results by (method, α), in grid order.
func Aggregate(results []*Result) []*Cell {
	index := map[string]*Cell{}
	var cells []*Cell
	for _, r := range results {
		key := r.Method.Label() + "/" + strconv.FormatFloat(r.Alpha, 'g', -1, 64)
		c, ok := index[key]
		if !ok {
			c = &Cell{Method: r.Method, Alpha: r.Alpha}
			index[key] = c
			cells = append(cells, c)
		}
		c.Runs++
		if r.Diverged {
			c.Diverged++
			continue
		}
		if r.Converged {
			c.Converged++
		}
		c.TestError += r.TestError
		c.AlphaEff += math.Log(r.AlphaEff)
		c.AlphaEffS += math.Log(r.AlphaEffS)
		c.AlphaEffS0 += math.Log(r.AlphaEffS0)
		c.Steps = max(c.Steps, r.Steps)
	}
	for _, c := range cells {
		ok := float64(c.Runs - c.Diverged)
		if ok == 0 {
			c.TestError, c.AlphaEff, c.AlphaEffS, c.AlphaEffS0 = math.NaN(), math.NaN(), math.NaN(), math.NaN()
			continue
		}
		c.TestError /= ok
		c.AlphaEff, c.AlphaEffS, c.AlphaEffS0 = math.Exp(c.AlphaEff/ok), math.Exp(c.AlphaEffS/ok), math.Exp(c.AlphaEffS0/ok)
	}
	return cells
}

// Summary is the printed table: per method and α, test error and α_eff/α (all, on and off the support).
func Summary(c Config, results []*Result) string {
	cells := Aggregate(results)
	var b strings.Builder
	fmt.Fprintf(&b, "| method | α | test error ‖w−w*‖² | α_eff/α | on supp. | off supp. | steps (max) | converged |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|\n")
	sort.SliceStable(cells, func(i, j int) bool { return cells[i].Alpha < cells[j].Alpha })
	for _, cell := range cells {
		conv := fmt.Sprintf("%d/%d", cell.Converged, cell.Runs)
		if cell.Diverged > 0 {
			conv += fmt.Sprintf(" (%d diverged)", cell.Diverged)
		}
		fmt.Fprintf(&b, "| %s | %g | %.3g | %.3f | %.3f | %.3f | %d | %s |\n", cell.Method.Label(), cell.Alpha,
			cell.TestError, cell.AlphaEff/cell.Alpha, cell.AlphaEffS/cell.Alpha, cell.AlphaEffS0/cell.Alpha,
			cell.Steps, conv)
	}
	return b.String()
}

// WriteCSV writes one row per run (all-or-nothing: an earlier file stays when the write fails).
func WriteCSV(path string, results []*Result) error {
	return grcheckpoint.WriteFile(path, func(f io.Writer) error { return writeCSV(f, results) })
}

func writeCSV(f io.Writer, results []*Result) error {
	w := csv.NewWriter(f)
	_ = w.Write([]string{"method", "epsilon", "alpha", "seed", "lr", "steps", "converged", "diverged",
		"train_loss", "test_error", "alpha_eff", "alpha_eff_support", "alpha_eff_off_support"})
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, r := range results {
		_ = w.Write([]string{r.Method.Name, g(r.Method.Epsilon), g(r.Alpha), strconv.FormatUint(r.Seed, 10),
			g(r.LR), strconv.Itoa(r.Steps), strconv.FormatBool(r.Converged), strconv.FormatBool(r.Diverged),
			g(r.TrainLoss), g(r.TestError), g(r.AlphaEff), g(r.AlphaEffS), g(r.AlphaEffS0)})
	}
	w.Flush()
	return w.Error()
}
