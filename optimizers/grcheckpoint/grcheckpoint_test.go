package grcheckpoint

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// record is the test's SetMeta record: the step whose values the variables hold.
type record struct{ Step int }

// state sets the context's variables to the values of step: w filled with step, the global step = step.
func state(ctx *context.Context, size, step int) {
	w := make([]float32, size)
	for i := range w {
		w[i] = float32(step)
	}
	v := ctx.GetVariableByScopeAndName(ctx.Scope(), "w")
	if v == nil {
		ctx.VariableWithValue("w", w)
	} else {
		v.MustSetValue(tensors.FromValue(w))
	}
	optimizers.GetGlobalStepVar(ctx).MustSetValue(tensors.FromValue(int64(step)))
}

// open opens dir with a fresh context and returns the handler and the step the loaded w holds (-1: none).
func open(t *testing.T, dir string, size int) (*Handler, int, error) {
	t.Helper()
	ctx := context.New()
	h, err := Build(ctx).Dir(dir).Done()
	if err != nil {
		return nil, -1, err
	}
	defer func() { _ = h.Close() }() // The caller inspects it (Loaded, Skipped) and may open the folder again.
	if h.Loaded() == "" {
		return h, -1, nil
	}
	w := ctx.Checked(false).VariableWithValue("w", make([]float32, size)).MustValue().Value().([]float32)
	for i := range w {
		if w[i] != w[0] {
			t.Fatalf("loaded w mixes values: w[0] = %g, w[%d] = %g", w[0], i, w[i])
		}
	}
	var rec record
	if ok, err := h.Meta(&rec); err != nil || !ok {
		t.Fatalf("record of %s: %v, %v", h.Loaded(), ok, err)
	}
	if int(w[0]) != rec.Step || optimizers.GetGlobalStep(ctx) != int64(rec.Step) {
		t.Fatalf("checkpoint %s: w = %g, global step %d, record step %d: want all equal", h.Loaded(), w[0],
			optimizers.GetGlobalStep(ctx), rec.Step)
	}
	return h, rec.Step, nil
}

// save saves steps 1..n of a context into dir (keeping the default 2).
func save(t *testing.T, dir string, size, n int) {
	t.Helper()
	ctx := context.New()
	h, err := Build(ctx).Dir(dir).Done()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	for step := 1; step <= n; step++ {
		state(ctx, size, step)
		h.SetMeta(record{step})
		if err := h.Save(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSaveResumeKeep(t *testing.T) {
	dir := t.TempDir()
	save(t, dir, 100, 3)
	names, _ := list(dir)
	if len(names) != 2 {
		t.Fatalf("%d checkpoints kept, want 2: %v", len(names), names)
	}
	h, step, err := open(t, dir, 100)
	if err != nil || step != 3 || len(h.Skipped()) != 0 {
		t.Fatalf("resumed step %d (skipped %v), err %v: want step 3, nothing skipped", step, h.Skipped(), err)
	}
	// GoMLX's own handler reads the folder too.
	ctx := context.New()
	if _, err := checkpoints.Build(ctx).Dir(dir).ExcludeAllParams().Done(); err != nil {
		t.Fatalf("GoMLX's handler cannot read the folder: %v", err)
	}
	if got := optimizers.GetGlobalStep(ctx); got != 3 {
		t.Errorf("GoMLX's handler loaded step %d, want 3", got)
	}
}

// Every way the newest checkpoint can be broken: the resume says so and takes the one before.
func TestBrokenNewestFallsBack(t *testing.T) {
	for _, c := range []struct {
		name   string
		suffix string
		size   func(n int64) int64 // new size of the file
		want   string              // in the reason
	}{
		{"bin truncated", checkpoints.BinDataSuffix, func(n int64) int64 { return n / 2 }, "wanted"},
		{"bin empty", checkpoints.BinDataSuffix, func(int64) int64 { return 0 }, "empty"},
		{"json truncated", checkpoints.JsonNameSuffix, func(n int64) int64 { return n / 2 }, "decode"},
		{"json empty", checkpoints.JsonNameSuffix, func(int64) int64 { return 0 }, "empty"},
		{"record truncated", MetaSuffix, func(n int64) int64 { return n - 1 }, "not valid JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			save(t, dir, 1000, 2)
			names, _ := list(dir)
			path := filepath.Join(dir, names[1]+c.suffix)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, c.size(fi.Size())); err != nil {
				t.Fatal(err)
			}
			h, step, err := open(t, dir, 1000)
			if err != nil {
				t.Fatalf("resume: %v, want a fall back to step 1", err)
			}
			if step != 1 || len(h.Skipped()) != 1 || h.Skipped()[0].Name != names[1] ||
				!strings.Contains(h.Skipped()[0].Error(), c.want) || !strings.Contains(h.Skipped()[0].Error(), "broken") {
				t.Fatalf("resumed step %d, skipped %v: want step 1 and %s reported broken (%q)", step, h.Skipped(),
					names[1], c.want)
			}
			// The next save is numbered after the broken one and wins; pruning then removes the broken one.
			ctx := context.New()
			h, err = Build(ctx).Dir(dir).Done()
			if err != nil {
				t.Fatal(err)
			}
			state(ctx, 1000, 7)
			h.SetMeta(record{7})
			if err := h.Save(); err != nil {
				t.Fatal(err)
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			if h, step, err = open(t, dir, 1000); err != nil || step != 7 || len(h.Skipped()) != 0 {
				t.Fatalf("after a new save: step %d, skipped %v, err %v: want 7, none", step, h.Skipped(), err)
			}
		})
	}
}

func TestAllBrokenNamesFilesToDelete(t *testing.T) {
	dir := t.TempDir()
	save(t, dir, 100, 2)
	names, _ := list(dir)
	for _, n := range names {
		if err := os.Truncate(filepath.Join(dir, n+checkpoints.BinDataSuffix), 10); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := open(t, dir, 100)
	if err == nil {
		t.Fatal("no error with every checkpoint broken")
	}
	for _, want := range []string{"no intact checkpoint", "delete these files", names[0] + ".bin", names[1] + ".json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestWriteFileKeepsOldOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "table.md")
	if err := WriteFile(path, func(w io.Writer) error { _, err := w.Write([]byte("old")); return err }); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return fmt.Errorf("disk full")
	})
	if err == nil || !strings.Contains(err.Error(), "unchanged") {
		t.Errorf("error %v, want one saying the file is unchanged", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "old" {
		t.Errorf("file holds %q after a failed write, want %q", data, "old")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("left-over files: %v", entries)
	}
	if err := ProbeDir(path); err == nil || !strings.Contains(err.Error(), "table.md") {
		t.Errorf("probing a plain file as a folder: %v, want an error naming it", err)
	}
}

const childEnv = "GRCHECKPOINT_TEST_CHILD"

// A process killed (SIGKILL) at random moments while it saves in a loop never leaves a folder that cannot
// be resumed: every resume loads a complete checkpoint (w and the global step agree with the record).
func TestKilledMidSave(t *testing.T) {
	const size = 1 << 20 // 4 MiB of float32: a save takes tens of milliseconds, so most kills land inside one.
	if dir := os.Getenv(childEnv); dir != "" {
		ctx := context.New()
		h, err := Build(ctx).Dir(dir).Done()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		step := 0
		if h.Loaded() != "" {
			var rec record
			_, _ = h.Meta(&rec)
			step = rec.Step
		}
		for {
			step++
			state(ctx, size, step)
			h.SetMeta(record{step})
			if err := h.Save(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(4)
			}
		}
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(30 * time.Second) // Bounded even on a loaded machine.
	last := 0
	kills := 0
	for kills < 6 && time.Now().Before(deadline) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidSave$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for at least one save of this child, then kill it at a random moment.
		for time.Now().Before(deadline) {
			names, _ := list(dir)
			if len(names) > 0 {
				if k, _ := number(names[len(names)-1]); k > last || kills == 0 {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child ended by itself (%v): %s", err, stderr.String())
		}
		kills++
		h, step, err := open(t, dir, size)
		if err != nil {
			t.Fatalf("kill %d: the folder cannot be resumed: %v", kills, err)
		}
		if step < 1 || len(h.Skipped()) != 0 {
			t.Fatalf("kill %d: resumed step %d, skipped %v: want a step ≥ 1 and no broken checkpoint", kills,
				step, h.Skipped())
		}
		names, _ := list(dir)
		last, _ = number(names[len(names)-1])
		t.Logf("kill %d: resumed at step %d (%s)", kills, step, h.Loaded())
	}
	if kills < 2 {
		t.Fatalf("only %d kill(s) in the time limit", kills)
	}
}

// A full disk during a save: the save fails with an error, the earlier checkpoint stays loadable, and once
// space is freed saving works again. Needs a small tmpfs, hence root (mount).
func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a 256 KiB tmpfs (%v): needs root; the full-disk case is then not tested here", err)
	}
	defer func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }()
	ctx := context.New()
	h, err := Build(ctx).Dir(dir).Keep(1).Done()
	if err != nil {
		t.Fatal(err)
	}
	state(ctx, 1000, 1) // ~4 KiB: fits.
	h.SetMeta(record{1})
	if err := h.Save(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	// Random data does not compress: 40,000 float32 (160 KiB) with the checkpoint already there do not fit
	// next to the filler.
	if err := os.WriteFile(filler, make([]byte, 120<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	w := make([]float32, 40000)
	for i := range w {
		w[i] = rand.Float32()
	}
	ctx.VariableWithValue("big", w)
	state(ctx, 1000, 2)
	h.SetMeta(record{2})
	err = h.Save()
	if err == nil || !strings.Contains(err.Error(), "already there, if any, are intact") {
		t.Fatalf("save on a full disk: %v, want an error saying the earlier checkpoints are intact", err)
	}
	// h holds the folder: it is read through a copy.
	if _, step, err := open(t, copied(t, dir), 1000); err != nil || step != 1 {
		t.Fatalf("after the failed save: step %d, err %v: want step 1 loadable", step, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(); err != nil {
		t.Fatalf("save after freeing space: %v", err)
	}
	if _, step, err := open(t, copied(t, dir), 1000); err != nil || step != 2 {
		t.Fatalf("after freeing space: step %d, err %v: want 2", step, err)
	}
}

// copied copies the checkpoints of dir (not its lock) into a new folder and returns it.
func copied(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "checkpoint-") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
