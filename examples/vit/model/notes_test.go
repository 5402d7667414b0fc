package model

// Reproductions of the GoMLX v0.26.0 limitations listed in docs/gomlx-notes.md. Each test passes while the
// limitation is there; when GoMLX lifts one, its test fails and says which note is outdated.

import (
	"fmt"
	"math"
	mathrand "math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/core/tensors/images"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/datasets"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
	"github.com/stretchr/testify/require"
)

// pureGo returns a pure-Go backend (ops run sequentially: see note 7).
func pureGo(t *testing.T) backends.Backend {
	b, err := simplego.New("ops_sequential")
	require.NoError(t, err)
	t.Cleanup(b.Finalize)
	return b
}

// gomlxGradients makes the test see GoMLX's own gradients: $GRADREG_GRADIENTS=grgrad installs grgrad's,
// which give these ops gradients; the notes are about GoMLX.
func gomlxGradients(t *testing.T) {
	if grgrad.Installed() {
		grgrad.Uninstall()
		t.Cleanup(grgrad.MustInstall)
	}
}

// buildErr builds a graph with fn and returns the panic it raised as an error, or nil.
func buildErr(b backends.Backend, fn func(g *Graph)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	g := NewGraph(b, "note")
	fn(g)
	return nil
}

// Note 1: the gradient of Dot/DotGeneral is built as Mul + ReduceSum over a broadcast product, which
// materializes a tensor of shape [batch, in, out] for a dense layer [batch, in]·[in, out]; a matrix product
// (DotGeneral) would need none. BenchmarkNoteDotGradient measures the cost.
func TestNoteDotGradientMaterializesProduct(t *testing.T) {
	const batch, in, out = 8, 5, 3
	if grgrad.Installed() { // GoMLX's own gradient is the subject here ($GRADREG_GRADIENTS=grgrad installs grgrad's).
		grgrad.Uninstall()
		defer grgrad.MustInstall()
	}
	for _, useGeneral := range []bool{false, true} {
		g := NewGraph(pureGo(t), "note1")
		x := Parameter(g, "x", shapes.Make(dtypes.Float32, batch, in))
		w := Parameter(g, "w", shapes.Make(dtypes.Float32, in, out))
		var y *Node
		if useGeneral {
			y = Einsum("bi,io->bo", x, w) // DotGeneral
		} else {
			y = Dot(x, w)
		}
		before := len(g.Nodes())
		Gradient(ReduceAllSum(y), x, w)
		var products []string
		for _, n := range g.Nodes()[before:] {
			if n.Type() == NodeTypeMul && n.Rank() == 3 && n.Shape().Size() == batch*in*out {
				products = append(products, n.Shape().String())
			}
		}
		require.NotEmpty(t, products, "note 1 is outdated: the gradient of %s has no [batch, in, out] product",
			y.Type())
		t.Logf("%s: gradient builds Mul nodes %v", y.Type(), products)
	}
}

// BenchmarkNoteDotGradient: forward and backward of a dense layer [64, 784]·[784, 128] on grbackend.New's
// backend (pure Go by default; GOMLX_BACKEND=xla:cpu for XLA's CPU plugin): GoMLX's gradient (autodiff)
// against the same two gradients written as matrix products, and GoMLX's autodiff with optimizers/grgrad's
// gradients of matrix products installed while the graph is built.
func BenchmarkNoteDotGradient(b *testing.B) {
	const batch, in, out = 64, 784, 128
	backend, err := grbackend.New()
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Finalize()
	xs, ws := make([]float32, batch*in), make([]float32, in*out)
	for i := range xs {
		xs[i] = float32(i%7) / 7
	}
	for i := range ws {
		ws[i] = float32(i%5) / 50
	}
	x, w := tensors.FromFlatDataAndDimensions(xs, batch, in), tensors.FromFlatDataAndDimensions(ws, in, out)
	cases := map[string]func(x, w *Node) []*Node{
		"forward": func(x, w *Node) []*Node { return []*Node{Dot(x, w)} },
		"autodiff": func(x, w *Node) []*Node {
			y := Dot(x, w)
			return Gradient(ReduceAllSum(Square(y)), x, w)
		},
		"matmul": func(x, w *Node) []*Node { // the same gradients: v = 2y, dx = v·wᵀ, dw = xᵀ·v
			v := MulScalar(Dot(x, w), 2)
			return []*Node{Einsum("bo,io->bi", v, w), Einsum("bi,bo->io", x, v)}
		},
	}
	cases["autodiff+grgrad"] = cases["autodiff"]
	installed := grgrad.Installed()
	defer func() {
		if installed {
			grgrad.MustInstall()
		} else {
			grgrad.Uninstall()
		}
	}()
	for _, name := range []string{"forward", "autodiff", "matmul", "autodiff+grgrad"} {
		b.Run(name, func(b *testing.B) {
			if name == "autodiff+grgrad" {
				grgrad.MustInstall()
			} else {
				grgrad.Uninstall()
			}
			exec := MustNewExec(backend, cases[name])
			exec.MustExec(x, w) // The graph is built here, with the gradients installed now.
			b.ResetTimer()
			for range b.N {
				for _, o := range exec.MustExec(x, w) {
					o.FinalizeAll()
				}
			}
		})
	}
}

// Note 3: ops with no gradient (no entry in graph.VJPRegistration): differentiating through them panics.
// Piecewise-constant ones (Sign, Round, Floor, Ceil) should have a zero gradient; Pad (the gradient of
// Slice) and Reverse have simple linear gradients (Slice, Reverse).
func TestNoteOpsWithoutGradient(t *testing.T) {
	gomlxGradients(t)
	missing := []NodeType{NodeTypePad, NodeTypeReverse, NodeTypeRsqrt, NodeTypeExpm1, NodeTypeReduceProduct,
		NodeTypeClamp, NodeTypeRem, NodeTypeSign, NodeTypeRound, NodeTypeFloor, NodeTypeCeil,
		NodeTypeSelectAndScatterMax, NodeTypeSelectAndScatterMin, NodeTypeBatchNormForInference,
		NodeTypeBatchNormGradient}
	for _, op := range missing {
		_, found := VJPRegistration[op]
		require.False(t, found, "note 3 is outdated: %s has a gradient now", op)
	}
	// The panic a user sees, on an op the pure-Go backend implements.
	err := buildErr(pureGo(t), func(g *Graph) {
		x := Parameter(g, "x", shapes.Make(dtypes.Float64, 3))
		Gradient(ReduceAllSum(Rsqrt(x)), x)
	})
	require.ErrorContains(t, err, `with type "Rsqrt", for which no gradient is defined`)
}

// Not a limitation, checked because their gradients are built from Sign, which has no gradient: Abs and
// ReLU (Max) are twice differentiable, with the exact values.
func TestNoteSecondOrderThroughSignIndicators(t *testing.T) {
	for name, f := range map[string]func(*Node) *Node{
		"Abs":  Abs,
		"Relu": func(x *Node) *Node { return Max(x, ZerosLike(x)) },
	} {
		b := pureGo(t)
		exec := MustNewExec(b, func(x *Node) *Node {
			g1 := Gradient(ReduceAllSum(Square(f(x))), x)[0]
			return Gradient(ReduceAllSum(Square(g1)), x)[0]
		})
		out := exec.MustExec([]float64{-2, 0.5, 3})[0].Value().([]float64)
		// f(x)² has gradient 2f·f′ = 2x (|x|) or 2x·[x>0] (ReLU); ‖·‖² of it has gradient 8x or 8x·[x>0].
		want := []float64{-16, 4, 24}
		if name == "Relu" {
			want[0] = 0
		}
		require.InDeltaSlice(t, want, out, 1e-12, name)
	}
}

// Note 5: the pure-Go backend does not implement Pad (nor Reverse, DynamicSlice, DynamicUpdateSlice,
// SelectAndScatter*, the BatchNorm ops): the gradient of Slice is Pad, so a model with Slice cannot be
// differentiated there at all, and one with Concatenate (gradient: Slice) not twice.
func TestNotePureGoLacksPad(t *testing.T) {
	gomlxGradients(t)
	ops := simplego.Capabilities.Operations
	for _, op := range []backends.OpType{backends.OpTypePad, backends.OpTypeReverse, backends.OpTypeDynamicSlice,
		backends.OpTypeDynamicUpdateSlice, backends.OpTypeSelectAndScatterMax, backends.OpTypeBatchNormForTraining} {
		require.False(t, ops[op], "note 5 is outdated: the pure-Go backend implements %s now", op)
	}
	err := buildErr(pureGo(t), func(g *Graph) {
		x := Parameter(g, "x", shapes.Make(dtypes.Float64, 4))
		Gradient(ReduceAllSum(Slice(x, AxisRange(1, 3))), x)
	})
	require.ErrorContains(t, err, `op "Pad" not implemented in SimpleGo`)
}

// Note 6: float16 is missing on the pure-Go backend (bfloat16 is there).
func TestNotePureGoFloat16(t *testing.T) {
	require.False(t, simplego.Capabilities.DTypes[dtypes.Float16], "note 6 is outdated: float16 on pure Go")
	require.True(t, simplego.Capabilities.DTypes[dtypes.BFloat16])
	err := buildErr(pureGo(t), func(g *Graph) {
		x := Parameter(g, "x", shapes.Make(dtypes.Float16, 4))
		g.Compile(Add(x, x))
	})
	require.Error(t, err)
	t.Logf("float16 on the pure-Go backend: %v", strings.SplitN(err.Error(), "\n", 2)[0])
}

// Note 2: there is no graph conditional or loop op (backends.OpType has none): a computation that differs
// between steps needs one graph per variant, chosen on the host.
func TestNoteNoConditional(t *testing.T) {
	for _, name := range backends.OpTypeStrings() {
		op := strings.ToLower(strings.TrimPrefix(name, "OpType"))
		require.NotContains(t, []string{"if", "while", "conditional", "case", "call", "cond"}, op,
			"note 2 is outdated: op %s", name)
	}
}

// Note 8: layers.MultiHeadAttention scales the attention logits by 1/d, not by 1/√d (Vaswani et al.): the
// projected query is multiplied by 1/√d and the logits are then divided by √d again.
func TestNoteAttentionScale(t *testing.T) {
	const tokens, d = 3, 4
	b := pureGo(t)
	ctx := context.New()
	// One head with identity projections and zero biases: q = k = v = x.
	eye := make([]float64, d*d)
	for i := range d {
		eye[i*d+i] = 1
	}
	for _, name := range []string{"query", "key", "value"} {
		scope := ctx.In("MultiHeadAttention").In(name).In("dense")
		scope.VariableWithValue("weights", tensors.FromFlatDataAndDimensions(slices.Clone(eye), d, 1, d))
		scope.VariableWithValue("biases", tensors.FromFlatDataAndDimensions(make([]float64, d), 1, d))
	}
	xs := []float64{0.9, -0.4, 1.3, 0.2, -1.1, 0.7, 0.3, 1.5, 0.6, 1.2, -0.8, -0.3}
	exec := context.MustNewExec(b, ctx.Checked(false), func(ctx *context.Context, x *Node) []*Node {
		out, coef := layers.MultiHeadAttention(ctx, x, x, x, 1, d).DoneWithCoefficients()
		return []*Node{coef, out} // out too: see note 9
	})
	outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(xs, 1, tokens, d))
	require.NoError(t, err)
	got := outs[0].Value().([][][][]float64)
	softmaxRow := func(i int, scale float64) []float64 {
		row := make([]float64, tokens)
		var sum float64
		for j := range tokens {
			var dot float64
			for k := range d {
				dot += xs[i*d+k] * xs[j*d+k]
			}
			row[j] = math.Exp(dot * scale)
			sum += row[j]
		}
		for j := range row {
			row[j] /= sum
		}
		return row
	}
	for i := range tokens {
		require.InDeltaSlice(t, softmaxRow(i, 1/float64(d)), got[0][i][0], 1e-12, "note 8 is outdated")
		require.Greater(t, math.Abs(softmaxRow(i, 1/math.Sqrt(d))[0]-got[0][i][0][0]), 1e-3)
	}
}

// Note 9: the pure-Go backend panics (index out of range) when a graph parameter is created after the last
// node the outputs depend on, e.g. a variable read by a layer whose output is not used.
func TestNotePureGoUnusedParameter(t *testing.T) {
	err := buildErr(pureGo(t), func(g *Graph) {
		x := Parameter(g, "x", shapes.Make(dtypes.Float64, 2))
		out := Neg(x)
		_ = Parameter(g, "unused", shapes.Make(dtypes.Float64, 2))
		g.Compile(out)
		g.Run([]float64{1, 2}, []float64{3, 4})
	})
	require.ErrorContains(t, err, "index out of range", "note 9 is outdated")
}

// Note 7: the pure-Go backend deadlocks when it runs ops in parallel and several batched DotGenerals (every
// Einsum of the attention) are in flight: each runs in a worker of the pool and waits for more workers for
// its batch (backends/simplego/dotgeneral_small.go) without releasing its own, so when all workers are
// such waits nothing runs again. parallelism=1 makes it certain (2 workers); with the default parallelism
// (NumCPU) it needs more ops in flight and depends on timing. ops_sequential cannot deadlock. The stuck
// execution's goroutines are left behind (on their own backend) when the test ends.
func TestNotePureGoParallelDeadlock(t *testing.T) {
	finishes := func(config string) bool {
		backend, err := simplego.New(config)
		require.NoError(t, err)
		exec := MustNewExec(backend, func(x *Node) *Node {
			sum := Einsum("bij,bjk->bik", x, x)
			for i := 1; i < 4; i++ { // independent batched products the parallel executor starts together
				sum = Add(sum, Einsum("bij,bjk->bik", AddScalar(x, float64(i)), x))
			}
			return sum
		})
		x := tensors.FromFlatDataAndDimensions(make([]float32, 8*4*4), 8, 4, 4)
		done := make(chan struct{})
		go func() {
			for range 20 {
				exec.MustExec(x)[0].FinalizeAll()
			}
			close(done)
		}()
		select {
		case <-done:
			backend.Finalize()
			return true
		case <-time.After(3 * time.Second):
			return false
		}
	}
	require.True(t, finishes("parallelism=1,ops_sequential"))
	require.False(t, finishes("parallelism=1,ops_parallel"), "note 7 is outdated: no deadlock")
}

// Note 10: graph.Convolve is not twice differentiable on the pure-Go backend, for any stride: the second
// order needs Reverse, which that backend lacks (note 5). (On XLA the gradient of a strided convolution is a
// convolution with input dilation, whose gradient GoMLX refuses: ops_convolve.go, convGeneralVJP.)
func TestNoteStridedConvolutionSecondOrder(t *testing.T) {
	gomlxGradients(t)
	for _, stride := range []int{1, 2} {
		err := buildErr(pureGo(t), func(g *Graph) {
			x := Parameter(g, "x", shapes.Make(dtypes.Float64, 1, 6, 6, 1))
			k := Parameter(g, "k", shapes.Make(dtypes.Float64, 3, 3, 1, 1))
			y := Convolve(x, k).StridePerAxis(stride, stride).NoPadding().ChannelsAxis(images.ChannelsLast).Done()
			g1 := Gradient(ReduceAllSum(Square(y)), k)[0]
			Gradient(ReduceAllSum(Square(g1)), k)
		})
		require.ErrorContains(t, err, `op "Reverse" not implemented in SimpleGo`, "note 10 is outdated")
	}
}

// Note 11: a variable that a checkpoint loads on first access through GetVariableByScopeAndName is marked
// trainable, whatever it was when saved; the context's random-number state "#rngState" is loaded that way.
func TestNoteLoadedVariableIsTrainable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.New()
	require.NoError(t, ctx.SetRNGStateFromSeed(1))
	v := ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
	require.False(t, v.Trainable)
	handler, err := checkpoints.Build(ctx).Dir(dir).Done()
	require.NoError(t, err)
	require.NoError(t, handler.Save())

	loaded := context.New()
	_, err = checkpoints.Build(loaded).Dir(dir).Done()
	require.NoError(t, err)
	v = loaded.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
	require.NotNil(t, v)
	require.True(t, v.Trainable, "note 11 is outdated: a loaded variable keeps its saved trainability")
}

// Note 14: InMemoryDataset.Shuffle draws its order from math/rand's global source, not from the generator
// given by WithRand, so two datasets given the same seed yield different batch orders.
func TestNoteShuffleIgnoresWithRand(t *testing.T) {
	const n = 64
	order := func() []int64 {
		labels := make([]int64, n)
		for i := range labels {
			labels[i] = int64(i)
		}
		ds, err := datasets.InMemoryFromData(pureGo(t), "note14", []any{tensors.FromFlatDataAndDimensions(labels, n, 1)},
			[]any{tensors.FromFlatDataAndDimensions(labels, n, 1)})
		require.NoError(t, err)
		ds.BatchSize(n, true).Shuffle().WithRand(mathrand.New(mathrand.NewSource(1)))
		_, _, y, err := ds.Yield()
		require.NoError(t, err)
		return tensors.MustCopyFlatData[int64](y[0])
	}
	a, b := order(), order()
	require.ElementsMatch(t, a, b)
	// Two independent shuffles of 64 examples agree with probability 1/64!.
	require.NotEqual(t, a, b, "note 14 is outdated: Shuffle draws from the generator WithRand gives")
}
