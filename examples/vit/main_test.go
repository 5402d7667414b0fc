package main

import (
	"flag"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gradreg/gradreg/examples/internal/run"
	"github.com/gradreg/gradreg/examples/vit/model"
)

// parameters counts the trainable scalars of a ViT from its architecture, independently of the model code:
// patch embedding, class token, positions, per block two norms, attention (Q, K, V, output projections with
// biases) and MLP, the final norm and the head.
func parameters(c model.Config) int {
	n := (28 / c.Patch) * (28 / c.Patch)
	d := c.Width
	normParams := 2 * d // gain and offset
	if c.Norm == "rms" {
		normParams = d // scale
	}
	block := 2*normParams + 4*(d*d+d) + (d*c.MLP + c.MLP) + (c.MLP*d + d)
	return c.Patch*c.Patch*d + d + d + (n+1)*d + c.Depth*block + normParams + d*10 + 10
}

func runArgs(t *testing.T, args ...string) *run.Report {
	t.Helper()
	fs := flag.NewFlagSet("vit", flag.ContinueOnError)
	r, err := run.Parse(example, fs, append([]string{"-quiet", "-backend=go", "-steps=3", "-batch=8",
		"-train_size=64", "-eval_every=3", "-patch=14", "-width=8", "-heads=2", "-mlp=8", "-plot=",
		"-out=" + t.TempDir()}, args...))
	require.NoError(t, err)
	rep, err := r.Run()
	require.NoError(t, err)
	return rep
}

// TestTinyRuns trains a tiny ViT for 3 steps with SGD, F-GR and DB (two blocks, RMS norm for DB) through
// the runner: each run finishes with a finite loss and the parameter count of its architecture.
func TestTinyRuns(t *testing.T) {
	for _, c := range []struct {
		method string
		cfg    model.Config
		args   []string
	}{
		{"sgd", model.Config{Patch: 14, Width: 8, Depth: 1, Heads: 2, MLP: 8, Norm: "layer"}, nil},
		{"forward", model.Config{Patch: 14, Width: 8, Depth: 1, Heads: 2, MLP: 8, Norm: "layer"}, []string{"-readout=mean"}},
		{"db", model.Config{Patch: 14, Width: 8, Depth: 2, Heads: 2, MLP: 8, Norm: "rms"}, []string{"-depth=2", "-norm=rms"}},
	} {
		rep := runArgs(t, append([]string{"-method=" + c.method}, c.args...)...)
		res := rep.Results[0][0]
		require.Equal(t, parameters(c.cfg), res.Params, c.method)
		require.False(t, math.IsNaN(res.TrainLoss) || math.IsInf(res.TrainLoss, 0), c.method)
		require.Equal(t, 3, res.Steps)
	}
	require.Equal(t, 3514, parameters(model.DefaultConfig()))
}

// TestBadArchitectureFlag: an invalid architecture is refused before training, naming the parameter.
func TestBadArchitectureFlag(t *testing.T) {
	fs := flag.NewFlagSet("vit", flag.ContinueOnError)
	r, err := run.Parse(example, fs, []string{"-quiet", "-backend=go", "-method=sgd", "-heads=3", "-steps=1",
		"-out=" + t.TempDir()})
	require.NoError(t, err)
	_, err = r.Run()
	require.ErrorContains(t, err, model.ParamHeads)
}
