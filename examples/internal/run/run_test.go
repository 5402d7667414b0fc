package run

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/ml/context"

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// parse parses args for an example without data (enough for the settings).
func parse(t *testing.T, args ...string) (*Runner, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ex := &Example{Name: "test", Settings: []Setting{{Key: "test_width", Flag: "width", Default: 8, Usage: "w"}},
		Defaults: map[string]any{ParamSteps: 10}}
	return Parse(ex, fs, args)
}

func mustParse(t *testing.T, args ...string) *Runner {
	t.Helper()
	r, err := parse(t, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return r
}

// rho returns gr_rho of the context of entry i.
func rho(t *testing.T, r *Runner, i int) float64 {
	t.Helper()
	ctx, err := r.newContext(r.Entries()[i], 1)
	if err != nil {
		t.Fatal(err)
	}
	return context.GetParamOr(ctx, gr.ParamRho, math.NaN())
}

// The flags give each method its own ρ unless -rho, -set or a -compare entry says otherwise.
func TestPerMethodDefaultsThroughFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []float64 // gr_rho of each entry
	}{
		{[]string{"-method=asam"}, []float64{gr.DefaultASAMRho}},
		{[]string{"-method=gnp"}, []float64{gr.DefaultGNPRho}},
		{[]string{"-method=sam"}, []float64{gr.DefaultRho}},
		{[]string{"-method=usam"}, []float64{gr.DefaultUSAMRho}},
		{[]string{"-method=asam", "-rho=0.2"}, []float64{0.2}},
		{[]string{"-method=gnp", "-set=gr_rho=0.3"}, []float64{0.3}},
		{[]string{"-method=gnp", "-rho=0.2", "-set=gr_rho=0.3"}, []float64{0.3}}, // -set comes after the flags
		{[]string{"-compare=sam,asam,gnp"}, []float64{gr.DefaultRho, gr.DefaultASAMRho, gr.DefaultGNPRho}},
		{[]string{"-compare=asam,asam:gr_rho=1"}, []float64{gr.DefaultASAMRho, 1}},
		{[]string{"-compare=forward,asam", "-rho=0.7"}, []float64{math.NaN(), 0.7}},
	} {
		r := mustParse(t, c.args...)
		for i, want := range c.want {
			got := rho(t, r, i)
			if math.IsNaN(want) {
				if _, reads := mustDefaults(t, r.Entries()[i].Method)[gr.ParamRho]; reads {
					t.Errorf("%q: entry %d reads gr_rho", c.args, i)
				}
				continue
			}
			if got != want {
				t.Errorf("%q: entry %d (%s) has gr_rho = %g, want %g", c.args, i, r.Entries()[i], got, want)
			}
		}
	}
}

func mustDefaults(t *testing.T, method string) map[string]any {
	t.Helper()
	m, _, err := methodParams(method)
	if err != nil {
		t.Fatal(err)
	}
	d, err := paramDefaults(m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Flags, -set and entries all write the same context key; bad values and keys the method does not read
// are errors naming them.
func TestSettingsFlagsAndErrors(t *testing.T) {
	r := mustParse(t, "-method=forward", "-gamma=0.2", "-width=16", "-lr=0.01", "-set=gr_every=5;gr_warmup=10")
	ctx, err := r.Context()
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{gr.ParamGamma: 0.2, gr.ParamEpsilon: gr.DefaultEpsilon, "test_width": 16,
		ParamLearningRate: 0.01, gr.ParamEvery: 5, gr.ParamWarmUp: 10, gr.ParamMethod: "forward"} {
		if got, _ := ctx.GetParam(key); got != want {
			t.Errorf("%s = %v (%T), want %v (%T)", key, got, got, want, want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-method=forward", "-rho=0.1"}, "gr_rho is not a hyperparameter of method forward"},
		{[]string{"-compare=forward:gr_rho=0.1,sam"}, "gr_rho is not a hyperparameter of method forward"},
		{[]string{"-method=sgd", "-gamma=0.1"}, "gr_gamma is not a hyperparameter of method sgd"},
		{[]string{"-method=nope"}, "valid values are sgd|"},
		{[]string{"-compare=sgd,nope"}, "-compare entry \"nope\""},
		{[]string{"-compare=sgd,sgd"}, "twice"},
		{[]string{"-width=x"}, "invalid"},
		{[]string{"-set=unknown_key=1"}, "unknown_key"},
		{[]string{"-seeds=0"}, "-seeds"},
		{[]string{"-compare=sgd,forward", "-checkpoint=/tmp/x"}, "single run"},
		{[]string{"-method=forward", "-flood=0.3"}, "flood_level (-flood) is read by the loss wrappers"},
		{[]string{"-compare=sgd,flooding:softad_sigma=0.1"}, "softad_sigma is read by the loss wrappers"},
	} {
		if _, err := parse(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

func TestParseCompare(t *testing.T) {
	entries, err := ParseCompare("sgd, forward,forward:gr_every=5;gr_gamma=0.1,db:mnist_hidden=256,128,sam")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sgd", "forward", "forward:gr_every=5;gr_gamma=0.1", "db:mnist_hidden=256,128", "sam"}
	if len(entries) != len(want) {
		t.Fatalf("entries %v, want %v", entries, want)
	}
	for i, e := range entries {
		if e.String() != want[i] {
			t.Errorf("entry %d = %q, want %q", i, e.String(), want[i])
		}
	}
	if l := entries[2].Label(); l != "F-GR gr_every=5;gr_gamma=0.1" {
		t.Errorf("label %q", l)
	}
}

// The 95 % interval against hand computations with the tabulated Student-t quantiles
// t_{0.975,1} = 12.7062047 and t_{0.975,2} = 4.30265273.
func TestPairedDiffCI(t *testing.T) {
	// d = (1, 2, 3): mean 2, s = 1, half-width 4.30265273/√3 = 2.48413771.
	p := PairedDiff([]float64{0, 0, 0}, []float64{1, 2, 3})
	check := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-7 {
			t.Errorf("%s = %.9g, want %.9g", name, got, want)
		}
	}
	check("mean", p.Mean, 2)
	check("lo", p.Lo, 2-2.48413771)
	check("hi", p.Hi, 2+2.48413771)
	if p.Positive != 3 || p.N != 3 {
		t.Errorf("positive %d of %d, want 3 of 3", p.Positive, p.N)
	}
	// a = (0.90, 0.91), b = (0.92, 0.88): d = (0.02, −0.03), mean −0.005, s = 0.05/√2 = 0.0353553391,
	// half-width 12.7062047·0.0353553391/√2 = 0.317655118.
	p = PairedDiff([]float64{0.90, 0.91}, []float64{0.92, 0.88})
	check("mean", p.Mean, -0.005)
	check("lo", p.Lo, -0.005-0.317655118)
	check("hi", p.Hi, -0.005+0.317655118)
	if p.Positive != 1 {
		t.Errorf("positive %d, want 1", p.Positive)
	}
	if p = PairedDiff([]float64{1}, []float64{2}); !math.IsNaN(p.Lo) || p.Mean != 1 {
		t.Errorf("one seed: %+v, want mean 1 and no interval", p)
	}
	rows := Rows([]Entry{{Method: "sgd"}, {Method: "forward"}}, [][]*Result{
		{{Seed: 1, TestAccuracy: 0.90, StepTime: time.Second}, {Seed: 2, TestAccuracy: 0.91, StepTime: time.Second}},
		{{Seed: 2, TestAccuracy: 0.88, StepTime: 2 * time.Second}, {Seed: 1, TestAccuracy: 0.92, StepTime: 2 * time.Second}}})
	table := FormatTable(rows)
	for _, want := range []string{"| SGD | 90.50% ± 0.71 | — |", "| F-GR | 90.00% ± 2.83 | -0.50 [-32.27, +31.27] | 1/2 |",
		"(2.00×)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

func TestMeanStepTime(t *testing.T) {
	ms := time.Millisecond
	// The first two steps (compilation) are left out; the hook time is subtracted.
	got := meanStepTime([]time.Duration{900 * ms, 800 * ms, 10 * ms, 50 * ms, 10 * ms},
		[]time.Duration{0, 0, 0, 40 * ms, 0})
	if got != 10*ms {
		t.Errorf("mean step time %s, want 10ms", got)
	}
}

// -merge combines comparisons of disjoint seeds into the table a single comparison would give.
func TestMerge(t *testing.T) {
	dir := t.TempDir()
	entries := []Entry{{Method: "sgd"}, {Method: "forward", Settings: "gr_every=5"}}
	grMethods := []string{`"none"`, `"forward"`}
	acc := map[int64][]float64{1: {0.90, 0.93}, 2: {0.91, 0.92}, 3: {0.89, 0.95}}
	all := make([][]*Result, 2)
	var files []string
	for _, seed := range []int64{3, 1, 2} {
		r := mustParse(t, "-out="+filepath.Join(dir, fmt.Sprint(seed)))
		rep := &Report{Entries: entries, Results: make([][]*Result, 2), Example: "test", Seeds: 1}
		for i, e := range entries {
			res := &Result{Entry: e.Label(), Spec: e.String(), Method: e.Method, Seed: seed,
				Settings:     map[string]string{ParamSteps: "10", "gr_every": fmt.Sprint(5 * i), gr.ParamMethod: grMethods[i]},
				TestAccuracy: acc[seed][i], StepTime: time.Duration(i+1) * time.Millisecond,
				Curve: []Point{{Step: 10, TestAccuracy: acc[seed][i]}}}
			rep.Results[i] = []*Result{res}
			all[i] = append(all[i], res)
		}
		rep.Rows = Rows(entries, rep.Results)
		if err := r.writeReport(rep); err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.Join(dir, fmt.Sprint(seed), "test_compare.json"))
	}
	r := mustParse(t, "-merge="+strings.Join(files, ","), "-out="+dir)
	rep, err := r.Run()
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		slices.SortFunc(all[i], func(a, b *Result) int { return int(a.Seed - b.Seed) })
	}
	if got, want := FormatTable(rep.Rows), FormatTable(Rows(entries, all)); got != want {
		t.Errorf("merged table\n%s\nwant\n%s", got, want)
	}
	if d := rep.Rows[1].Diff; d == nil || d.N != 3 || d.Positive != 3 || math.Abs(d.Mean-(0.03+0.01+0.06)/3) > 1e-12 {
		t.Errorf("merged difference %+v, want 3 paired seeds, all positive, mean 0.0333", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "test_compare_accuracy.png")); err != nil {
		t.Errorf("no merged PNG: %v", err)
	}
	// -compare picks and orders the entries: the reference is now F-GR gr_every=5.
	rep, err = mustParse(t, "-merge="+strings.Join(files, ","), "-out="+dir, "-compare=forward:gr_every=5,sgd").Run()
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Rows[1].Diff; rep.Rows[0].Entry != "F-GR gr_every=5" || d == nil || d.Positive != 0 ||
		math.Abs(d.Mean+(0.03+0.01+0.06)/3) > 1e-12 {
		t.Errorf("reordered merge: rows %+v, want F-GR gr_every=5 first and SGD at -0.0333", rep.Rows)
	}
	if _, err := mustParse(t, "-merge="+files[0]+","+files[0]).Run(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("merging a file with itself: %v, want an error", err)
	}
	// Runs that cannot be compared: another seed layout, other settings, no settings recorded.
	write := func(name string, results [][]*Result) string {
		r := mustParse(t, "-out="+filepath.Join(dir, name))
		rep := &Report{Entries: entries, Results: results, Rows: Rows(entries, results), Example: "test", Seeds: 1}
		if err := r.writeReport(rep); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, name, "test_compare.json")
	}
	res := func(i int, seed int64, steps string) *Result {
		settings := map[string]string{ParamSteps: steps, "gr_every": fmt.Sprint(5 * i), gr.ParamMethod: grMethods[i]}
		if steps == "" {
			settings = nil
		}
		return &Result{Entry: entries[i].Label(), Spec: entries[i].String(), Method: entries[i].Method, Seed: seed,
			Settings: settings, Curve: []Point{{Step: 10}}}
	}
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{write("layout", [][]*Result{{res(0, 1, "10")}, {res(1, 1, "10"), res(1, 2, "10")}})}, "has seeds 1,2"},
		{[]string{files[0], write("steps", [][]*Result{{res(0, 7, "20")}, {res(1, 7, "20")}})}, "train_steps 10 vs 20"},
		{[]string{write("old", [][]*Result{{res(0, 8, "")}, {res(1, 8, "")}})}, "without the runs' settings"},
	} {
		_, err := mustParse(t, "-merge="+strings.Join(c.files, ","), "-out="+filepath.Join(dir, "refused")).Run()
		if err == nil || !strings.Contains(err.Error(), c.want) || !IsUsage(err) {
			t.Errorf("merging %v: %v, want a usage error containing %q", c.files, err, c.want)
		}
	}
	// The seed layout refused above merges when -compare leaves out the entry with fewer seeds.
	layout := write("layout2", [][]*Result{{res(0, 1, "10")}, {res(1, 1, "10"), res(1, 2, "10")}})
	rep, err = mustParse(t, "-merge="+layout, "-out="+filepath.Join(dir, "chosen"), "-compare=forward:gr_every=5").Run()
	if err != nil || len(rep.Rows) != 1 || rep.Seeds != 2 {
		t.Errorf("merging F-GR's two seeds without SGD's one: %v, rows %+v", err, rep)
	}
}

// -gradients chooses the gradients of matrix products for the whole run, also for an example whose
// own NewBackend does not go through grbackend.New; a bad value is a usage error naming the flag.
func TestGradientsFlag(t *testing.T) {
	defer grgrad.Uninstall()
	ex := &Example{Name: "dotgrad", Defaults: map[string]any{ParamSteps: 1}, NewBackend: func() (backends.Backend, error) { return backends.NewWithConfig("go") }}
	for _, c := range []struct {
		flag string
		want bool
	}{{"-gradients=gomlx", false}, {"-gradients=grgrad", true}, {"-gradients=gomlx", false}} {
		r, err := Parse(ex, flag.NewFlagSet("dotgrad", flag.ContinueOnError), []string{c.flag})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.initBackend(); err != nil {
			t.Fatal(err)
		}
		if grgrad.Installed() != c.want {
			t.Errorf("%s: grgrad installed %v", c.flag, grgrad.Installed())
		}
		if d := r.describeBackend(); strings.Contains(d, "by grgrad") != c.want {
			t.Errorf("%s: the tables' backend %q", c.flag, d)
		}
	}
	r, err := Parse(ex, flag.NewFlagSet("dotgrad", flag.ContinueOnError), []string{"-gradients=fast"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.initBackend(); err == nil || !strings.Contains(err.Error(), "-gradients") {
		t.Errorf("-gradients=fast: error %v, want one naming the flag", err)
	}
}

// The base optimizer alone is labelled after it: a table of Adam against F-GR does not say "SGD".
func TestBaseLabel(t *testing.T) {
	for _, c := range []struct {
		base string
		args []string
		want []string
	}{
		{"adam", []string{"-compare=none,forward"}, []string{"Adam", "F-GR"}},
		{"momentum", []string{"-compare=sgd,forward"}, []string{"SGD", "F-GR"}},
		{"momentum", []string{"-compare=sgd,sgd:optimizer=adam"}, []string{"SGD", "Adam optimizer=adam"}},
		{"sgd", []string{"-base=adam", "-method=none"}, []string{"Adam"}},
	} {
		ex := &Example{Name: "label", Defaults: map[string]any{ParamSteps: 1, ParamOptimizer: c.base}}
		r, err := Parse(ex, flag.NewFlagSet("label", flag.ContinueOnError), c.args)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range r.Entries() {
			got = append(got, e.Label())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("base %s, %q: labels %q, want %q", c.base, c.args, got, c.want)
		}
	}
}
