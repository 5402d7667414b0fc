package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// cliTiny are the flags of a tiny run (64 training images, 2 steps: about a second on the pure-Go backend).
var cliTiny = []string{"-quiet", "-backend=go", "-train_size=64", "-batch=16", "-hidden=8", "-eval_every=2",
	"-steps=2", "-schedule=constant", "-seeds=1"}

// execCLI runs the command line in-process as the binary would (run.Exec) and returns its exit code, its
// stdout and its stderr.
func execCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = f
	var errBuf bytes.Buffer
	if !strings.HasPrefix(args[0], "-merge=") { // -merge takes no training flags.
		args = append(append([]string{}, cliTiny...), args...)
	}
	code = run.Exec(example, flag.NewFlagSet("mnist", flag.ContinueOnError), args, &errBuf)
	os.Stdout = saved
	_ = f.Close()
	out, _ := os.ReadFile(f.Name())
	return code, string(out), errBuf.String()
}

// checkpoints of dir, oldest first.
func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "checkpoint-*"+checkpoints.JsonNameSuffix))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no checkpoints in %s (%v)", dir, err)
	}
	for i, m := range matches {
		matches[i] = strings.TrimSuffix(m, checkpoints.JsonNameSuffix)
	}
	return matches
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// Bad command lines and faults, each answered with an exit code and a message that names the input:
// 2 for a usage error (before any training when the flags alone show it), 1 for a run whose result is
// not the method's or whose output could not be written (after printing what was computed).
func TestCommandLines(t *testing.T) {
	tinyData(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Fixtures: a checkpointed F-GR run of 4 steps, comparisons to merge, a broken and an empty JSON.
	ck := filepath.Join(dir, "ck")
	if code, _, stderr := execCLI(t, "-method=forward", "-steps=4", "-checkpoint="+ck); code != 0 {
		t.Fatalf("checkpointed run: exit %d: %s", code, stderr)
	}
	for _, c := range []struct{ out, seed, steps string }{{"a", "1", "2"}, {"b", "2", "4"}, {"c", "2", "2"}} {
		if code, _, stderr := execCLI(t, "-compare=sgd,forward", "-out="+filepath.Join(dir, c.out), "-seed="+c.seed,
			"-steps="+c.steps); code != 0 {
			t.Fatalf("comparison %s: exit %d: %s", c.out, code, stderr)
		}
	}
	jsonOf := func(out string) string { return filepath.Join(dir, out, "mnist_compare.json") }
	empty, garbled := filepath.Join(dir, "empty.json"), filepath.Join(dir, "garbled.json")
	_ = os.WriteFile(empty, []byte("{}"), 0o644)
	_ = os.WriteFile(garbled, []byte(`{"runs": [[{"entry": "SGD", "se`), 0o644)
	// A copy whose newest checkpoint is cut off, and one whose checkpoints are all cut off.
	broken, allBroken := filepath.Join(dir, "broken"), filepath.Join(dir, "all-broken")
	copyDir(t, ck, broken)
	copyDir(t, ck, allBroken)
	names := checkpointNames(t, broken)
	if err := os.Truncate(names[len(names)-1]+checkpoints.BinDataSuffix, 100); err != nil {
		t.Fatal(err)
	}
	for _, n := range checkpointNames(t, allBroken) {
		if err := os.Truncate(n+checkpoints.BinDataSuffix, 0); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name  string
		args  []string
		code  int
		words []string // in stderr
		out   []string // in stdout
	}{
		// Values.
		{"batch 0", []string{"-method=sgd", "-batch=0"}, 2, []string{"-batch", "≥ 1", "got 0"}, nil},
		{"batch above the training set", []string{"-method=sgd", "-batch=128"}, 2, []string{"-batch", "128", "64 training examples"}, nil},
		{"lr Inf", []string{"-method=forward", "-lr=Inf"}, 2, []string{"-lr", "finite", "+Inf"}, nil},
		{"lr 0", []string{"-method=forward", "-lr=0"}, 2, []string{"-lr", "> 0"}, nil},
		{"wd NaN", []string{"-method=sgd", "-wd=NaN"}, 2, []string{"-wd", "finite", "NaN"}, nil},
		{"wd Inf", []string{"-method=sgd", "-wd=Inf"}, 2, []string{"-wd", "finite"}, nil},
		{"wd negative", []string{"-method=sgd", "-wd=-1"}, 2, []string{"-wd", ">= 0"}, nil},
		{"momentum 1", []string{"-method=sgd", "-base=momentum", "-momentum=1"}, 2, []string{"-momentum", "[0, 1)"}, nil},
		{"eval_every negative", []string{"-method=sgd", "-eval_every=-3"}, 2, []string{"-eval_every", "got -3"}, nil},
		{"save_every negative", []string{"-method=sgd", "-save_every=-1", "-checkpoint=" + filepath.Join(dir, "se")}, 2, []string{"-save_every"}, nil},
		{"steps negative", []string{"-method=sgd", "-steps=-1"}, 2, []string{"-steps", "got -1"}, nil},
		{"no steps nor epochs", []string{"-method=sgd", "-steps=0", "-epochs=0"}, 2, []string{"-steps", "-epochs"}, nil},
		{"train_size above MNIST", []string{"-method=sgd", "-train_size=100000"}, 2, []string{"-train_size", "60000", "100000"}, nil},
		{"train_size negative", []string{"-method=sgd", "-train_size=-5"}, 2, []string{"-train_size"}, nil},
		{"label noise 1", []string{"-method=sgd", "-label_noise=1"}, 2, []string{"-label_noise", "[0, 1)"}, nil},
		{"hidden empty", []string{"-method=sgd", "-hidden="}, 2, []string{"-hidden", "empty"}, nil},
		{"hidden 0", []string{"-method=sgd", "-hidden=0"}, 2, []string{"-hidden", "positive"}, nil},
		{"gamma negative", []string{"-method=forward", "-gamma=-1"}, 2, []string{"Gamma", "got -1"}, nil},
		{"flood for a method that ignores it", []string{"-method=forward", "-flood=0.3"}, 2, []string{"flood_level (-flood)", "forward", "remove it"}, nil},
		{"rho for forward", []string{"-method=forward", "-rho=0.1"}, 2, []string{"gr_rho", "forward"}, nil},
		{"unknown method", []string{"-method=nope"}, 2, []string{"nope", "valid values are sgd|"}, nil},
		{"unknown -set key", []string{"-method=sgd", "-set=bogus_key=1"}, 2, []string{"bogus_key"}, nil},
		{"unknown flag", []string{"-bogus"}, 2, []string{"-bogus"}, nil},
		{"bad flag value", []string{"-batch=x"}, 2, []string{"-batch", "x"}, nil},
		{"positional argument", []string{"-method=sgd", "extra"}, 2, []string{"unexpected arguments", "extra"}, nil},
		{"seeds 0", []string{"-method=sgd", "-seeds=0"}, 2, []string{"-seeds", "got 0"}, nil},
		{"checkpoint with a comparison", []string{"-compare=sgd,forward", "-checkpoint=" + filepath.Join(dir, "x")}, 2, []string{"single run"}, nil},
		{"unknown backend", []string{"-method=sgd", "-backend=bogus"}, 2, []string{"backend", "bogus"}, nil},
		{"missing data folder", []string{"-method=sgd", "-data=" + filepath.Join(dir, "nowhere")}, 2, []string{"-data", "nowhere"}, nil},
		// Outputs, checked before training.
		{"out is a file", []string{"-compare=sgd", "-out=" + file}, 2, []string{"-out", "plain-file"}, nil},
		{"checkpoint is a file", []string{"-method=sgd", "-checkpoint=" + file}, 2, []string{"-checkpoint", "plain-file"}, nil},
		{"plot is a folder", []string{"-method=sgd", "-out=" + dir, "-plot=" + dir}, 2, []string{"-plot", "is a folder"}, nil},
		{"plot in a file", []string{"-method=sgd", "-plot=" + filepath.Join(file, "x.png")}, 2, []string{"-plot", "plain-file"}, nil},
		// The guard running every step as a base step, a diverged loss: marked, exit 1.
		{"epsilon 1e20", []string{"-method=forward", "-epsilon=1e20", "-out=" + dir}, 1, []string{"2 of 2 steps fell back", "not the method's"}, []string{"fell back"}},
		{"rho 1e30", []string{"-method=sam", "-rho=1e30", "-out=" + dir}, 1, []string{"fell back", "SAM"}, nil},
		{"gamma 1e6", []string{"-method=forward", "-gamma=1e6", "-steps=4", "-out=" + dir}, 1, []string{"diverged", "not the method's"}, nil},
		{"guard in a table", []string{"-compare=sgd,forward", "-epsilon=1e20", "-out=" + filepath.Join(dir, "guard")}, 1, []string{"F-GR, seed 1: 2 of 2 steps fell back"}, []string{"| F-GR ⚠ |", "⚠ F-GR, seed 1: 2 of 2 steps fell back"}},
		// Resume: the checkpoint's run only.
		{"resume another method", []string{"-method=sgd", "-steps=6", "-checkpoint=" + ck}, 2, []string{"method \"forward\"", "-method=sgd"}, nil},
		{"resume another seed", []string{"-method=forward", "-seed=7", "-steps=6", "-checkpoint=" + ck}, 2, []string{"-seed=1", "-seed=7"}, nil},
		{"resume with fewer steps", []string{"-method=forward", "-steps=2", "-checkpoint=" + ck}, 2, []string{"2 steps", "fewer than the 4"}, nil},
		{"resume another model", []string{"-method=forward", "-hidden=16", "-steps=6", "-checkpoint=" + ck}, 2, []string{"mnist_hidden (-hidden) \"8\" in the checkpoint, \"16\" now"}, nil},
		{"resume another gamma", []string{"-method=forward", "-gamma=0.2", "-steps=6", "-checkpoint=" + ck}, 2, []string{"gr_gamma (-gamma) 0.05 in the checkpoint, 0.2 now"}, nil},
		{"resume other data", []string{"-method=forward", "-label_noise=0.1", "-steps=6", "-checkpoint=" + ck}, 2, []string{"mnist_label_noise"}, nil},
		{"resume a cosine run longer", []string{"-method=forward", "-steps=6", "-schedule=cosine", "-checkpoint=" + ck}, 2, []string{"lr_schedule"}, nil},
		{"resume past a broken checkpoint", []string{"-method=forward", "-steps=4", "-checkpoint=" + broken}, 0, []string{"broken", "resuming from the newest intact one"}, []string{"resuming F-GR (seed 1)", "at step 2 of 4", "F-GR: step 4"}},
		{"resume with every checkpoint broken", []string{"-method=forward", "-steps=4", "-checkpoint=" + allBroken}, 2, []string{"no intact checkpoint", "delete these files"}, nil},
		// -merge.
		{"merge incomparable runs", []string{"-merge=" + jsonOf("a") + "," + jsonOf("b"), "-out=" + filepath.Join(dir, "m1")}, 2, []string{"different settings", "train_steps"}, nil},
		{"merge over its input", []string{"-merge=" + jsonOf("a") + "," + jsonOf("c"), "-out=" + filepath.Join(dir, "a")}, 2, []string{"overwrite", "give another -out"}, nil},
		{"merge an empty JSON", []string{"-merge=" + jsonOf("a") + "," + empty, "-out=" + filepath.Join(dir, "m2")}, 2, []string{"empty.json", "holds no runs"}, nil},
		{"merge a garbled JSON", []string{"-merge=" + garbled, "-out=" + filepath.Join(dir, "m3")}, 2, []string{"garbled.json", "not a comparison's JSON"}, nil},
		{"merge a missing file", []string{"-merge=" + filepath.Join(dir, "none.json"), "-out=" + filepath.Join(dir, "m4")}, 2, []string{"none.json"}, nil},
		{"merge with a training flag", []string{"-merge=" + jsonOf("a"), "-steps=3", "-out=" + filepath.Join(dir, "m6")}, 2, []string{"-merge trains nothing", "-steps"}, nil},
		{"steps and epochs", []string{"-method=sgd", "-epochs=3"}, 2, []string{"-steps=2 and -epochs=3", "give one"}, nil},
		{"save_every without checkpoint", []string{"-method=sgd", "-save_every=1"}, 2, []string{"-save_every", "-checkpoint"}, nil},
		{"plot with a comparison", []string{"-compare=sgd,forward", "-plot=x.png"}, 2, []string{"-plot", "single run"}, nil},
		{"merge comparable runs", []string{"-merge=" + jsonOf("a") + "," + jsonOf("c"), "-out=" + filepath.Join(dir, "m5")}, 0, nil, []string{"2 seed(s)", "| F-GR |"}},
	} {
		t.Run(c.name, func(t *testing.T) { checkCLI(t, c.args, c.code, c.words, c.out) })
	}
}

// checkCLI runs a command line and checks its exit code, that stderr holds words and stdout out, and that
// no stack trace is printed.
func checkCLI(t *testing.T, args []string, code int, words, out []string) (stdout, stderr string) {
	t.Helper()
	got, stdout, stderr := execCLI(t, args...)
	if got != code {
		t.Errorf("%q: exit code %d, want %d; stderr:\n%s", args, got, code, stderr)
	}
	for _, w := range words {
		if !strings.Contains(stderr, w) {
			t.Errorf("%q: stderr lacks %q:\n%s", args, w, stderr)
		}
	}
	for _, w := range out {
		if !strings.Contains(stdout, w) {
			t.Errorf("%q: stdout lacks %q:\n%s", args, w, stdout)
		}
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("%q: a stack trace or panic:\n%s", args, stderr)
	}
	return stdout, stderr
}

// A disk that fills up under -out while a comparison runs: the runs go on, the table is printed, the
// failure is reported and the exit code is 1. Needs a small tmpfs (root).
func TestOutputDiskFull(t *testing.T) {
	tinyData(t)
	out := t.TempDir()
	if err := syscall.Mount("tmpfs", out, "tmpfs", 0, "size=40k"); err != nil {
		t.Skipf("cannot mount a 40 KiB tmpfs (%v): needs root; the full-disk case of -out is not tested here", err)
	}
	defer func() { _ = syscall.Unmount(out, syscall.MNT_DETACH) }()
	code, stdout, stderr := execCLI(t, "-compare=sgd,forward", "-out="+out)
	if code != 1 || !strings.Contains(stderr, "no space left") || !strings.Contains(stderr, "training goes on") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and the write failure reported", code, stderr)
	}
	if !strings.Contains(stdout, "| F-GR |") || !strings.Contains(stdout, "| SGD |") {
		t.Errorf("the table is not printed:\n%s", stdout)
	}
	t.Logf("stderr:\n%s\nstdout tail:\n%s", stderr, stdout[max(0, len(stdout)-600):])
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("a temporary file is left: %s", e.Name())
		}
	}
}
