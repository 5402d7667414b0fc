package resnet

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/xla"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/gradreg/gradreg/examples/internal/testbackend"
)

// xlaBackend returns the test backend, skipping (and saying why) when it is GoMLX's pure-Go one, which
// lacks the BatchNorm and ReduceWindow ops the model uses.
func xlaBackend(t *testing.T) backends.Backend {
	be := testbackend.Get(t)
	if strings.Contains(be.Name(), "SimpleGo") {
		t.Skipf("backend %s lacks BatchNormForTraining/ReduceWindow: run with PJRT_PLUGIN_LIBRARY_PATH set to "+
			"XLA's CPU plugin and GOMLX_BACKEND=xla:cpu", be.Name())
	}
	return be
}

// buildParams builds the model on zeros shaped dims (training graph) and returns the logits' shape and the
// number of trainable scalars.
func buildParams(t *testing.T, b func(ctx *context.Context, x *graph.Node) *Builder, dims ...int) (shapes.Shape, int) {
	t.Helper()
	be := xlaBackend(t)
	ctx := context.New()
	var out shapes.Shape
	exec := context.MustNewExec(be, ctx, func(ctx *context.Context, x *graph.Node) *graph.Node {
		ctx.SetTraining(x.Graph(), true)
		return b(ctx, x).Done()
	})
	res := exec.MustExec(tensors.FromShape(shapes.Make(dtypes.Float32, dims...)))
	out = res[0].Shape()
	params := 0
	ctx.EnumerateVariables(func(v *context.Variable) {
		if v.Trainable {
			params += v.Shape().Size()
		}
	})
	return out, params
}

// TestResNet20Parameters: ResNet-20 with option A on 32×32×3 has the parameter count of He et al.'s
// architecture, counted by hand below (conv kernels 3·3·in·out, batch norm scale+offset per channel,
// dense 64·10+10).
func TestResNet20Parameters(t *testing.T) {
	want := 3*3*3*16 + 2*16 // stem
	want += 3 * (2*9*16*16 + 2*2*16)
	want += 9*16*32 + 9*32*32 + 2*2*32 + 2*(2*9*32*32+2*2*32)
	want += 9*32*64 + 9*64*64 + 2*2*64 + 2*(2*9*64*64+2*2*64)
	want += 64*10 + 10
	if want != 269722 {
		t.Fatalf("hand count %d, want 269722", want)
	}
	out, params := buildParams(t, func(ctx *context.Context, x *graph.Node) *Builder {
		return New(ctx, x, 10)
	}, 4, 32, 32, 3)
	if params != want {
		t.Errorf("ResNet-20 has %d trainable parameters, want %d", params, want)
	}
	if got := out.Dimensions; len(got) != 2 || got[0] != 4 || got[1] != 10 {
		t.Errorf("logits shape %s, want [4 10]", out)
	}
}

// TestFashionShapes: a 28×28×1 input, depth 8, width 8, projection shortcuts (1×1 conv + BN where the
// shape changes).
func TestFashionShapes(t *testing.T) {
	want := 3*3*1*8 + 2*8 // stem
	want += 2*9*8*8 + 2*2*8
	want += 9*8*16 + 9*16*16 + 2*2*16 + (8*16 + 2*16)
	want += 9*16*32 + 9*32*32 + 2*2*32 + (16*32 + 2*32)
	want += 32*10 + 10
	out, params := buildParams(t, func(ctx *context.Context, x *graph.Node) *Builder {
		return New(ctx, x, 10).Depth(8).Width(8).Shortcut(ShortcutProjection)
	}, 3, 28, 28, 1)
	if params != want {
		t.Errorf("depth 8 width 8: %d trainable parameters, want %d", params, want)
	}
	if got := out.Dimensions; len(got) != 2 || got[0] != 3 || got[1] != 10 {
		t.Errorf("logits shape %s, want [3 10]", out)
	}
}

// TestWideResNetParameters: WRN-10-2 (n = 1) pre-activation on 32×32×3.
func TestWideResNetParameters(t *testing.T) {
	want := 3 * 3 * 3 * 16 // the stem: 16 channels whatever the width
	in := 16
	for _, c := range []int{32, 64, 128} {
		want += 2*in + 9*in*c + 2*c + 9*c*c // bn1, conv1, bn2, conv2
		if in != c || c != 32 {
			want += in * c // 1×1 shortcut
		}
		in = c
	}
	want += 2*128 + 128*10 + 10
	_, params := buildParams(t, func(ctx *context.Context, x *graph.Node) *Builder {
		return New(ctx, x, 10).PreActivation(true).Depth(10).Width(32)
	}, 2, 32, 32, 3)
	if params != want {
		t.Errorf("WRN-10-2: %d trainable parameters, want %d", params, want)
	}
}

// TestInvalidConfig: bad depths, widths and stages name the valid values.
func TestInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		b    *Builder
		want string
	}{
		{New(nil, nil, 10).Depth(21), "valid depths are 8, 14, 20"},
		{New(nil, nil, 10).PreActivation(true).Depth(20), "valid depths are 10, 16, 22"},
		{New(nil, nil, 10).Width(0), "Width must be ≥ 1"},
		{New(nil, nil, 10).Stages(0), "Stages must be ≥ 1"},
		{New(nil, nil, 0), "classes must be ≥ 1"},
		{New(nil, nil, 10).BatchNorm(1, 1e-5), "momentum in [0, 1)"},
	} {
		_, err := tc.b.BlocksPerStage()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got error %v, want one containing %q", err, tc.want)
		}
	}
	if n, err := New(nil, nil, 10).Depth(56).BlocksPerStage(); err != nil || n != 9 {
		t.Errorf("ResNet-56: n = %d, %v; want 9", n, err)
	}
}
