package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Labels come from the configuration the runs have (the context's parameters), not from -method.
func TestLabelsFromTheEffectiveConfiguration(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-method=sgd"}, []string{"SGD"}},
		{[]string{"-method=sgd", "-base=adam"}, []string{"Adam"}},
		{[]string{"-method=sgd", "-flood_method=softad"}, []string{"softad"}},
		{[]string{"-method=sam", "-flood_method=flooding"}, []string{"SAM + flooding"}},
		{[]string{"-method=flooding"}, []string{"flooding"}},
		{[]string{"-set=gr_method=asam"}, []string{"ASAM"}}, // No -method: -set chooses the method.
		{[]string{"-compare=sgd,forward:gr_gamma=0.20"}, []string{"SGD", "F-GR gr_gamma=0.2"}},
		{[]string{"-compare=forward:optimizer=adam,sgd"}, []string{"F-GR optimizer=adam", "SGD"}},
		{[]string{"-compare=sgd,sgd:flood_method=iflood"}, []string{"SGD", "iflood flood_method=iflood"}},
		{[]string{"-compare=asam,asam:gr_rho=1", "-base=adam"}, []string{"ASAM", "ASAM gr_rho=1"}},
	} {
		r, err := parse(t, c.args...)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		var got []string
		for _, e := range r.Entries() {
			got = append(got, e.Label())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: labels %q, want %q", c.args, got, c.want)
		}
	}
	// -set=gr_method without -method: the chosen method's own defaults (GNP's ρ, not another method's).
	for _, m := range []string{"gnp", "asam", "sam"} {
		if got := rho(t, mustParse(t, "-set=gr_method="+m), 0); got != mustDefaults(t, m)["gr_rho"] {
			t.Errorf("-set=gr_method=%s: gr_rho %g, want its default %v", m, got, mustDefaults(t, m)["gr_rho"])
		}
	}
}

// Settings lists and comma lists: an empty item, an item without '=', a key twice are refused.
func TestListsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-compare=sgd,"}, "entry 2 is empty"},
		{[]string{"-compare=sgd,,forward"}, "entry 2 is empty"},
		{[]string{"-compare= "}, "lists no method"},
		{[]string{"-compare=sgd,forward:gr_gamma=1;gr_gamma=2"}, "gr_gamma is given twice"},
		{[]string{"-compare=sgd,forward:=2"}, "not key=value"},
		{[]string{"-compare=sgd,forward:gr_gamma=1;"}, "item 2 is empty"},
		{[]string{"-method=forward", "-set=;gr_gamma=1"}, "item 1 is empty"},
		{[]string{"-method=forward", "-set=gr_every=2;gr_every=3"}, "gr_every is given twice"},
		{[]string{"-compare=sgd,none"}, "same settings"},
		{[]string{"-compare=sam,sam:gr_rho=0.05"}, "same settings"},
		{[]string{"-method=sam", "-set=gr_method=forward"}, "conflicts with method sam"},
		{[]string{"-method=softad", "-flood_method=flooding"}, "conflicts with method softad"},
		{[]string{"-compare=sgd,softad:flood_method=iflood"}, "conflicts with method softad"},
		{[]string{"-merge="}, "-merge is empty"},
		{[]string{"-merge=a.json,,b.json"}, "item 2 is empty"},
		{[]string{"-merge= , "}, "item 1 is empty"},
	} {
		_, err := parse(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// A table cut short is marked in its Markdown, its JSON and the figures' title.
func TestPartialReport(t *testing.T) {
	entries := []Entry{{Method: "sgd"}, {Method: "forward"}}
	res := func(seed int64) *Result {
		return &Result{Seed: seed, TestAccuracy: 0.9, Curve: []Point{{Step: 1}}, Settings: map[string]string{}}
	}
	for _, c := range []struct {
		results  [][]*Result
		partial  bool
		title    string
		planned  int
		mdPhrase string
	}{
		{[][]*Result{{res(1), res(2)}, {res(1)}}, true, "x, 1–2 of 3 seeds (PARTIAL)", 3, "F-GR has 1 of 3 seeds"},
		{[][]*Result{{res(1)}, {res(1)}}, true, "x, 1 of 2 seeds (PARTIAL)", 2, "SGD has 1 of 2 seeds"},
		{[][]*Result{{res(1), res(2)}, {res(1), res(2)}}, false, "x, 2 seed(s)", 2, ""},
	} {
		rep := &Report{Example: "x", Entries: entries, Results: c.results, Seeds: c.planned}
		rep.Rows = Rows(entries, c.results)
		rep.markPartial()
		if rep.Partial != c.partial || rep.title() != c.title {
			t.Errorf("%d/%d seeds: partial %v, title %q; want %v, %q", len(c.results[0]), len(c.results[1]),
				rep.Partial, rep.title(), c.partial, c.title)
		}
		md := rep.Markdown()
		if strings.Contains(md, "**PARTIAL**") != c.partial || !strings.Contains(md, c.mdPhrase) {
			t.Errorf("Markdown of %q:\n%s", c.title, md)
		}
		dir := t.TempDir()
		r := mustParse(t, "-out="+dir)
		if err := r.writeReport(rep); err != nil {
			t.Fatal(err)
		}
		js, _ := os.ReadFile(filepath.Join(dir, "test_compare.json"))
		if strings.Contains(string(js), `"partial": true`) != c.partial {
			t.Errorf("JSON of %q: partial not %v:\n%.200s", c.title, c.partial, js)
		}
	}
	// A merged file that was partial makes the merge partial even with every seed there.
	rep := &Report{Example: "x", Entries: entries, Results: [][]*Result{{res(1)}, {res(1)}}, Seeds: 1}
	rep.Rows = Rows(entries, rep.Results)
	rep.markPartial("a.json is partial")
	if !rep.Partial || rep.title() != "x, 1 seed(s) (PARTIAL)" || !strings.Contains(rep.Markdown(), "a.json is partial") {
		t.Errorf("partial source: %v %q", rep.Partial, rep.title())
	}
}

// The record's command runs the example again: go run for a temporary binary, quoted for a shell.
func TestRerunCommand(t *testing.T) {
	for _, c := range []struct {
		program string
		args    []string
		want    string
	}{
		{"/tmp/go-build123/b001/exe/mnist", []string{"-seeds=3"}, "go run ./examples/mnist -seeds=3"},
		{"./mnist", []string{"-set=gr_every=5;gr_gamma=0.1"}, "./mnist '-set=gr_every=5;gr_gamma=0.1'"},
		{"/opt/my tools/mnist", []string{"-out=it's here", ""}, `'/opt/my tools/mnist' '-out=it'\''s here' ''`},
		{"mnist", []string{"-compare=sgd,forward:gr_gamma=0.2", "-quiet"}, "mnist -compare=sgd,forward:gr_gamma=0.2 -quiet"},
	} {
		if got := rerunCommand("mnist", c.program, c.args); got != c.want {
			t.Errorf("rerunCommand(%q, %q) = %q, want %q", c.program, c.args, got, c.want)
		}
	}
}
