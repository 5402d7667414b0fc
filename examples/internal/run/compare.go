package run

import (
	"encoding/json"
	stderrors "errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
)

// Entry is one method of a comparison with its own settings.
type Entry struct {
	Method   string // a name of MethodNames
	Settings string // -set style settings of this entry only ("" for none), e.g. "gr_every=5"
	Base     string // the base optimizer of this entry's runs (-base, or its own setting), for its label
}

// String is the entry as written in -compare, e.g. "forward:gr_every=5".
func (e Entry) String() string {
	if e.Settings == "" {
		return e.Method
	}
	return e.Method + ":" + e.Settings
}

// Label is the entry's name in tables and plots, e.g. "F-GR gr_every=5"; the base optimizer alone is
// named after it: "SGD" (with or without momentum) or "Adam".
func (e Entry) Label() string {
	l := MethodLabel(e.Method)
	if l == "SGD" && e.Base == "adam" {
		l = "Adam"
	}
	if e.Settings != "" {
		l += " " + e.Settings
	}
	return l
}

// MethodLabel is the name of a method in tables and plots (F-GR for forward, ...).
func MethodLabel(m string) string {
	switch m {
	case "sgd", "none":
		return "SGD"
	case "forward":
		return "F-GR"
	case "backward":
		return "B-GR"
	case "central":
		return "C-GR"
	case "db":
		return "DB-GR"
	case "sam", "usam", "gnp", "asam":
		return strings.ToUpper(m)
	}
	return m
}

// ParseCompare parses a -compare list: entries separated by commas, each a method name optionally
// followed by ':' and its settings, separated by ';' as in -set. A comma inside a setting's value
// (mnist_hidden=256,128) stays in the setting: a piece that does not start with a method name continues
// the previous entry.
func ParseCompare(list string) ([]Entry, error) {
	var entries []Entry
	for _, piece := range strings.Split(list, ",") {
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		name, settings, _ := strings.Cut(piece, ":")
		if _, _, err := methodParams(name); err != nil {
			if len(entries) > 0 && entries[len(entries)-1].Settings != "" && !strings.Contains(piece, ":") {
				entries[len(entries)-1].Settings += "," + piece
				continue
			}
			return nil, errors.WithMessagef(err, "-compare entry %q", piece)
		}
		entries = append(entries, Entry{Method: name, Settings: strings.TrimSpace(settings)})
	}
	if len(entries) == 0 {
		return nil, errors.Errorf("-compare lists no method: give e.g. -compare=sgd,forward")
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.String()] {
			return nil, errors.Errorf("-compare lists %q twice", e.String())
		}
		seen[e.String()] = true
	}
	return entries, nil
}

// Report is the outcome of Run: Results[i][s] is entry i with seed s.
type Report struct {
	Entries []Entry     `json:"-"`
	Results [][]*Result `json:"-"`
	Rows    []Row       `json:"rows"`
	Command string      `json:"command"`
	Backend string      `json:"backend"`
	Wall    string      `json:"wall"`
}

// Row is one line of a comparison table.
type Row struct {
	Entry        string  `json:"entry"`
	Seeds        int     `json:"seeds"`
	TestAccuracy Summary `json:"test_accuracy"`
	TrainLoss    Summary `json:"train_loss"`
	TrainAcc     Summary `json:"train_accuracy"`
	// Diff is the paired difference of test accuracy to the first entry (nil for the first).
	Diff *Paired `json:"diff,omitempty"`
	// StepTime is the mean step time (mean over seeds); Relative is its ratio to the first entry's.
	StepTime time.Duration `json:"step_time_ns"`
	Relative float64       `json:"step_time_relative"`
	// StepCPU is the mean process CPU time per step (mean over seeds; 0 where not measured), RelativeCPU
	// its ratio to the first entry's: on a shared machine the CPU time is the fairer measure of cost.
	StepCPU     time.Duration `json:"step_cpu_ns"`
	RelativeCPU float64       `json:"step_cpu_relative"`
	// Warnings name the seeds whose result is not fully the method's (guard fallbacks, divergence): the
	// table marks the row with ⚠ and lists them below.
	Warnings []string `json:"warnings,omitempty"`
}

// Summary is a mean and a sample standard deviation over seeds.
type Summary struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// Paired is the paired comparison of n seeds: the mean difference, its 95 % Student-t confidence
// interval [Lo, Hi] (NaN bounds for n < 2, written as null in JSON) and the number of positive differences.
type Paired struct {
	N        int     `json:"n"`
	Mean     float64 `json:"mean"`
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
	Positive int     `json:"positive"`
}

// MarshalJSON writes undefined bounds as null.
func (p Paired) MarshalJSON() ([]byte, error) {
	bound := func(x float64) any {
		if math.IsNaN(x) {
			return nil
		}
		return x
	}
	return json.Marshal(map[string]any{"n": p.N, "mean": p.Mean, "lo": bound(p.Lo), "hi": bound(p.Hi),
		"positive": p.Positive})
}

// MeanStd returns the mean and the sample standard deviation (n − 1 in the denominator; 0 for one value).
func MeanStd(xs []float64) Summary {
	var s Summary
	for _, x := range xs {
		s.Mean += x
	}
	s.Mean /= float64(len(xs))
	if len(xs) < 2 {
		return s
	}
	for _, x := range xs {
		s.Std += (x - s.Mean) * (x - s.Mean)
	}
	s.Std = math.Sqrt(s.Std / float64(len(xs)-1))
	return s
}

// PairedDiff compares b to a seed by seed: d_s = b_s − a_s, mean d̄, and the 95 % confidence interval
// d̄ ± t_{0.975, n−1}·s_d/√n with s_d the sample standard deviation of the d_s (Student t, n − 1 degrees
// of freedom); Positive counts the d_s > 0.
func PairedDiff(a, b []float64) Paired {
	if len(a) != len(b) {
		panic(fmt.Sprintf("run.PairedDiff: %d and %d values", len(a), len(b)))
	}
	d := make([]float64, len(a))
	p := Paired{N: len(a), Lo: math.NaN(), Hi: math.NaN()}
	for i := range a {
		d[i] = b[i] - a[i]
		if d[i] > 0 {
			p.Positive++
		}
	}
	s := MeanStd(d)
	p.Mean = s.Mean
	if p.N >= 2 {
		half := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(p.N - 1)}.Quantile(0.975) * s.Std /
			math.Sqrt(float64(p.N))
		p.Lo, p.Hi = p.Mean-half, p.Mean+half
	}
	return p
}

// compare trains every entry with every seed, seed-major (all methods of a seed, then the next seed), and
// writes the table, its JSON and the PNGs after each run, so that an interrupted comparison leaves what it
// has (differences are paired over the seeds both entries have).
func (r *runner) compare() (*Report, error) {
	start := time.Now()
	rep := &Report{Entries: r.entries, Results: make([][]*Result, len(r.entries)), Backend: r.describeBackend(),
		Command: strings.Join(os.Args, " ")}
	var writeErr error
	for s := range r.opts.Seeds {
		seed := r.opts.Seed + int64(s)
		for i, e := range r.entries {
			res, err := r.trainOne(e, seed)
			if err != nil {
				if len(rep.Rows) > 0 { // What was computed is not lost: the table so far.
					fmt.Printf("\n%s, the runs before the failed one:\n%s", r.ex.Name, FormatTable(rep.Rows))
				}
				return nil, errors.WithMessagef(err, "%s, seed %d", e.Label(), seed)
			}
			fmt.Printf("%s, seed %d: test accuracy %.4f%s, train loss %.4f, train accuracy %.4f, %s/step (mean), "+
				"CPU %s, %s\n", e.Label(), seed, res.TestAccuracy, res.valText(), res.TrainLoss, res.TrainAccuracy,
				res.StepTime.Round(time.Microsecond), res.cpuText(), res.Wall.Round(time.Second))
			res.Ctx = nil
			rep.Results[i] = append(rep.Results[i], res)
			rep.Wall = time.Since(start).Round(time.Second).String()
			rep.Rows = Rows(r.entries, rep.Results)
			if err := r.writeReport(rep, s+1); err != nil && writeErr == nil {
				// Training goes on; the table is printed at the end, and the command exits with an error.
				writeErr = err
				fmt.Fprintf(r.stderr, "%s: %v; training goes on, the table will be printed\n", r.ex.Name, err)
			}
		}
	}
	fmt.Printf("\n%s, %d seed(s) from %d, backend %s, %s wall:\n%s", r.ex.Name, r.opts.Seeds, r.opts.Seed,
		rep.Backend, rep.Wall, FormatTable(rep.Rows))
	if writeErr == nil {
		fmt.Printf("wrote %s.md, .json, _accuracy.png, _metrics.png\n", filepath.Join(r.opts.Out, r.ex.Name+"_compare"))
	}
	return rep, stderrors.Join(writeErr, notTheMethod(rep))
}

// merge combines the comparisons saved in the JSON files (e.g. one per seed) into one report; an entry
// and seed may appear once. With -compare, only its entries, in its order (the first is the reference of
// the differences). Differences are paired over the seeds both entries have.
func (r *runner) merge(files []string) (*Report, error) {
	rep := &Report{Backend: "", Command: strings.Join(os.Args, " ")}
	index := map[string]int{}
	seen := map[string]bool{}
	if err := r.checkMergeOutputs(files); err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, asUsage(errors.WithMessage(err, "-merge"))
		}
		var saved struct {
			Backend string      `json:"backend"`
			Runs    [][]*Result `json:"runs"`
		}
		if err := json.Unmarshal(data, &saved); err != nil {
			return nil, usagef("-merge: %s is not a comparison's JSON (%v)", f, err)
		}
		n := 0
		for _, runs := range saved.Runs {
			n += len(runs)
		}
		if n == 0 {
			return nil, usagef("-merge: %s holds no runs", f)
		}
		if rep.Backend != "" && saved.Backend != rep.Backend {
			return nil, usagef("-merge: %s ran on backend %q, an earlier file on %q: their step times are not "+
				"comparable", f, saved.Backend, rep.Backend)
		}
		rep.Backend = saved.Backend
		for _, runs := range saved.Runs {
			for _, res := range runs {
				if res.Spec == "" { // Written before the spec was recorded: entries without settings.
					res.Spec = res.Method
				}
				key := fmt.Sprintf("%s/%d", res.Spec, res.Seed)
				if seen[key] {
					return nil, usagef("-merge: %s with seed %d appears twice", res.Spec, res.Seed)
				}
				if res.Settings == nil {
					return nil, usagef("-merge: %s was written without the runs' settings (by an older version): "+
						"it cannot be checked to be comparable; run it again", f)
				}
				res.file = f
				seen[key] = true
				i, ok := index[res.Spec]
				if !ok {
					name, settings, _ := strings.Cut(res.Spec, ":")
					i = len(rep.Entries)
					index[res.Spec] = i
					rep.Entries = append(rep.Entries, Entry{Method: name, Settings: settings})
					rep.Results = append(rep.Results, nil)
				}
				rep.Results[i] = append(rep.Results[i], res)
			}
		}
	}
	if len(rep.Entries) == 0 {
		return nil, usagef("-merge: no runs in %q", files)
	}
	if err := checkComparable(rep); err != nil {
		return nil, err
	}
	for _, rs := range rep.Results {
		slices.SortFunc(rs, func(a, b *Result) int { return int(a.Seed - b.Seed) })
	}
	if r.explicit["compare"] { // Keep these entries, in this order (the first is the reference).
		var entries []Entry
		var results [][]*Result
		for _, e := range r.entries {
			i, ok := index[e.String()]
			if !ok {
				return nil, usagef("-merge: no runs of -compare entry %q in %q", e.String(), files)
			}
			entries, results = append(entries, rep.Entries[i]), append(results, rep.Results[i])
		}
		rep.Entries, rep.Results = entries, results
	}
	rep.Rows = Rows(rep.Entries, rep.Results)
	fmt.Printf("%s, %d seed(s), backend %s, merged from %d file(s):\n%s", r.ex.Name, len(rep.Results[0]), rep.Backend,
		len(files), FormatTable(rep.Rows))
	return rep, r.writeReport(rep, len(rep.Results[0]))
}

// writeReport writes the table of the first seeds seeds as Markdown and JSON, and the PNGs.
func (r *runner) writeReport(rep *Report, seeds int) error {
	if err := os.MkdirAll(r.opts.Out, 0o755); err != nil {
		return errors.Wrap(err, "-out")
	}
	if len(rep.Results[0]) == 0 {
		return nil // Nothing to compare to yet.
	}
	base := filepath.Join(r.opts.Out, r.ex.Name+"_compare")
	table := FormatTable(rep.Rows)
	if err := writeFile(base+".md", []byte(table)); err != nil {
		return err
	}
	js, err := json.MarshalIndent(struct {
		*Report
		Runs [][]*Result `json:"runs"`
	}{rep, rep.Results}, "", " ")
	if err != nil {
		return err
	}
	if err := writeFile(base+".json", js); err != nil {
		return err
	}
	title := fmt.Sprintf("%s, %d seed(s)", r.ex.Name, seeds)
	if err := plotAccuracy(base+"_accuracy.png", title, rep); err != nil {
		return err
	}
	return plotMetrics(base+"_metrics.png", title, rep)
}

// Rows summarizes results[i][s] (entry i, seed s) into table rows; differences are to entry 0.
func Rows(entries []Entry, results [][]*Result) []Row {
	get := func(rs []*Result, f func(*Result) float64) []float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return xs
	}
	acc := func(r *Result) float64 { return r.TestAccuracy }
	meanOf := func(rs []*Result, f func(*Result) time.Duration) time.Duration {
		var t time.Duration
		for _, r := range rs {
			t += f(r)
		}
		return t / time.Duration(max(len(rs), 1))
	}
	wall := func(r *Result) time.Duration { return r.StepTime }
	cpu := func(r *Result) time.Duration { return r.StepCPU }
	ref, refCPU := meanOf(results[0], wall), meanOf(results[0], cpu)
	rows := make([]Row, len(entries))
	for i, e := range entries {
		rs := results[i]
		if len(rs) == 0 {
			rows[i] = Row{Entry: e.Label()}
			continue
		}
		rows[i] = Row{Entry: e.Label(), Seeds: len(rs), TestAccuracy: MeanStd(get(rs, acc)),
			TrainLoss: MeanStd(get(rs, func(r *Result) float64 { return r.TrainLoss })),
			TrainAcc:  MeanStd(get(rs, func(r *Result) float64 { return r.TrainAccuracy })),
			StepTime:  meanOf(rs, wall), StepCPU: meanOf(rs, cpu)}
		for _, r := range rs {
			if w := r.warning(); w != "" {
				rows[i].Warnings = append(rows[i].Warnings, fmt.Sprintf("seed %d: %s", r.Seed, w))
			}
		}
		if ref > 0 {
			rows[i].Relative = float64(rows[i].StepTime) / float64(ref)
		}
		if refCPU > 0 {
			rows[i].RelativeCPU = float64(rows[i].StepCPU) / float64(refCPU)
		}
		if i > 0 { // Paired by seed, over the seeds both entries have.
			var a, b []float64
			for _, r0 := range results[0] {
				for _, r := range rs {
					if r.Seed == r0.Seed {
						a, b = append(a, r0.TestAccuracy), append(b, r.TestAccuracy)
					}
				}
			}
			if len(a) > 0 {
				d := PairedDiff(a, b)
				rows[i].Diff = &d
			}
		}
	}
	return rows
}

// FormatTable writes the rows as a Markdown table (accuracies in percent).
func FormatTable(rows []Row) string {
	var b strings.Builder
	ref := rows[0].Entry
	fmt.Fprintf(&b, "| method | test accuracy (mean ± std) | Δ vs %s [95%% CI] | Δ > 0 | train accuracy | "+
		"train loss | time/step (mean) | CPU/step (mean) |\n|---|---|---|---|---|---|---|---|\n", ref)
	for _, r := range rows {
		if r.Seeds == 0 {
			fmt.Fprintf(&b, "| %s | not run | | | | | | |\n", r.Entry)
			continue
		}
		cpu := "—"
		if r.StepCPU > 0 {
			cpu = fmt.Sprintf("%s (%.2f×)", r.StepCPU.Round(time.Millisecond/10), r.RelativeCPU)
		}
		diff, pos := "—", "—"
		if d := r.Diff; d != nil {
			diff = fmt.Sprintf("%+.2f", 100*d.Mean)
			if !math.IsNaN(d.Lo) {
				diff += fmt.Sprintf(" [%+.2f, %+.2f]", 100*d.Lo, 100*d.Hi)
			}
			pos = fmt.Sprintf("%d/%d", d.Positive, d.N)
		}
		entry := r.Entry
		if len(r.Warnings) > 0 {
			entry += " ⚠"
		}
		fmt.Fprintf(&b, "| %s | %.2f%% ± %.2f | %s | %s | %.2f%% | %.4f | %s (%.2f×) | %s |\n", entry,
			100*r.TestAccuracy.Mean, 100*r.TestAccuracy.Std, diff, pos, 100*r.TrainAcc.Mean, r.TrainLoss.Mean,
			r.StepTime.Round(time.Millisecond/10), r.Relative, cpu)
	}
	for _, r := range rows {
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "\n⚠ %s, %s", r.Entry, w)
		}
	}
	if strings.Contains(b.String(), "\n⚠") {
		b.WriteString("\n")
	}
	return b.String()
}

// writeFile writes a file all-or-nothing (an earlier version stays when the write fails).
func writeFile(path string, data []byte) error {
	return grcheckpoint.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
