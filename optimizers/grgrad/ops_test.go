package grgrad_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// opCase is one op of the per-op tests: f of float64 inputs of the given dimensions.
type opCase struct {
	name string
	dims [][]int
	fn   func(in []*graph.Node) *graph.Node
	// gomlx: GoMLX v0.26.0 has a first-order gradient for this case, compared with grgrad's.
	gomlx bool
	// prepare changes the random inputs (e.g. to put zeros in, or keep them positive).
	prepare func(in []*tensors.Tensor)
	// needs: ops of the forward pass that a backend may lack.
	needs []backends.OpType
	// notOnGo says why the case cannot run on the pure-Go backend although it has the ops.
	notOnGo string
}

// flat returns a tensor's values.
func flat(t *tensors.Tensor) []float64 { return tensors.MustCopyFlatData[float64](t) }

// fromFlat returns a float64 tensor of the given shape with the given values.
func fromFlat(s shapes.Shape, v []float64) *tensors.Tensor {
	t := tensors.FromShape(s)
	tensors.MustMutableFlatData(t, func(d []float64) { copy(d, v) })
	return t
}

// opExecs are the executables of a case: the loss L = Σ R⊙f(x), its gradient, and the second-order
// quantities: the gradient of S = ½‖∂L/∂x‖² and the Hessian-vector product ∂⟨∂L/∂x, u⟩/∂x.
type opExecs struct {
	loss, grad, second *graph.Exec
}

func newOpExecs(t *testing.T, c opCase, backend backends.Backend) opExecs {
	n := len(c.dims)
	split := func(all []*graph.Node) (x []*graph.Node, r *graph.Node, u []*graph.Node) {
		return all[:n], all[n], all[n+1:]
	}
	loss := func(x []*graph.Node, r *graph.Node) *graph.Node {
		return graph.ReduceAllSum(graph.Mul(r, c.fn(x)))
	}
	return opExecs{
		loss: graph.MustNewExec(backend, func(all []*graph.Node) *graph.Node {
			x, r, _ := split(all)
			return loss(x, r)
		}),
		grad: graph.MustNewExec(backend, func(all []*graph.Node) []*graph.Node {
			x, r, _ := split(all)
			return graph.Gradient(loss(x, r), x...)
		}),
		second: graph.MustNewExec(backend, func(all []*graph.Node) []*graph.Node {
			x, r, u := split(all)
			g := graph.Gradient(loss(x, r), x...)
			var sq, gu []*graph.Node
			for i := range g {
				sq = append(sq, graph.ReduceAllSum(graph.Square(g[i])))
				gu = append(gu, graph.ReduceAllSum(graph.Mul(g[i], u[i])))
			}
			s := graph.MulScalar(sum(sq), 0.5)
			return append(graph.Gradient(s, x...), graph.Gradient(sum(gu), x...)...)
		}),
	}
}

// sum adds scalars.
func sum(xs []*graph.Node) *graph.Node {
	s := xs[0]
	for _, x := range xs[1:] {
		s = graph.Add(s, x)
	}
	return s
}

// args packs the inputs of an exec.
func args(groups ...[]*tensors.Tensor) []any {
	var out []any
	for _, g := range groups {
		for _, t := range g {
			out = append(out, t)
		}
	}
	return out
}

// shifted returns x + h·d, input by input.
func shifted(x []*tensors.Tensor, d [][]float64, h float64) []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(x))
	for i := range x {
		v := flat(x[i])
		for j := range v {
			v[j] += h * d[i][j]
		}
		out[i] = fromFlat(x[i].Shape(), v)
	}
	return out
}

// closeTo fails unless got and want agree to rtol relative to want's norm (and atol absolutely).
func closeTo(t *testing.T, what string, got, want []float64, rtol, atol float64) {
	t.Helper()
	var diff, norm float64
	worst := 0
	for j := range want {
		d := math.Abs(got[j] - want[j])
		diff, norm = diff+d*d, norm+want[j]*want[j]
		if d > math.Abs(got[worst]-want[worst]) {
			worst = j
		}
	}
	diff, norm = math.Sqrt(diff), math.Sqrt(norm)
	if math.IsNaN(diff) || diff > rtol*norm+atol {
		t.Errorf("%s: ‖got − want‖ = %.3g, ‖want‖ = %.3g (worst element %d: %.12g, want %.12g)",
			what, diff, norm, worst, got[worst], want[worst])
	}
}

// checkOp runs the first- and second-order checks of a case with grgrad installed.
func checkOp(t *testing.T, c opCase, backend backends.Backend, rng *rand.Rand) {
	x := make([]*tensors.Tensor, len(c.dims))
	for i, d := range c.dims {
		x[i] = randomTensor(rng, d...)
	}
	if c.prepare != nil {
		c.prepare(x)
	}
	var outShape shapes.Shape
	graph.MustExecOnce(backend, func(in []*graph.Node) *graph.Node {
		y := c.fn(in)
		outShape = y.Shape()
		return y
	}, args(x)...)
	r := []*tensors.Tensor{randomTensor(rng, outShape.Dimensions...)}
	u := make([]*tensors.Tensor, len(x))
	for i, d := range c.dims {
		u[i] = randomTensor(rng, d...)
	}

	var want []*tensors.Tensor
	if c.gomlx {
		grgrad.Uninstall()
		if err := buildError(func() { want = newOpExecs(t, c, backend).grad.MustExec(args(x, r)...) }); err != nil {
			t.Logf("GoMLX's own gradient fails on %s: %s", backend.Name(), firstLine(err.Error()))
		}
	}
	grgrad.MustInstall()
	e := newOpExecs(t, c, backend)
	got := e.grad.MustExec(args(x, r)...)

	// First order: against GoMLX's own gradient, and against central differences of L.
	const h = 1e-5
	for i := range x {
		if want != nil {
			closeTo(t, fmt.Sprintf("∂L/∂x%d vs GoMLX's", i), flat(got[i]), flat(want[i]), 1e-12, 1e-13)
		}
		fd := make([]float64, x[i].Shape().Size())
		for j := range fd {
			d := make([][]float64, len(x))
			for k := range d {
				d[k] = make([]float64, x[k].Shape().Size())
			}
			d[i][j] = 1
			lp := e.loss.MustExec(args(shifted(x, d, h), r)...)[0].Value().(float64)
			lm := e.loss.MustExec(args(shifted(x, d, -h), r)...)[0].Value().(float64)
			fd[j] = (lp - lm) / (2 * h)
		}
		closeTo(t, fmt.Sprintf("∂L/∂x%d vs central differences", i), flat(got[i]), fd, 1e-6, 1e-8)
	}

	// Second order: ∂S/∂x = H·g and ∂⟨g, u⟩/∂x = H·u against central differences of g.
	second := e.second.MustExec(args(x, r, u)...)
	n := len(x)
	g, uf := make([][]float64, n), make([][]float64, n)
	for i := range x {
		g[i], uf[i] = flat(got[i]), flat(u[i])
	}
	for k, dir := range [][][]float64{g, uf} {
		name := []string{"∂(½‖∂L/∂x‖²)/∂x", "Hessian-vector product"}[k]
		gp := e.grad.MustExec(args(shifted(x, dir, h), r)...)
		gm := e.grad.MustExec(args(shifted(x, dir, -h), r)...)
		for i := range x {
			fd := make([]float64, len(g[i]))
			p, m := flat(gp[i]), flat(gm[i])
			for j := range fd {
				fd[j] = (p[j] - m[j]) / (2 * h)
			}
			closeTo(t, fmt.Sprintf("%s, x%d, vs differences of gradients", name, i), flat(second[k*n+i]), fd, 1e-5, 1e-8)
		}
	}
}

// missingOp returns the first of the ops the backend lacks, or "".
func missingOp(backend backends.Backend, ops []backends.OpType) backends.OpType {
	caps := backend.Capabilities().Operations
	for _, op := range ops {
		if !caps[op] {
			return op
		}
	}
	return backends.OpTypeInvalid
}

// runOpCases runs the cases on the test backend. Where the backend lacks an op a case needs, the case
// must fail at graph build with an error naming the backend and the op.
func runOpCases(t *testing.T, cases []opCase) {
	backend := backend(t)
	rng := rand.New(rand.NewPCG(23, 5))
	defer grgrad.Uninstall()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if op := missingOp(backend, c.needs); op != backends.OpTypeInvalid {
				err := buildError(func() { checkOp(t, c, backend, rng) })
				if err == nil {
					t.Fatalf("backend %s lacks %s, yet the case ran", backend.Name(), op)
				}
				msg := err.Error()
				if !strings.Contains(msg, op.String()) || !strings.Contains(strings.ToLower(msg), backendWord(backend)) {
					t.Fatalf("error does not name the backend (%s) and the op (%s): %v", backend.Name(), op, err)
				}
				t.Logf("%s has no %s: %s", backend.Name(), op, firstLine(msg))
				return
			}
			if c.notOnGo != "" && backendWord(backend) == "simplego" {
				t.Skipf("not on the pure-Go backend: %s", c.notOnGo)
			}
			checkOp(t, c, backend, rng)
		})
	}
}

// backendWord is how a backend's errors name it ("SimpleGo" for the pure-Go backend).
func backendWord(b backends.Backend) string {
	return strings.ToLower(strings.Fields(b.Name())[0])
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// buildError runs f and returns what it panicked with, as an error.
func buildError(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	f()
	return nil
}

var _ = dtypes.Float64
