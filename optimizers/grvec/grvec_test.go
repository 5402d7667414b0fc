package grvec_test

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelpersMatchFloat64: each helper on the vector x = ([1, −2], [3]), y = ([0.5, 4], [−1]) against the float64
// values, with a = 2, b = −3.
func TestHelpersMatchFloat64(t *testing.T) {
	backend, err := grbackend.New()
	require.NoError(t, err)
	outs := MustExecOnceN(backend, func(x0, x1, y0, y1 *Node) []*Node {
		g := x0.Graph()
		x, y := []*Node{x0, x1}, []*Node{y0, y1}
		a, b := Scalar(g, dtypes.Float64, 2), Scalar(g, dtypes.Float64, -3)
		zero := []*Node{ZerosLike(x0), ZerosLike(x1)}
		return append(append(append(append(append(append(grvec.ScaleVec(a, x), grvec.Axpby(a, x, b, y)...),
			grvec.AddVec(x, y)...), grvec.SubVec(x, y)...), grvec.Rescale(a, x)...), grvec.Rescale(a, zero)...),
			grvec.InnerProduct(x, y), grvec.GlobalNorm(x), grvec.RescaleFactor(a, x))
	}, []float64{1, -2}, 3.0, []float64{0.5, 4}, -1.0)
	flat := func(i int) []float64 { return tensors.MustCopyFlatData[float64](outs[i]) }
	n := math.Sqrt(14)
	r := 2 / (n + grvec.NormStabilizer)
	for i, want := range [][]float64{{2, -4}, {6}, {2 - 1.5, -4 - 12}, {6 + 3}, {1.5, 2}, {2}, {0.5, -6}, {4},
		{r, -2 * r}, {3 * r}, {0, 0}, {0}} {
		assert.InDeltaSlice(t, want, flat(i), 1e-15, "output %d", i)
	}
	assert.InDelta(t, 0.5-8-3, outs[12].Value().(float64), 1e-15, "InnerProduct")
	assert.InDelta(t, n, outs[13].Value().(float64), 1e-15, "GlobalNorm")
	assert.InDelta(t, r, outs[14].Value().(float64), 1e-15, "RescaleFactor")
}

// TestMixedDTypes: a float32 vector added to bfloat16 weights gives bfloat16; the inner product of bfloat16
// tensors accumulates in float32 (ComputeDType).
func TestMixedDTypes(t *testing.T) {
	assert.Equal(t, dtypes.Float32, grvec.ComputeDType(dtypes.BFloat16))
	assert.Equal(t, dtypes.Float32, grvec.ComputeDType(dtypes.Float16))
	assert.Equal(t, dtypes.Float64, grvec.ComputeDType(dtypes.Float64))
	backend, err := grbackend.New()
	require.NoError(t, err)
	outs := MustExecOnceN(backend, func(w, g *Node) []*Node {
		wb := ConvertDType(w, dtypes.BFloat16)
		return []*Node{grvec.AddVec([]*Node{wb}, []*Node{g})[0], grvec.InnerProduct([]*Node{wb}, []*Node{wb})}
	}, []float32{1, 2}, []float32{0.5, 0.25})
	assert.Equal(t, dtypes.BFloat16, outs[0].DType())
	assert.Equal(t, dtypes.Float32, outs[1].DType())
	assert.InDelta(t, 5, outs[1].Value().(float32), 1e-6)
}

// TestScaledSum: c·Σx for a 3×8 matrix (one matrix-vector product over rows of 8), a vector of 3 (shorter
// than 8: one row) and a scalar, against the sums written out.
func TestScaledSum(t *testing.T) {
	backend, err := grbackend.New()
	require.NoError(t, err)
	m := make([][]float64, 3)
	for i := range m {
		m[i] = make([]float64, 8)
		for j := range m[i] {
			m[i][j] = float64(8*i + j + 1) // 1 … 24: sum 300
		}
	}
	outs := MustExecOnceN(backend, func(m, v, s *Node) []*Node {
		return []*Node{grvec.ScaledSum(m, 0.5), grvec.ScaledSum(v, 2), grvec.ScaledSum(s, 3)}
	}, m, []float64{1, -2, 3}, 5.0)
	for i, want := range []float64{150, 4, 15} {
		assert.Equal(t, want, outs[i].Value().(float64), "output %d", i)
	}
}

// TestInnerProductShapes: InnerProduct over a 3×8 matrix, a 2×3×4 tensor (last axis below 8: one row of 24),
// a vector and a scalar, against the float64 sum written out — on the pure-Go backend the rows' DotGeneral,
// on XLA the product's matrix-vector sums.
func TestInnerProductShapes(t *testing.T) {
	backend, err := grbackend.New()
	require.NoError(t, err)
	x, y := make([]float64, 24), make([]float64, 24)
	want := 0.0
	for i := range x {
		x[i], y[i] = float64(i+1), float64(i%5)-1 // Σ x·y = 300
		want += 2 * x[i] * y[i]                   // the matrix and the 2×3×4 tensor hold the same 24 numbers
	}
	want += 1*4 + -2*0.5 + 3*-1 + 5*7
	out := MustExecOnce(backend, func(xs, ys *Node) *Node {
		m, t3 := Reshape(xs, 3, 8), Reshape(xs, 2, 3, 4)
		n, u3 := Reshape(ys, 3, 8), Reshape(ys, 2, 3, 4)
		g := xs.Graph()
		v, w := Const(g, []float64{1, -2, 3}), Const(g, []float64{4, 0.5, -1})
		s, r := Scalar(g, dtypes.Float64, 5), Scalar(g, dtypes.Float64, 7)
		return grvec.InnerProduct([]*Node{m, t3, v, s}, []*Node{n, u3, w, r})
	}, x, y)
	assert.InDelta(t, want, out.Value().(float64), 1e-12)
}
