package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// A bad architecture flag exits with code 2 and a message naming its key and the valid values, before
// any training.
func TestCommandLineErrors(t *testing.T) {
	for _, c := range []struct{ arg, want string }{
		{"-patch=5", "vit_patch=5: the patch side must divide 28"},
		{"-heads=3", "vit_heads=3"},
		{"-width=0", "vit_width=0"},
		{"-dropout=1", "vit_dropout=1"},
		{"-norm=x", "layer|rms"},
		{"-depth=-1", "vit_depth=-1"},
		{"-mlp=0", "vit_mlp=0"},
		{"-readout=x", "class|mean"},
		{"-tokens=x", "onehot|concat"},
	} {
		var stderr bytes.Buffer
		code := run.Exec(example, flag.NewFlagSet("vit", flag.ContinueOnError), []string{"-quiet", "-backend=go",
			"-train_size=64", "-batch=16", "-steps=1", "-method=sgd", "-out=" + t.TempDir(), c.arg}, &stderr)
		if code != run.ExitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: exit code %d, message %q: want %d and %q", c.arg, code, stderr.String(), run.ExitUsage, c.want)
		}
	}
}
