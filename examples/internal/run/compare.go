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

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
	"github.com/gradreg/gradreg/regularizers"
)

// Entry is one method of a comparison with its own settings.
type Entry struct {
	Method   string // a name of MethodNames
	Settings string // -set style settings of this entry only ("" for none), e.g. "gr_every=5"
	label    string // what its runs run (labelOf their effective configuration); set by Parse and -merge
}

// String is the entry as written in -compare, e.g. "forward:gr_every=5".
func (e Entry) String() string {
	if e.Settings == "" {
		return e.Method
	}
	return e.Method + ":" + e.Settings
}

// Label is the entry's name in tables and plots, built from the configuration its runs have (the context
// that gr.FromContext and regularizers.FromContext read, not the flag that asked for it): e.g.
// "F-GR gr_every=5", "Adam", "F-GR + flooding". An Entry that was not parsed by the runner has the name of
// its method and its settings as written.
func (e Entry) Label() string {
	if e.label != "" {
		return e.label
	}
	l := MethodLabel(e.Method)
	if e.Settings != "" {
		l += " " + e.Settings
	}
	return l
}

// labelOf names the configuration of a run from its parameters (runParams: context keys → JSON text):
// the gr method (F-GR, SAM, ...), joined by the loss wrapper when there is one ("F-GR + flooding"); without
// a gr method the loss wrapper alone, else the base optimizer ("SGD" with or without momentum, "Adam");
// then the entry's own settings (keys, in their order) with the values the run has.
func labelOf(params map[string]string, keys []string) string {
	get := func(key, def string) string {
		text, ok := params[key]
		if !ok {
			return def
		}
		var s string
		if json.Unmarshal([]byte(text), &s) == nil {
			return s
		}
		return text
	}
	var l string
	grMethod, flood := get(gr.ParamMethod, "none"), get(regularizers.ParamFloodMethod, "none")
	switch {
	case grMethod != "none" && grMethod != "" && flood != "none" && flood != "":
		l = MethodLabel(grMethod) + " + " + flood
	case grMethod != "none" && grMethod != "":
		l = MethodLabel(grMethod)
	case flood != "none" && flood != "":
		l = flood
	case get(ParamOptimizer, "sgd") == "adam":
		l = "Adam"
	default:
		l = "SGD"
	}
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+"="+get(k, "(not set)"))
	}
	if len(kv) > 0 {
		l += " " + strings.Join(kv, ";")
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
// the previous entry. An empty entry (-compare=sgd,), a malformed or repeated setting and an entry listed
// twice are errors.
func ParseCompare(list string) ([]Entry, error) {
	var entries []Entry
	for i, piece := range strings.Split(list, ",") {
		piece = strings.TrimSpace(piece)
		if piece == "" {
			if strings.TrimSpace(list) == "" {
				break
			}
			return nil, errors.Errorf("-compare=%q: entry %d is empty: remove the extra comma", list, i+1)
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
		if _, err := settingKeys(e.Settings); err != nil {
			return nil, errors.WithMessagef(err, "-compare entry %q", e.String())
		}
		if seen[e.String()] {
			return nil, errors.Errorf("-compare lists %q twice", e.String())
		}
		seen[e.String()] = true
	}
	return entries, nil
}

// settingKeys returns the keys of a -set style list "key=value;key=value", in order; an empty item
// ("a=1;;b=2", a trailing ';'), an item without '=' or with an empty key, and a key given twice are errors
// (the later value would win silently).
func settingKeys(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var keys []string
	for i, item := range strings.Split(list, ";") {
		k, _, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		switch {
		case strings.TrimSpace(item) == "":
			return nil, errors.Errorf("settings %q: item %d is empty: remove the extra ';'", list, i+1)
		case !ok || k == "":
			return nil, errors.Errorf("settings %q: item %q is not key=value", list, item)
		case slices.Contains(keys, k):
			return nil, errors.Errorf("settings %q: %s is given twice: give it once", list, k)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Report is the outcome of Run: Results[i][s] is entry i with seed s.
type Report struct {
	Entries []Entry     `json:"-"`
	Results [][]*Result `json:"-"`
	Example string      `json:"example"` // the example that ran the comparison (Example.Name)
	Rows    []Row       `json:"rows"`
	// Seeds is the number of seeds each entry is to have. Partial is set when the table is not the whole
	// comparison: an entry has fewer seeds (a comparison cut short, or still running when the file was
	// written) or, for -merge, a merged file was partial; Missing says what is missing. The Markdown, the
	// figures' titles and -merge say so.
	Seeds   int    `json:"seeds"`
	Partial bool   `json:"partial"`
	Missing string `json:"missing,omitempty"`
	Command string `json:"command"` // a command that runs it again (rerunCommand)
	Backend string `json:"backend"`
	Wall    string `json:"wall"`
}

// markPartial sets rep.Partial and rep.Missing from the seeds of its rows (and the partial sources of a
// -merge, given as why).
func (rep *Report) markPartial(why ...string) {
	var missing []string
	for _, row := range rep.Rows {
		if row.Seeds < rep.Seeds {
			missing = append(missing, fmt.Sprintf("%s has %d of %d seeds", row.Entry, row.Seeds, rep.Seeds))
		}
	}
	missing = append(missing, why...)
	rep.Partial, rep.Missing = len(missing) > 0, strings.Join(missing, "; ")
}

// title is the figures' title, e.g. "mnist, 3 seeds" or "mnist, 1–2 of 3 seeds (PARTIAL)".
func (rep *Report) title() string {
	lo, hi := rep.Seeds, 0
	for _, row := range rep.Rows {
		lo, hi = min(lo, row.Seeds), max(hi, row.Seeds)
	}
	seeds := fmt.Sprintf("%d seed(s)", rep.Seeds)
	switch {
	case !rep.Partial:
	case lo == hi && hi == rep.Seeds:
		seeds += " (PARTIAL)"
	case lo == hi:
		seeds = fmt.Sprintf("%d of %d seeds (PARTIAL)", hi, rep.Seeds)
	default:
		seeds = fmt.Sprintf("%d–%d of %d seeds (PARTIAL)", lo, hi, rep.Seeds)
	}
	return rep.Example + ", " + seeds
}

// Markdown is the report as the .md file has it: a heading (what ran, how to run it again), the partial
// mark when there is one, and the table.
func (rep *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, backend %s", rep.title(), rep.Backend)
	if rep.Wall != "" {
		fmt.Fprintf(&b, ", %s wall", rep.Wall)
	}
	fmt.Fprintf(&b, ":\n\n")
	if rep.Command != "" {
		fmt.Fprintf(&b, "    %s\n\n", rep.Command)
	}
	if rep.Partial {
		fmt.Fprintf(&b, "**PARTIAL**: %s; the table is over the seeds each row has, not the whole comparison.\n\n",
			rep.Missing)
	}
	b.WriteString(FormatTable(rep.Rows))
	return b.String()
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
// has, marked partial (differences are paired over the seeds both entries have).
func (r *runner) compare() (*Report, error) {
	start := time.Now()
	rep := &Report{Entries: r.entries, Results: make([][]*Result, len(r.entries)), Backend: r.describeBackend(),
		Example: r.ex.Name, Seeds: r.opts.Seeds, Command: rerunCommand(r.ex.Name, os.Args[0], r.args)}
	var writeErr error
	for s := range r.opts.Seeds {
		seed := r.opts.Seed + int64(s)
		for i, e := range r.entries {
			res, err := r.trainOne(e, seed)
			if err != nil {
				if len(rep.Rows) > 0 { // What was computed is not lost: the table so far.
					fmt.Printf("\n%s, the runs before the failed one (PARTIAL: %s):\n%s", r.ex.Name, rep.Missing,
						FormatTable(rep.Rows))
				}
				return nil, errors.WithMessagef(err, "%s, seed %d", e.Label(), seed)
			}
			fmt.Printf("%s, seed %d: test accuracy %.4f%s, train loss %.4f, train accuracy %.4f, %s, "+
				"CPU %s, %s\n", e.Label(), seed, res.TestAccuracy, res.valText(), res.TrainLoss, res.TrainAccuracy,
				res.stepText(), res.cpuText(), res.Wall.Round(time.Second))
			res.Ctx = nil
			rep.Results[i] = append(rep.Results[i], res)
			rep.Wall = time.Since(start).Round(time.Second).String()
			rep.Rows = Rows(r.entries, rep.Results)
			rep.markPartial()
			if err := r.writeReport(rep); err != nil && writeErr == nil {
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

// splitList splits a comma-separated list of a flag, refusing an empty item (an extra comma) and an empty
// list.
func splitList(flag, list string) ([]string, error) {
	items := strings.Split(list, ",")
	for i, it := range items {
		if items[i] = strings.TrimSpace(it); items[i] == "" {
			if strings.TrimSpace(list) == "" {
				return nil, usagef("-%s is empty: give a comma-separated list", flag)
			}
			return nil, usagef("-%s=%q: item %d is empty: remove the extra comma", flag, list, i+1)
		}
	}
	return items, nil
}

// merge combines the comparisons saved in the JSON files (e.g. one per seed) into one report; an entry
// and seed may appear once, and every file must come from this example. With -compare, only its entries,
// in its order (the first is the reference of the differences), and only they must be comparable (same
// settings, same seeds). Differences are paired over the seeds both
// entries have. A merged file that was partial makes the merged table partial, and the command exits
// with an error, as it does when a merged run's result is not its method's (notTheMethod).
func (r *runner) merge(files []string) (*Report, error) {
	rep := &Report{Backend: "", Example: r.ex.Name, Command: rerunCommand(r.ex.Name, os.Args[0], r.args)}
	index := map[string]int{}
	seen := map[string]bool{}
	if err := r.checkMergeOutputs(files); err != nil {
		return nil, err
	}
	var partial []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, asUsage(errors.WithMessage(err, "-merge"))
		}
		var saved struct {
			Example string      `json:"example"`
			Backend string      `json:"backend"`
			Partial bool        `json:"partial"`
			Missing string      `json:"missing"`
			Runs    [][]*Result `json:"runs"`
		}
		if err := json.Unmarshal(data, &saved); err != nil {
			return nil, usagef("-merge: %s is not a comparison's JSON (%v)", f, err)
		}
		if saved.Example != "" && saved.Example != r.ex.Name {
			return nil, usagef("-merge: %s is a comparison of example %s, not %s: merge it with %s's -merge",
				f, saved.Example, r.ex.Name, saved.Example)
		}
		if saved.Partial {
			partial = append(partial, fmt.Sprintf("%s is partial (%s)", f, saved.Missing))
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
					keys, err := settingKeys(settings)
					if err != nil {
						return nil, usagef("-merge: %s: entry %q: %v", f, res.Spec, err)
					}
					i = len(rep.Entries)
					index[res.Spec] = i
					// Labelled from the settings the runs had (the base optimizer, a loss wrapper), as the
					// comparison that ran them labelled them.
					rep.Entries = append(rep.Entries, Entry{Method: name, Settings: settings,
						label: labelOf(res.Settings, keys)})
					rep.Results = append(rep.Results, nil)
				}
				rep.Results[i] = append(rep.Results[i], res)
			}
		}
	}
	if len(rep.Entries) == 0 {
		return nil, usagef("-merge: no runs in %q", files)
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
	// Checked after -compare's selection: an entry it leaves out (e.g. one with fewer seeds) does not matter.
	if err := checkComparable(rep); err != nil {
		return nil, err
	}
	rep.Rows = Rows(rep.Entries, rep.Results)
	rep.Seeds = len(rep.Results[0])
	rep.markPartial(partial...)
	fmt.Printf("%s, merged from %d file(s):\n%s", rep.title(), len(files), FormatTable(rep.Rows))
	var partialErr error
	if rep.Partial {
		partialErr = errors.Errorf("-merge: the merged table is PARTIAL (marked so in its files): %s", rep.Missing)
	}
	return rep, stderrors.Join(r.writeReport(rep), partialErr, notTheMethod(rep))
}

// writeReport writes the table as Markdown and JSON, and the PNGs.
func (r *runner) writeReport(rep *Report) error {
	if err := os.MkdirAll(r.opts.Out, 0o755); err != nil {
		return errors.Wrap(err, "-out")
	}
	if len(rep.Results[0]) == 0 {
		return nil // Nothing to compare to yet.
	}
	base := filepath.Join(r.opts.Out, r.ex.Name+"_compare")
	if err := writeFile(base+".md", []byte(rep.Markdown())); err != nil {
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
	if err := plotAccuracy(base+"_accuracy.png", rep.title(), rep); err != nil {
		return err
	}
	return plotMetrics(base+"_metrics.png", rep.title(), rep)
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
	acc, diff := "test accuracy (mean ± std)", "Δ vs "+ref+" [95% CI]"
	if !slices.ContainsFunc(rows, func(r Row) bool { return r.Seeds > 1 }) { // One seed: no spread, no interval.
		acc, diff = "test accuracy", "Δ vs "+ref
	}
	fmt.Fprintf(&b, "| method | %s | %s | Δ > 0 | train accuracy | train loss | time/step (mean) | "+
		"CPU/step (mean) |\n|---|---|---|---|---|---|---|---|\n", acc, diff)
	for _, r := range rows {
		if r.Seeds == 0 {
			fmt.Fprintf(&b, "| %s | not run | | | | | | |\n", r.Entry)
			continue
		}
		cpu := "—"
		if r.StepCPU > 0 {
			cpu = fmt.Sprintf("%s (%.2f×)", r.StepCPU.Round(time.Millisecond/10), r.RelativeCPU)
		}
		// One seed has no spread and one paired difference no interval nor count: none is printed.
		diff, pos := "—", "—"
		if d := r.Diff; d != nil {
			diff = fmt.Sprintf("%+.2f", 100*d.Mean)
			if !math.IsNaN(d.Lo) {
				diff += fmt.Sprintf(" [%+.2f, %+.2f]", 100*d.Lo, 100*d.Hi)
			}
			if d.N > 1 {
				pos = fmt.Sprintf("%d/%d", d.Positive, d.N)
			}
		}
		accCell := fmt.Sprintf("%.2f%%", 100*r.TestAccuracy.Mean)
		if r.Seeds > 1 {
			accCell += fmt.Sprintf(" ± %.2f", 100*r.TestAccuracy.Std)
		}
		entry := r.Entry
		if len(r.Warnings) > 0 {
			entry += " ⚠"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f%% | %.4f | %s | %s |\n", entry, accCell, diff, pos,
			100*r.TrainAcc.Mean, r.TrainLoss.Mean, timeCell(r.StepTime, r.Relative), cpu)
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

// timeCell is a step time and its ratio to the reference's, "—" when not measured.
func timeCell(t time.Duration, relative float64) string {
	if t <= 0 {
		return "—"
	}
	return fmt.Sprintf("%s (%.2f×)", t.Round(time.Millisecond/10), relative)
}

// rerunCommand is a shell command that runs the example again with args: the program as it was called,
// or "go run ./examples/NAME" when it is a temporary binary of go run (or of go test) in Go's build
// folder; each argument quoted for a POSIX shell where it needs it.
func rerunCommand(name, program string, args []string) string {
	if strings.Contains(filepath.ToSlash(program), "/go-build") {
		program = "go run ./examples/" + name
	} else {
		program = shellQuote(program)
	}
	parts := []string{program}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but letters, digits and _-.,/=:+@%.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c < 128 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.ContainsRune("_-.,/=:+@%", c)))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeFile writes a file all-or-nothing (an earlier version stays when the write fails).
func writeFile(path string, data []byte) error {
	return grcheckpoint.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
