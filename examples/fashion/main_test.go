package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/gomlx/gomlx/backends/simplego"
	_ "github.com/gomlx/gomlx/backends/xla"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/examples/internal/testbackend"
)

// execCLI runs the command with args and returns its exit code and stderr.
func execCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := run.Exec(example, flag.NewFlagSet("fashion", flag.ContinueOnError), args, &stderr)
	return code, stderr.String()
}

// TestMissingData: without the files, the error names the folder, the files and the Debian package, before
// any training.
func TestMissingData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	code, stderr := execCLI(t, "-method=sgd", "-steps=1", "-quiet", "-plot=", "-out="+t.TempDir(), "-data="+dir)
	if code == 0 {
		t.Fatal("trained without data")
	}
	for _, w := range append([]string{dir, "apt-get install dataset-fashion-mnist", "Fashion-MNIST"}, mnistdata.Files...) {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

var (
	fakeOnce sync.Once
	fakeDir  string
	fakeErr  error
)

// fakeFashion writes once, to a folder that outlives the tests' own, four IDX files of Fashion-MNIST's
// counts (60,000 and 10,000 images) whose image i is a bright square at a place given by its label i mod 10
// (learnable in a few steps), and returns the folder.
func fakeFashion(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		fakeDir, fakeErr = os.MkdirTemp("", "fashion-test-")
		if fakeErr != nil {
			return
		}
		for k, n := range []int{60000, 10000} {
			pixels := make([]byte, n*mnistdata.ImageSize)
			labels := make([]byte, n)
			for i := range n {
				l := i % 10
				labels[i] = byte(l)
				for y := 2 * l; y < 2*l+6; y++ {
					for x := 4; x < 10; x++ {
						pixels[i*mnistdata.ImageSize+y*mnistdata.Width+x] = 255
					}
				}
			}
			write := func(name string, magic uint32, dims []int, data []byte) {
				var b bytes.Buffer
				zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
				_ = binary.Write(zw, binary.BigEndian, magic)
				for _, d := range dims {
					_ = binary.Write(zw, binary.BigEndian, uint32(d))
				}
				_, _ = zw.Write(data)
				_ = zw.Close()
				if err := os.WriteFile(filepath.Join(fakeDir, name), b.Bytes(), 0o644); err != nil && fakeErr == nil {
					fakeErr = err
				}
			}
			write(mnistdata.Files[2*k], 0x803, []int{n, 28, 28}, pixels)
			write(mnistdata.Files[2*k+1], 0x801, []int{n}, labels)
		}
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fakeDir != "" {
		_ = os.RemoveAll(fakeDir)
	}
	os.Exit(code)
}

// needXLA skips, saying why, on the pure-Go backend.
func needXLA(t *testing.T) {
	if be := testbackend.Get(t); strings.Contains(be.Name(), "SimpleGo") {
		t.Skipf("the ResNet needs XLA (backend %s lacks BatchNorm): set PJRT_PLUGIN_LIBRARY_PATH and "+
			"GOMLX_BACKEND=xla:cpu", be.Name())
	}
}

// TestPureGoRefused: on the pure-Go backend, the error says that XLA is needed and how to select it.
func TestPureGoRefused(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", os.Getenv("GOMLX_BACKEND")) // -backend=go sets it; restored after the test
	code, stderr := execCLI(t, "-method=sgd", "-steps=1", "-quiet", "-plot=", "-out="+t.TempDir(),
		"-data="+fakeFashion(t), "-backend=go")
	if code == 0 {
		t.Fatal("trained on the pure-Go backend")
	}
	for _, w := range []string{"needs XLA", "GOMLX_BACKEND=xla:cpu"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// TestTinyComparison: F-GR and DB (through the convolutions and batch norm, with grgrad's gradients, the
// runner's default) for three steps on a 4-channel ResNet-8; with -val the validation accuracy is reported.
// Bad depths are refused naming -depth.
func TestTinyComparison(t *testing.T) {
	needXLA(t)
	data := fakeFashion(t)
	fs := flag.NewFlagSet("fashion", flag.ContinueOnError)
	r, err := run.Parse(example, fs, []string{"-compare=forward,db", "-seeds=1", "-steps=3", "-batch=16",
		"-train_size=320", "-val=0.1", "-width=4", "-eval_every=100", "-quiet", "-out=" + t.TempDir(), "-data=" + data})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d methods in the report, want 2", len(rep.Results))
	}
	for i, res := range rep.Results {
		got := res[0]
		if got.Steps != 3 || !(got.TestAccuracy >= 0 && got.TestAccuracy <= 1) || got.ValAccuracy == nil ||
			math.IsNaN(got.TrainLoss) || math.IsInf(got.TrainLoss, 0) {
			t.Errorf("method %d: steps %d, test accuracy %g, validation %v, train loss %g", i, got.Steps,
				got.TestAccuracy, got.ValAccuracy, got.TrainLoss)
		}
	}
	code, stderr := execCLI(t, "-method=sgd", "-steps=1", "-depth=9", "-quiet", "-plot=", "-out="+t.TempDir(),
		"-data="+data)
	if code == 0 || !strings.Contains(stderr, "-depth") || !strings.Contains(stderr, "valid depths are 8, 14, 20") {
		t.Errorf("-depth=9: exit %d, stderr:\n%s", code, stderr)
	}
}
