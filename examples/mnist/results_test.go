package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/optimizers/grcheckpoint"
)

// Nothing silent: each label names what ran (built from the run's configuration, not from the flag that
// asked for it), a partial result says so (also through -merge, which fails on a partial or a diverged
// source), an empty or malformed list is refused before any training, a finished run resumed does not
// report a time per step it did not measure, a one-seed table prints no interval, and the record holds a
// command that runs it again.
func TestNothingSilent(t *testing.T) {
	tinyData(t)
	dir := t.TempDir()
	out := func(name string) string { return "-out=" + filepath.Join(dir, name) }
	jsonOf := func(name string) string { return filepath.Join(dir, name, "mnist_compare.json") }
	// Fixtures: an Adam comparison, a diverged one, a one-seed one; edited copies: partial, of another example.
	if code, _, stderr := execCLI(t, "-compare=sgd,forward", "-base=adam", out("adam")); code != 0 {
		t.Fatalf("adam comparison: exit %d: %s", code, stderr)
	}
	if code, _, _ := execCLI(t, "-compare=sgd,forward", "-gamma=1e6", "-steps=4", out("div")); code != 1 {
		t.Fatalf("diverged comparison: exit %d, want 1", code)
	}
	oneSeed, _ := checkCLI(t, []string{"-compare=sgd,forward", out("one")}, 0, nil, []string{"| SGD |", "| F-GR |"})
	edit := func(name string, change func(m map[string]any)) string {
		data, err := os.ReadFile(jsonOf("one"))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		change(m)
		data, _ = json.Marshal(m)
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	partial := edit("partial", func(m map[string]any) {
		m["partial"], m["missing"], m["seeds"] = true, "F-GR has 1 of 3 seeds", 3
	})
	vit := edit("vit", func(m map[string]any) { m["example"] = "vit" })
	ck := filepath.Join(dir, "ck")
	if code, _, stderr := execCLI(t, "-method=forward", "-steps=4", "-checkpoint="+ck); code != 0 {
		t.Fatalf("checkpointed run: exit %d: %s", code, stderr)
	}

	for _, kind := range []struct {
		kind  string
		cases []struct {
			name       string
			args       []string
			code       int
			words, out []string
		}
	}{
		{"labels name what ran", []struct {
			name       string
			args       []string
			code       int
			words, out []string
		}{
			{"-flood_method on the base optimizer", []string{"-method=sgd", "-flood_method=flooding"}, 0, nil, []string{"flooding: step 2"}},
			{"-flood_method on a gr method", []string{"-method=forward", "-flood_method=iflood"}, 0, nil, []string{"F-GR + iflood: step 2"}},
			{"-base=adam alone", []string{"-method=sgd", "-base=adam"}, 0, nil, []string{"Adam: step 2"}},
			{"-flood_method against -method", []string{"-method=flooding", "-flood_method=iflood"}, 2, []string{"flood_method", "conflicts with method flooding"}, nil},
			{"-set=gr_method against -method", []string{"-method=forward", "-set=gr_method=sam"}, 2, []string{"gr_method=sam conflicts with method forward"}, nil},
			{"-set=gr_method against -compare", []string{"-compare=sgd,forward", "-set=gr_method=sam"}, 2, []string{"conflicts with method"}, nil},
			{"gr_method in a -compare entry", []string{"-compare=forward,sam:gr_method=forward"}, 2, []string{"conflicts with method sam"}, nil},
			{"a key twice in a -compare entry", []string{"-compare=sgd,forward:gr_gamma=0.1;gr_gamma=0.2"}, 2, []string{"gr_gamma is given twice"}, nil},
			{"a key twice in -set", []string{"-method=forward", "-set=gr_gamma=0.1;gr_gamma=0.2"}, 2, []string{"-set", "gr_gamma is given twice"}, nil},
			{"one configuration twice", []string{"-compare=forward,forward:gr_gamma=0.05"}, 2, []string{"same settings"}, nil},
			{"-merge keeps Adam and the example", []string{"-merge=" + jsonOf("adam"), out("madam")}, 0, nil, []string{"mnist, 1 seed(s)", "| Adam |", "| F-GR |"}},
			{"-merge of another example", []string{"-merge=" + vit, out("mvit")}, 2, []string{"vit.json", "example vit, not mnist"}, nil},
		}},
		{"partial results say so", []struct {
			name       string
			args       []string
			code       int
			words, out []string
		}{
			{"-merge of a partial comparison", []string{"-merge=" + partial, out("mpartial")}, 1, []string{"PARTIAL", "partial.json is partial", "F-GR has 1 of 3 seeds"}, []string{"(PARTIAL)"}},
			{"-merge of a diverged run", []string{"-merge=" + jsonOf("div"), out("mdiv")}, 1, []string{"diverged", "not the method's"}, []string{"| F-GR ⚠ |"}},
			{"a finished run resumed", []string{"-method=forward", "-steps=4", "-checkpoint=" + ck}, 0, nil, []string{"time per step not measured (no step trained in this process)"}},
		}},
		{"empty or malformed lists refused", []struct {
			name       string
			args       []string
			code       int
			words, out []string
		}{
			{"-merge= empty", []string{"-merge=", out("mempty")}, 2, []string{"-merge is empty"}, nil},
			{"-merge with an extra comma", []string{"-merge=" + jsonOf("one") + ",", out("mcomma")}, 2, []string{"-merge", "item 2 is empty"}, nil},
			{"-compare with a trailing comma", []string{"-compare=sgd,"}, 2, []string{"entry 2 is empty"}, nil},
			{"-compare with a leading comma", []string{"-compare=,sgd"}, 2, []string{"entry 1 is empty"}, nil},
			{"-compare entry with an empty setting", []string{"-compare=sgd,forward:gr_gamma=0.1;;gr_every=2"}, 2, []string{"item 2 is empty"}, nil},
			{"-hidden with a double comma", []string{"-method=sgd", "-hidden=64,,32"}, 2, []string{"-hidden", "size 2 is empty"}, nil},
			{"-hidden with a trailing comma", []string{"-method=sgd", "-hidden=64,"}, 2, []string{"-hidden", "size 2 is empty"}, nil},
			{"-plot not a PNG", []string{"-method=sgd", "-plot=curves.svg", out("p1")}, 2, []string{"-plot", "curves.svg", ".png"}, nil},
			{"-plot without extension", []string{"-method=sgd", "-plot=curves", out("p2")}, 2, []string{"-plot", ".png"}, nil},
			{"-set with a trailing ';'", []string{"-method=forward", "-set=gr_gamma=0.1;"}, 2, []string{"-set", "item 2 is empty"}, nil},
			{"-set item without '='", []string{"-method=forward", "-set=gr_gamma"}, 2, []string{"-set", "not key=value"}, nil},
		}},
	} {
		for _, c := range kind.cases {
			t.Run(kind.kind+"/"+c.name, func(t *testing.T) {
				stdout, _ := checkCLI(t, c.args, c.code, c.words, c.out)
				if c.code == 2 && strings.Contains(stdout, "step ") {
					t.Errorf("%q: refused after training:\n%s", c.args, stdout)
				}
				if strings.Contains(stdout, " 0s/step") {
					t.Errorf("%q: a time per step of 0s:\n%s", c.args, stdout)
				}
			})
		}
	}

	// The merged partial table is marked in its Markdown and JSON too.
	md, _ := os.ReadFile(filepath.Join(dir, "mpartial", "mnist_compare.md"))
	js, _ := os.ReadFile(filepath.Join(dir, "mpartial", "mnist_compare.json"))
	if !strings.Contains(string(md), "**PARTIAL**") || !strings.Contains(string(js), `"partial": true`) {
		t.Errorf("merged partial table not marked:\n%s\n%.300s", md, js)
	}
	// One seed: no ± (no spread) and no 0/1 or 1/1 (no count of a single difference).
	table := oneSeed[strings.Index(oneSeed, "| method"):]
	if strings.Contains(table, "±") || strings.Contains(table, "/1 |") {
		t.Errorf("one-seed table with an interval or a count:\n%s", table)
	}
	// The record's command runs it again (not go test's or go run's temporary binary).
	var rec struct{ Command string }
	data, _ := os.ReadFile(jsonOf("one"))
	if err := json.Unmarshal(data, &rec); err != nil || !strings.HasPrefix(rec.Command, "go run ./examples/mnist ") ||
		!strings.Contains(rec.Command, " -compare=sgd,forward ") || strings.Contains(rec.Command, "go-build") {
		t.Errorf("record's command %q (%v): want go run ./examples/mnist with the flags", rec.Command, err)
	}
}

// Without a terminal (a log file) no progress bar is drawn: one line per evaluation instead.
func TestNoProgressBarInALog(t *testing.T) {
	tinyData(t)
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = f
	var stderr bytes.Buffer
	var args []string
	for _, a := range cliTiny {
		if a != "-quiet" {
			args = append(args, a)
		}
	}
	code := run.Exec(example, flag.NewFlagSet("mnist", flag.ContinueOnError), append(args, "-method=forward",
		"-steps=4", "-out="+t.TempDir()), &stderr)
	os.Stdout = saved
	_ = f.Close()
	log, _ := os.ReadFile(f.Name())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if bytes.Contains(log, []byte("\r")) || bytes.Contains(log, []byte("\x1b[")) {
		t.Errorf("a progress bar in the log:\n%q", log)
	}
	if !strings.Contains(string(log), "step 2/4: test accuracy") || !strings.Contains(string(log), "step 4/4: test accuracy") {
		t.Errorf("no line per evaluation in the log:\n%s", log)
	}
}

// A checkpoint folder held by another run (here a handler of this process, as another process would hold
// it): refused before training, naming the holder's PID.
func TestCheckpointFolderInUse(t *testing.T) {
	tinyData(t)
	dir := t.TempDir()
	h, err := grcheckpoint.Build(context.New()).Dir(dir).Done()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	stdout, _ := checkCLI(t, []string{"-method=sgd", "-checkpoint=" + dir}, 2,
		[]string{"-checkpoint", "in use by process " + strconv.Itoa(os.Getpid())}, nil)
	if strings.Contains(stdout, "step ") {
		t.Errorf("trained before refusing:\n%s", stdout)
	}
}

// A comparison that stops midway (its second seed's data cannot be made, as a kill would stop it): the files
// it wrote after its first seed say that they are partial, and which entries miss which seeds.
func TestInterruptedComparisonIsPartial(t *testing.T) {
	tinyData(t)
	ex := *example
	ex.Data = func(b backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
		if seed == 2 {
			return nil, errors.New("the data of seed 2 are gone")
		}
		return example.Data(b, ctx, seed)
	}
	out := t.TempDir()
	args := append(append([]string{}, cliTiny...), "-compare=sgd,forward", "-seeds=2", "-out="+out)
	var stderr bytes.Buffer
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = f
	code := run.Exec(&ex, flag.NewFlagSet("mnist", flag.ContinueOnError), args, &stderr)
	os.Stdout = saved
	_ = f.Close()
	if code == 0 || !strings.Contains(stderr.String(), "seed 2") {
		t.Fatalf("exit %d, stderr %s: want a failure at seed 2", code, stderr.String())
	}
	md, _ := os.ReadFile(filepath.Join(out, "mnist_compare.md"))
	js, _ := os.ReadFile(filepath.Join(out, "mnist_compare.json"))
	if !strings.Contains(string(md), "**PARTIAL**: SGD has 1 of 2 seeds; F-GR has 1 of 2 seeds") ||
		!strings.Contains(string(md), "mnist, 1 of 2 seeds (PARTIAL)") {
		t.Errorf("the table of the interrupted comparison is not marked partial:\n%s", md)
	}
	var rec struct {
		Partial bool
		Missing string
		Seeds   int
	}
	if err := json.Unmarshal(js, &rec); err != nil || !rec.Partial || rec.Seeds != 2 || rec.Missing == "" {
		t.Errorf("JSON: %+v (%v), want partial, 2 seeds planned, what is missing", rec, err)
	}
}
