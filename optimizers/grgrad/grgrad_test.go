package grgrad_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

var testBackend backends.Backend

func backend(t testing.TB) backends.Backend {
	if testBackend == nil {
		b, err := grbackend.New()
		if err != nil {
			t.Fatal(err)
		}
		testBackend = b
	}
	return testBackend
}

// randomTensor returns a float64 tensor of the given dimensions with entries in [-1, 1).
func randomTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	t := tensors.FromShape(shapes.Make(dtypes.Float64, dims...))
	if err := tensors.MutableFlatData(t, func(data []float64) {
		for i := range data {
			data[i] = 2*rng.Float64() - 1
		}
	}); err != nil {
		panic(err)
	}
	return t
}

// product is one matrix product of the tests: its name and how it combines x and w.
type product struct {
	name   string
	xDims  []int
	wDims  []int
	fn     func(x, w *graph.Node) *graph.Node
	second bool // also compare second derivatives
}

var products = []product{
	{"Dot matrix·matrix", []int{5, 3}, []int{3, 4}, graph.Dot, true},
	{"Dot matrix·vector", []int{5, 3}, []int{3}, graph.Dot, false},
	{"Dot vector·vector", []int{3}, []int{3}, graph.Dot, false},
	{"Einsum bi,io->bo", []int{5, 3}, []int{3, 4}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("bi,io->bo", x, w) }, true},
	{"Einsum bti,io->bto", []int{2, 5, 3}, []int{3, 4}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("bti,io->bto", x, w) }, true},
	{"Einsum bhqd,bhkd->bhqk", []int{2, 3, 4, 5}, []int{2, 3, 6, 5}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("bhqd,bhkd->bhqk", x, w) }, true},
	{"Einsum ij,kj->ik", []int{4, 3}, []int{5, 3}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("ij,kj->ik", x, w) }, false},
	{"Einsum i,i-> (no free axis)", []int{5}, []int{5}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("i,i->", x, w) }, true},
	{"Einsum bi,bi->b (batch only)", []int{3, 5}, []int{3, 5}, func(x, w *graph.Node) *graph.Node { return graph.Einsum("bi,bi->b", x, w) }, true},
	{"Einsum ik,jk->ij with x twice, plus w", []int{4, 3}, []int{4, 4}, func(x, w *graph.Node) *graph.Node {
		return graph.Add(graph.Einsum("ik,jk->ij", x, x), graph.Dot(x, graph.Dot(graph.Transpose(x, 0, 1), w)))
	}, true},
	// Batch axes not leading, two contracting axes given out of order, free axes on both sides.
	{"DotGeneral mixed axes", []int{3, 2, 4, 5}, []int{5, 4, 6, 2},
		func(x, w *graph.Node) *graph.Node {
			return graph.DotGeneral(x, []int{3, 1}, []int{2}, w, []int{0, 3}, []int{1})
		}, true},
	{"DotGeneral two batch axes swapped", []int{2, 3, 4}, []int{3, 2, 4, 5},
		func(x, w *graph.Node) *graph.Node {
			return graph.DotGeneral(x, []int{2}, []int{1, 0}, w, []int{2}, []int{0, 1})
		}, false},
}

// gradients computes, for L = Σ R⊙f(x, w) (R random), ∂L/∂x, ∂L/∂w and — when second — the
// derivatives of ‖∂L/∂x‖² with respect to x and w (a Hessian-vector product, as double backprop needs).
func gradients(t *testing.T, p product, second bool, x, w, r *tensors.Tensor) []*tensors.Tensor {
	t.Helper()
	exec := graph.MustNewExec(backend(t), func(x, w, r *graph.Node) []*graph.Node {
		loss := graph.ReduceAllSum(graph.Mul(r, p.fn(x, w)))
		g := graph.Gradient(loss, x, w)
		if !second {
			return g
		}
		sq := graph.ReduceAllSum(graph.Square(g[0]))
		return append(g, graph.Gradient(sq, x, w)...)
	})
	return exec.MustExec(x, w, r)
}

// The matrix-product gradients equal GoMLX's own, first and second order, for every kind of product.
func TestSameGradientsAsGoMLX(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, p := range products {
		t.Run(p.name, func(t *testing.T) {
			x, w := randomTensor(rng, p.xDims...), randomTensor(rng, p.wDims...)
			var outShape shapes.Shape
			graph.MustExecOnce(backend(t), func(x, w *graph.Node) *graph.Node {
				out := p.fn(x, w)
				outShape = out.Shape()
				return out
			}, x, w)
			r := randomTensor(rng, outShape.Dimensions...)
			grgrad.Uninstall()
			want := gradients(t, p, p.second, x, w, r)
			if err := grgrad.Install(); err != nil {
				t.Fatal(err)
			}
			defer grgrad.Uninstall()
			got := gradients(t, p, p.second, x, w, r)
			names := []string{"∂x", "∂w", "∂‖∂x‖²/∂x", "∂‖∂x‖²/∂w"}
			for i := range want {
				g, wnt := tensors.MustCopyFlatData[float64](got[i]), tensors.MustCopyFlatData[float64](want[i])
				if !got[i].Shape().Equal(want[i].Shape()) {
					t.Fatalf("%s: shape %s, GoMLX's %s", names[i], got[i].Shape(), want[i].Shape())
				}
				for j := range g {
					if math.Abs(g[j]-wnt[j]) > 1e-12*(1+math.Abs(wnt[j])) {
						t.Fatalf("%s[%d] = %.17g, GoMLX's %.17g", names[i], j, g[j], wnt[j])
					}
				}
			}
		})
	}
}

// The gradient graph holds no [batch, in, out] product once installed (and does without: the test
// would stay green against a GoMLX that fixed it, so it checks both).
func TestNoMaterializedProduct(t *testing.T) {
	largest := func() int {
		var size int
		graph.MustExecOnce(backend(t), func(x, w *graph.Node) *graph.Node {
			g := graph.Gradient(graph.ReduceAllSum(graph.Dot(x, w)), x, w)
			for _, n := range x.Graph().Nodes() {
				size = max(size, n.Shape().Size())
			}
			return g[1]
		}, randomTensor(rand.New(rand.NewPCG(1, 1)), 8, 16), randomTensor(rand.New(rand.NewPCG(1, 2)), 16, 32))
		return size
	}
	grgrad.Uninstall()
	before := largest()
	grgrad.MustInstall()
	defer grgrad.Uninstall()
	after := largest()
	if after != 16*32 {
		t.Errorf("largest node of the gradient graph with grgrad: %d elements, want W's 512", after)
	}
	t.Logf("largest node: %d elements with GoMLX's gradient, %d with grgrad's", before, after)
}

func TestInstallUninstall(t *testing.T) {
	grgrad.Uninstall()
	if grgrad.Installed() {
		t.Fatal("Installed after Uninstall")
	}
	orig := fmt.Sprintf("%p", graph.VJPRegistration[graph.NodeTypeDotGeneral])
	grgrad.MustInstall()
	grgrad.MustInstall() // idempotent: the second call must not save grgrad's gradient as "original"
	if !grgrad.Installed() || fmt.Sprintf("%p", graph.VJPRegistration[graph.NodeTypeDotGeneral]) == orig {
		t.Fatal("Install did not replace DotGeneral's gradient")
	}
	grgrad.Uninstall()
	if grgrad.Installed() || fmt.Sprintf("%p", graph.VJPRegistration[graph.NodeTypeDotGeneral]) != orig {
		t.Fatal("Uninstall did not restore GoMLX's gradient")
	}
}
