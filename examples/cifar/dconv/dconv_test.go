package dconv_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gradreg/gradreg/examples/cifar/dconv"
	"github.com/gradreg/gradreg/examples/internal/testbackend"
)

// backend is the tests' shared backend.
var backend = testbackend.Get

func randomTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	data := make([]float64, n)
	for i := range data {
		data[i] = rng.NormFloat64()
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

func flat(t *tensors.Tensor) []float64 { return tensors.MustCopyFlatData[float64](t) }

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func maxAbs(a []float64) float64 {
	m := 0.0
	for _, v := range a {
		m = max(m, math.Abs(v))
	}
	return m
}

type convCase struct{ b, h, w, c, o, k, stride, padding int }

var convCases = []convCase{
	{2, 6, 6, 3, 4, 3, 1, 1}, // "same" 3×3
	{2, 7, 6, 3, 4, 3, 2, 1}, // strided, odd size
	{2, 6, 6, 3, 5, 1, 1, 0}, // 1×1 (matrix product path)
	{2, 6, 6, 3, 5, 1, 2, 0}, // 1×1 strided (ResNet projection shortcut)
	{1, 7, 7, 2, 3, 5, 1, 0}, // 5×5 "valid"
}

func (cc convCase) String() string {
	return fmt.Sprintf("x[%d,%d,%d,%d]*k[%d,%d,%d,%d]/s%d/p%d", cc.b, cc.h, cc.w, cc.c, cc.k, cc.k, cc.c, cc.o,
		cc.stride, cc.padding)
}

func gomlxConv(x, k *graph.Node, stride, padding int) *graph.Node {
	return graph.Convolve(x, k).StridePerAxis(stride, stride).
		PaddingPerDim([][2]int{{padding, padding}, {padding, padding}}).Done()
}

// Forward: Conv2D equals GoMLX's convolution (the pure-Go backend implements its forward pass).
func TestConv2DMatchesGoMLXForward(t *testing.T) {
	be := backend(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cc := range convCases {
		x, k := randomTensor(rng, cc.b, cc.h, cc.w, cc.c), randomTensor(rng, cc.k, cc.k, cc.c, cc.o)
		out := graph.MustExecOnceN(be, func(x, k *graph.Node) []*graph.Node {
			return []*graph.Node{dconv.Conv2D(x, k, cc.stride, cc.padding), gomlxConv(x, k, cc.stride, cc.padding)}
		}, x, k)
		if !out[0].Shape().Equal(out[1].Shape()) {
			t.Fatalf("%s: shape %s, GoMLX %s", cc, out[0].Shape(), out[1].Shape())
		}
		if d := maxAbsDiff(flat(out[0]), flat(out[1])); d > 1e-10 {
			t.Errorf("%s: max |Conv2D − GoMLX| = %g", cc, d)
		}
	}
}

// lossFn is a smooth nonlinear scalar of the convolution output, so its Hessian is not zero.
func lossFn(conv func(x, k *graph.Node) *graph.Node, x, k, r *graph.Node) *graph.Node {
	y := conv(x, k)
	return graph.ReduceAllSum(graph.Mul(graph.Sin(y), r))
}

// Gradient: w.r.t. the kernel against GoMLX's (that VJP is a plain convolution, which the pure-Go backend
// runs), w.r.t. both against central finite differences of the loss.
func TestConv2DGradient(t *testing.T) {
	be := backend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, cc := range convCases {
		x, k := randomTensor(rng, cc.b, cc.h, cc.w, cc.c), randomTensor(rng, cc.k, cc.k, cc.c, cc.o)
		oh, ow := dconv.OutputSize(cc.h, cc.k, cc.stride, cc.padding), dconv.OutputSize(cc.w, cc.k, cc.stride, cc.padding)
		r := randomTensor(rng, cc.b, oh, ow, cc.o)
		conv := func(x, k *graph.Node) *graph.Node { return dconv.Conv2D(x, k, cc.stride, cc.padding) }
		grads := graph.MustExecOnceN(be, func(x, k, r *graph.Node) []*graph.Node {
			return graph.Gradient(lossFn(conv, x, k, r), x, k)
		}, x, k, r)

		// Kernel gradient of GoMLX's convolution, where the backend can build it.
		var gomlxGradK *tensors.Tensor
		err := tryRun(func() {
			gomlxGradK = graph.MustExecOnce(be, func(x, k, r *graph.Node) *graph.Node {
				xc := graph.StopGradient(x)
				return graph.Gradient(lossFn(func(x, k *graph.Node) *graph.Node {
					return gomlxConv(x, k, cc.stride, cc.padding)
				}, xc, k, r), k)[0]
			}, x, k, r)
		})
		if err != nil && cc == convCases[0] {
			t.Logf("%s: GoMLX's convolution gradient not buildable on %s (%v); checking against finite differences only (XLA: GOMLX_BACKEND=xla:cpu)",
				cc, be.Name(), firstLine(err))
		} else if err == nil {
			if d := maxAbsDiff(flat(grads[1]), flat(gomlxGradK)); d > 1e-9*max(1, maxAbs(flat(gomlxGradK))) {
				t.Errorf("%s: kernel gradient differs from GoMLX's by %g", cc, d)
			}
		}

		// Finite differences on a few coordinates of x and k.
		lossExec := graph.MustNewExec(be, func(x, k, r *graph.Node) *graph.Node { return lossFn(conv, x, k, r) })
		loss := func(x, k *tensors.Tensor) float64 {
			return tensors.ToScalar[float64](lossExec.MustExec(x, k, r)[0])
		}
		for which, tens := range []*tensors.Tensor{x, k} {
			data := flat(tens)
			gradData := flat(grads[which])
			for _, idx := range []int{0, len(data) / 3, len(data) - 1} {
				const h = 1e-5
				plus, minus := append([]float64(nil), data...), append([]float64(nil), data...)
				plus[idx] += h
				minus[idx] -= h
				dims := tens.Shape().Dimensions
				pt, mt := tensors.FromFlatDataAndDimensions(plus, dims...), tensors.FromFlatDataAndDimensions(minus, dims...)
				var fd float64
				if which == 0 {
					fd = (loss(pt, k) - loss(mt, k)) / (2 * h)
				} else {
					fd = (loss(x, pt) - loss(x, mt)) / (2 * h)
				}
				if math.Abs(fd-gradData[idx]) > 1e-6*max(1, math.Abs(fd)) {
					t.Errorf("%s: d loss / d %s[%d] = %g, finite difference %g", cc, []string{"x", "k"}[which], idx,
						gradData[idx], fd)
				}
			}
		}
	}
}

// Second order: the Hessian-vector product by double backpropagation through Conv2D equals a central
// finite difference of gradients, (∇L(θ+εv) − ∇L(θ−εv)) / 2ε, for θ = (x, kernel).
func TestConv2DHessianVectorProduct(t *testing.T) {
	be := backend(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, cc := range convCases {
		x, k := randomTensor(rng, cc.b, cc.h, cc.w, cc.c), randomTensor(rng, cc.k, cc.k, cc.c, cc.o)
		vx, vk := randomTensor(rng, cc.b, cc.h, cc.w, cc.c), randomTensor(rng, cc.k, cc.k, cc.c, cc.o)
		oh, ow := dconv.OutputSize(cc.h, cc.k, cc.stride, cc.padding), dconv.OutputSize(cc.w, cc.k, cc.stride, cc.padding)
		r := randomTensor(rng, cc.b, oh, ow, cc.o)
		conv := func(x, k *graph.Node) *graph.Node { return dconv.Conv2D(x, k, cc.stride, cc.padding) }
		hvp := graph.MustExecOnceN(be, func(x, k, r, vx, vk *graph.Node) []*graph.Node {
			g := graph.Gradient(lossFn(conv, x, k, r), x, k)
			gv := graph.Add(graph.ReduceAllSum(graph.Mul(g[0], vx)), graph.ReduceAllSum(graph.Mul(g[1], vk)))
			return graph.Gradient(gv, x, k)
		}, x, k, r, vx, vk)

		const eps = 1e-5
		gradExec := graph.MustNewExec(be, func(x, k, r, vx, vk, e *graph.Node) []*graph.Node {
			xe := graph.Add(x, graph.Mul(e, vx))
			ke := graph.Add(k, graph.Mul(e, vk))
			return graph.Gradient(lossFn(conv, xe, ke, r), xe, ke)
		})
		gp := gradExec.MustExec(x, k, r, vx, vk, eps)
		gm := gradExec.MustExec(x, k, r, vx, vk, -eps)
		for i, name := range []string{"x", "kernel"} {
			p, m, want := flat(gp[i]), flat(gm[i]), flat(hvp[i])
			fd := make([]float64, len(p))
			for j := range p {
				fd[j] = (p[j] - m[j]) / (2 * eps)
			}
			if d := maxAbsDiff(fd, want); d > 1e-5*max(1, maxAbs(want)) {
				t.Errorf("%s: HVP w.r.t. %s differs from the finite difference of gradients by %g (scale %g)",
					cc, name, d, maxAbs(want))
			}
		}
	}
}

// Poolings: forward equal to GoMLX's, and twice differentiable.
func TestPools(t *testing.T) {
	be := backend(t)
	rng := rand.New(rand.NewPCG(7, 8))
	x := randomTensor(rng, 2, 4, 6, 3)
	out := graph.MustExecOnceN(be, func(x *graph.Node) []*graph.Node {
		return []*graph.Node{
			dconv.AvgPool(x, 2), graph.MeanPool(x).Window(2).Done(),
			dconv.MaxPool(x, 2), graph.MaxPool(x).Window(2).Done(),
		}
	}, x)
	for i, name := range []string{"AvgPool", "MaxPool"} {
		if d := maxAbsDiff(flat(out[2*i]), flat(out[2*i+1])); d > 1e-12 {
			t.Errorf("%s differs from GoMLX's by %g", name, d)
		}
	}
	for _, pool := range []func(*graph.Node) *graph.Node{
		func(x *graph.Node) *graph.Node { return dconv.AvgPool(x, 2) },
		func(x *graph.Node) *graph.Node { return dconv.MaxPool(x, 2) },
		dconv.GlobalAvgPool,
		func(x *graph.Node) *graph.Node { return dconv.Subsample(x, 2) },
		func(x *graph.Node) *graph.Node { return dconv.PadChannels(x, 2) },
	} {
		_ = graph.MustExecOnce(be, func(x *graph.Node) *graph.Node {
			y := pool(x)
			g := graph.Gradient(graph.ReduceAllSum(graph.Square(graph.Sin(y))), x)[0]
			return graph.Gradient(graph.ReduceAllSum(graph.Square(g)), x)[0]
		}, x)
	}
}

func TestSubsampleAndPadChannels(t *testing.T) {
	be := backend(t)
	x := tensors.FromFlatDataAndDimensions([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, 3, 3, 1)
	out := graph.MustExecOnceN(be, func(x *graph.Node) []*graph.Node {
		return []*graph.Node{dconv.Subsample(x, 2), dconv.PadChannels(x, 1)}
	}, x)
	if got := flat(out[0]); fmt.Sprint(got) != "[1 3 7 9]" {
		t.Errorf("Subsample = %v, want [1 3 7 9]", got)
	}
	if got := flat(out[1]); len(got) != 18 || got[0] != 1 || got[1] != 0 || got[16] != 9 || got[17] != 0 {
		t.Errorf("PadChannels = %v", got)
	}
}

func tryRun(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	fn()
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
