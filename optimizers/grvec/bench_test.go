package grvec_test

import (
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// benchVectors are the shapes of the MLP 784-256-256-10's parameters (270k float32): the vectors of
// docs/benchmarks.md's per-step measurements.
var benchVectors = [][]int{{784, 256}, {256}, {256, 256}, {256}, {256, 10}, {10}}

// BenchmarkReductions times ways of reducing such vectors to one scalar, 8 per graph (16 distinct input
// vectors), so that launching the graph is a small part of an operation: inner products ⟨x, y⟩ as grvec
// computes them and three alternatives, and finiteness tests as gr's guard computes them (IsFinite of the
// sums of 2⁻⁶⁴·xᵢ, grvec.ScaledSum) and two alternatives. Divide ns/op by 8 for one operation:
//
//	GOMLX_BACKEND=xla:cpu go test -run=^$ -bench=Reductions -count=3 ./optimizers/grvec
//	GOMLX_BACKEND=go go test -run=^$ -bench=Reductions -count=3 ./optimizers/grvec
func BenchmarkReductions(b *testing.B) {
	type vec = []*Node
	const k = 8
	sum := func(x vec, f func(i int) *Node) *Node { // Σᵢ f(i) over the tensors of x
		t := f(0)
		for i := 1; i < len(x); i++ {
			t = Add(t, f(i))
		}
		return t
	}
	flat := func(x vec) *Node {
		var fs vec
		for _, xi := range x {
			fs = append(fs, Reshape(xi, -1))
		}
		return Concatenate(fs, 0)
	}
	pairs := []struct {
		name string
		f    func(x, y vec) *Node
	}{
		{"inner/grvec", func(x, y vec) *Node { return grvec.InnerProduct(x, y) }},
		{"inner/vector-dot", func(x, y vec) *Node {
			return sum(x, func(i int) *Node { return Dot(Reshape(x[i], -1), Reshape(y[i], -1)) })
		}},
		{"inner/rows-dotgeneral", func(x, y vec) *Node { // one dot per row, then their sum
			return sum(x, func(i int) *Node {
				if x[i].Rank() == 1 {
					return Dot(x[i], y[i])
				}
				return grvec.ScaledSum(DotGeneral(x[i], []int{1}, []int{0}, y[i], []int{1}, []int{0}), 1)
			})
		}},
		{"inner/reduce-all-sum", func(x, y vec) *Node {
			return sum(x, func(i int) *Node { return ReduceAllSum(Mul(x[i], y[i])) })
		}},
		{"finite/guard", func(x, _ vec) *Node {
			total := sum(x, func(i int) *Node { return grvec.ScaledSum(x[i], 0x1p-64) })
			return ConvertDType(IsFinite(total), dtypes.Float32)
		}},
		{"finite/concatenated", func(x, _ vec) *Node {
			c := flat(x)
			n, m := c.Shape().Size(), 256
			for n%m != 0 {
				m /= 2
			}
			return ConvertDType(IsFinite(grvec.ScaledSum(Reshape(c, n/m, m), 0x1p-64)), dtypes.Float32)
		}},
		{"finite/logical-all", func(x, _ vec) *Node {
			var ok *Node
			for _, xi := range x {
				t := LogicalAll(IsFinite(xi))
				if ok == nil {
					ok = t
				} else {
					ok = LogicalAnd(ok, t)
				}
			}
			return ConvertDType(ok, dtypes.Float32)
		}},
		{"empty", func(x, _ vec) *Node { return ReduceAllSum(x[5]) }}, // the launch and the 96 inputs alone
	}
	backend, err := grbackend.New()
	if err != nil {
		b.Fatal(err)
	}
	var inputs []any
	for j := range 2 * k {
		for _, dims := range benchVectors {
			t := tensors.FromShape(shapes.Make(dtypes.Float32, dims...))
			tensors.MutableFlatData(t, func(data []float32) {
				for i := range data {
					data[i] = float32((i*7+j*13)%17) * 0.01
				}
			})
			inputs = append(inputs, t)
		}
	}
	nv := len(benchVectors)
	for _, p := range pairs {
		b.Run(p.name, func(b *testing.B) {
			exec := MustNewExec(backend, func(in []*Node) *Node {
				var total *Node
				for j := range k {
					out := p.f(in[2*j*nv:(2*j+1)*nv], in[(2*j+1)*nv:(2*j+2)*nv])
					if total == nil {
						total = out
					} else {
						total = Add(total, out)
					}
				}
				return total
			})
			exec.MustExec(inputs...)[0].FinalizeAll() // Compile, and move the inputs to the device.
			b.ResetTimer()
			for b.Loop() {
				exec.MustExec(inputs...)[0].FinalizeAll()
			}
		})
	}
}
