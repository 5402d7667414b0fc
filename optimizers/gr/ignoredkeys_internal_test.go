package gr

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
)

// TestKeyOfAnotherMethodWarnsOnce: a key set for another method (gr_rho with forward) draws one warning naming
// the method that ignores it and those that read it, however often the context is read (FromContext, each
// graph, Params); a key the method reads, a key at its registered value and an option draw none; with
// method "none" every set key is reported.
func TestKeyOfAnotherMethodWarnsOnce(t *testing.T) {
	buf := captureWarnings(t)
	warnedKeys.Clear()
	t.Cleanup(warnedKeys.Clear)
	sgd := optimizers.StochasticGradientDescent().Done()
	ctx := context.New()
	RegisterParams(ctx)
	_, err := commandline.ParseContextSettings(ctx, "gr_method=forward;gr_rho=0.1;gr_gamma=0.2;gr_every=2;gr_asam_eta=0.01")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		opt, err := FromContext(ctx, sgd)
		if err != nil {
			t.Fatal(err)
		}
		opt.(*Regularized).Params()
	}
	got := buf.String()
	want := `gr: gr_rho = 0.1 is set, but method "forward" ignores it (it is read by asam, gnp, sam, usam`
	if strings.Count(got, want) != 1 || strings.Count(got, "\n") != 1 {
		t.Errorf("want the one warning %q, got %q", want, got)
	}

	buf.Reset()
	ctx.SetParam(ParamMethod, "none")
	if _, err := FromContext(ctx, sgd); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"gr_rho = 0.1", "gr_gamma = 0.2", "gr_every = 2"} {
		if !strings.Contains(buf.String(), "gr: "+key+` is set, but method "none" (the base optimizer alone) ignores it`) {
			t.Errorf("method none: no warning for %s in %q", key, buf.String())
		}
	}
	if strings.Contains(buf.String(), "gr_asam_eta") {
		t.Errorf("gr_asam_eta at its registered value drew a warning: %q", buf.String())
	}
}
