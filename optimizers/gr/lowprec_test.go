package gr_test

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"math"
)

// captureOptimizer is a base optimizer that records, in float32 variables under /capture, the gradient it is
// handed, and changes nothing else.
type captureOptimizer struct{}

func (captureOptimizer) UpdateGraph(*context.Context, *Graph, *Node) { panic("not used") }
func (captureOptimizer) Clear(*context.Context) error                { return nil }
func (captureOptimizer) UpdateGraphWithGradients(ctx *context.Context, grads []*Node, _ dtypes.DType) {
	for i, gi := range grads {
		v := ctx.InAbsPath("/capture").Checked(false).VariableWithValue(fmt.Sprint(i),
			tensors.FromShape(shapes.Make(dtypes.Float32, gi.Shape().Dimensions...))).SetTrainable(false)
		v.SetValueGraph(ConvertDType(gi, dtypes.Float32))
	}
}

// roundTo returns x rounded to dtype (bfloat16) and back, or x.
func roundTo(dtype dtypes.DType, x []float64) []float64 {
	out := make([]float64, len(x))
	for i, xi := range x {
		out[i] = xi
		if dtype == dtypes.BFloat16 {
			out[i] = float64(bfloat16.FromFloat64(xi).Float32())
		}
	}
	return out
}

// toDType returns a tensor of dtype with the values of x.
func toDType(dtype dtypes.DType, x []float64, dims ...int) *tensors.Tensor {
	switch dtype {
	case dtypes.BFloat16:
		b := make([]bfloat16.BFloat16, len(x))
		for i, xi := range x {
			b[i] = bfloat16.FromFloat64(xi)
		}
		return tensors.FromFlatDataAndDimensions(b, dims...)
	case dtypes.Float32:
		f := make([]float32, len(x))
		for i, xi := range x {
			f[i] = float32(xi)
		}
		return tensors.FromFlatDataAndDimensions(f, dims...)
	}
	return tensors.FromFlatDataAndDimensions(x, dims...)
}

// lowPrecisionGradient returns the combined gradient F-GR(γ, ε) hands to its base optimizer after one step on
// p's tanh MLP (with its AddLoss term) with variables and inputs of dtype, the loss in float32 (mixed
// precision), as float64; with metrics, also the PrecisionMetrics value.
func lowPrecisionGradient(t *testing.T, p *problem, dtype dtypes.DType, gamma, eps float64) (g []float64, rounded float64) {
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		x := inputs[0]
		g := x.Graph()
		w := ctx.VariableWithValue("W", toDType(dtype, p.w0, p.in(), p.hidden)).ValueGraph(g)
		v := ctx.VariableWithValue("v", toDType(dtype, p.v0, p.hidden)).ValueGraph(g)
		train.AddLoss(ctx, MulScalar(ConvertDType(ReduceAllSum(Square(w)), dtypes.Float32), p.lambda))
		return []*Node{ConvertDType(Dot(Tanh(Dot(x, w)), v), dtypes.Float32)}
	}
	lossFn := func(labels, predictions []*Node) *Node {
		return Square(Sub(predictions[0], labels[0]))
	}
	ctx := context.New()
	opt := gr.ForwardDifference(captureOptimizer{}).Gamma(gamma).Epsilon(eps).Done()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, gr.PrecisionMetrics(), nil)
	x, _ := p.tensors()
	xs := tensors.MustCopyFlatData[float64](x)
	m, err := trainer.TrainStep(nil, []*tensors.Tensor{toDType(dtype, xs, len(p.x), p.in())},
		[]*tensors.Tensor{toDType(dtypes.Float32, p.t, len(p.t))})
	require.NoError(t, err)
	for i := range 2 {
		v := ctx.GetVariableByScopeAndName("/capture", fmt.Sprint(i))
		for _, f := range tensors.MustCopyFlatData[float32](v.MustValue()) {
			g = append(g, float64(f))
		}
	}
	return g, float64(m[3].Value().(float32))
}

// opNorm2 estimates ‖H‖₂ at θ by power iteration on the float64 Hessian-vector product.
func opNorm2(p *problem, theta []float64) float64 {
	v := make([]float64, len(theta))
	for i := range v {
		v[i] = 1
	}
	var lambda float64
	for range 100 {
		hv := p.hvp(theta, v, false)
		lambda = normVec(hv) / normVec(v)
		v = scaleVec(1/normVec(hv), hv)
	}
	return lambda
}

// TestBFloat16Correction: with bfloat16 variables and inputs, F-GR's correction c = g − g₁ (γ = ε = 0.05, so
// that g = ∇L(θ + εg₁) is handed over exactly) is within a derived tolerance of the independent float64
// correction at the same bfloat16-rounded θ and inputs. The perturbed point is x̃ = fl₁₆(θ + εg̃₁), the sum
// taken in float32 and rounded once (GoMLX v0.26.0 converts to bfloat16 by truncation, bits >> 16, so the unit
// roundoff is u = 2⁻⁷). Writing g̃ = ∇L(x̃) + e(x̃) and g̃₁ = g₁ + e₁ for the bfloat16 evaluations,
//
//	c̃ − c = e(x̃) − e₁ + [∇L(x̃) − ∇L(θ + εg₁)],   x̃ − (θ + εg₁) = δ + εe₁,   |δᵢ| ≤ u|θᵢ + εg̃₁ᵢ|
//
// so ‖c̃ − c‖ ≤ ‖e(x̃)‖ + ‖e₁‖ + ‖H‖₂(u‖θ + εg̃₁‖ + ε‖e₁‖) to first order, with ‖H‖₂ by power iteration in
// float64, e₁ measured, and the premise ‖e(x̃)‖ ≤ 2‖e₁‖ (the same bfloat16 arithmetic at a nearby point)
// checked with x̃ recomputed in Go's float32 arithmetic — which also checks that the perturbed evaluation
// happened at x̃. The float32 run must be within 1e-4 relative.
func TestBFloat16Correction(t *testing.T) {
	parallelOnXLA(t)
	const gamma, eps, u = 0.05, 0.05, 1.0 / 128
	p := newProblem(71, 32, 4, 8, 0.01)
	// The reference at the bfloat16-rounded θ₀ and inputs.
	q := *p
	q.w0, q.v0 = roundTo(dtypes.BFloat16, p.w0), roundTo(dtypes.BFloat16, p.v0)
	q.x = nil
	for _, row := range p.x {
		q.x = append(q.x, roundTo(dtypes.BFloat16, row))
	}
	theta := q.theta0()
	g1 := q.grad(theta, false)
	c := scaleVec(gamma/eps, axpy(-1, g1, q.grad(axpy(eps, g1, theta), false)))
	hNorm := opNorm2(&q, theta)

	correction := func(dtype dtypes.DType, pp *problem) (cHat, g1Hat, gHat []float64, rounded float64) {
		gHat, rounded = lowPrecisionGradient(t, pp, dtype, gamma, eps)
		g1Hat, _ = lowPrecisionGradient(t, pp, dtype, 0, eps) // γ = 0: g = g₁
		return axpy(-1, g1Hat, gHat), g1Hat, gHat, rounded
	}
	c32, _, _, rounded32 := correction(dtypes.Float32, &q)
	rel32 := normVec(axpy(-1, c, c32)) / normVec(c)
	assert.Less(t, rel32, 1e-4, "float32 correction")

	cB, g1B, gB, roundedB := correction(dtypes.BFloat16, p)
	e1 := normVec(axpy(-1, g1, g1B))
	xTilde, sum := make([]float64, len(theta)), make([]float64, len(theta))
	for i := range theta {
		s := float32(theta[i]) + float32(eps)*float32(g1B[i])
		sum[i] = float64(s)
		xTilde[i] = float64(bfloat16.FromFloat32(s).Float32())
	}
	eX := normVec(axpy(-1, q.grad(xTilde, false), gB))
	assert.LessOrEqual(t, eX, 2*e1, "premise: evaluation error at x̃")
	tol := eX + e1 + hNorm*(u*normVec(sum)+eps*e1)
	errB := normVec(axpy(-1, c, cB))
	t.Logf("‖c‖ = %.4g; float32: relative error %.2g, rounded-to-zero %.3g; bfloat16: relative error %.3g "+
		"(tolerance %.3g), ‖e₁‖/‖g₁‖ = %.3g, ‖e(x̃)‖/‖g₁‖ = %.3g, ‖H‖₂ = %.3g, rounded-to-zero %.3g",
		normVec(c), rel32, rounded32, errB/normVec(c), tol/normVec(c), e1/normVec(g1), eX/normVec(g1), hNorm, roundedB)
	assert.LessOrEqual(t, errB, tol, "bfloat16 correction within the derived tolerance")
	assert.Equal(t, 0.0, rounded32, "no float32 perturbation lost")
	assert.Greater(t, roundedB, 0.0)
}

// TestRoundedToZeroMetric: on a constructed case the PrecisionMetrics value is exact. L = Σᵢ aᵢwᵢ with
// bfloat16 w = (1, 1, 1, 1, 1), a = (10⁻³, 10⁻², 0, 1, 0.5), F-GR perturbation o = εa with ε = 0.05:
// o = (5·10⁻⁵, 5·10⁻⁴, 0, 0.05, 0.025); bfloat16's spacing at 1 is 2⁻⁷ ≈ 0.0078, so the first two are lost
// (whether the conversion rounds to nearest or truncates, as GoMLX v0.26.0's does) and the last two kept: 2 of
// the 4 non-zero offsets, the fraction 1/2. With float32 weights none is lost.
func TestRoundedToZeroMetric(t *testing.T) {
	parallelOnXLA(t)
	a := []float64{1e-3, 1e-2, 0, 1, 0.5}
	for _, tc := range []struct {
		dtype dtypes.DType
		want  float64
	}{{dtypes.BFloat16, 0.5}, {dtypes.Float32, 0}} {
		modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
			w := ctx.VariableWithValue("w", toDType(tc.dtype, []float64{1, 1, 1, 1, 1}, 5)).ValueGraph(inputs[0].Graph())
			return []*Node{ConvertDType(ReduceAllSum(Mul(w, ConvertDType(inputs[0], tc.dtype))), dtypes.Float32)}
		}
		lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
		opt := gr.ForwardDifference(sgd(0)).Gamma(0.05).Epsilon(0.05).Done()
		trainer := gr.NewTrainer(backend(t), context.New(), modelFn, lossFn, opt, gr.PrecisionMetrics(), nil)
		x := toDType(dtypes.Float32, a, 5)
		m, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
		require.NoError(t, err)
		assert.Equal(t, float32(tc.want), m[3].Value(), "%s", tc.dtype)
	}
}

// bf16Gradient returns the gradient F-GR(γ, ε) hands to its base optimizer after one step on the model
// L = Σᵢ aᵢwᵢ + ½cᵢwᵢ² with bfloat16 variables w = θ and the loss in float32 (captureOptimizer).
func bf16Gradient(t *testing.T, theta, a, c []float64, gamma, eps float64) []float64 {
	n := len(theta)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		g := inputs[0].Graph()
		w := ctx.VariableWithValue("w", toDType(dtypes.BFloat16, theta, n)).ValueGraph(g)
		av, cv := Const(g, toDType(dtypes.BFloat16, a, n)), Const(g, toDType(dtypes.BFloat16, c, n))
		l := Add(Mul(av, w), Mul(MulScalar(cv, 0.5), Mul(w, w)))
		return []*Node{ConvertDType(ReduceAllSum(l), dtypes.Float32)}
	}
	lossFn := func(_, predictions []*Node) *Node { return predictions[0] }
	ctx := context.New()
	opt := gr.ForwardDifference(captureOptimizer{}).Gamma(gamma).Epsilon(eps).Done()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, nil, nil)
	x := tensors.FromValue([]float32{0})
	_, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{x})
	require.NoError(t, err)
	var out []float64
	for _, f := range tensors.MustCopyFlatData[float32](ctx.GetVariableByScopeAndName("/capture", "0").MustValue()) {
		out = append(out, float64(f))
	}
	return out
}

// TestBFloat16CombinationInFloat32: with bfloat16 variables F-GR combines g₁ and the perturbed gradient in
// float32. Constructed so that every bfloat16 value is exact: L = 256w − (85/128)w², θ = 0, γ = 0.75,
// ε = 0.25: g₁ = 256, θ + εg₁ = 64, ∇L(64) = 171, and g = (1 − 3)·256 + 3·171 = 1 exactly in float32, while
// in bfloat16 3·171 = 513 is not representable (8 significant bits) and the result would be 0 or 2.
// Kills the mutant "bfloat16 gradients not widened" (the existing bfloat16 test uses γ = ε, where g₁'s
// coefficient is 0).
func TestBFloat16CombinationInFloat32(t *testing.T) {
	parallelOnXLA(t)
	g := bf16Gradient(t, []float64{0}, []float64{256}, []float64{-85.0 / 64}, 0.75, 0.25)
	assert.Equal(t, []float64{1}, g)
}

// bf16Round returns x (finite, positive) rounded to bfloat16 the way the backend converts float32 to bfloat16,
// found by converting 1 + 3·2⁻⁹: GoMLX v0.26.0's pure-Go backend truncates (as its bfloat16 package does), XLA
// rounds to nearest even.
func bf16Round(t *testing.T, x float32) float64 {
	probe := MustExecOnce(backend(t), func(x *Node) *Node { return ConvertDType(ConvertDType(x, dtypes.BFloat16), dtypes.Float32) },
		float32(1+3.0/512))
	bits := math.Float32bits(x)
	if tensors.ToScalar[float32](probe) != 1 { // round to nearest, ties to even
		bits += 0x7fff + (bits>>16)&1
	}
	return float64(math.Float32frombits(bits &^ 0xffff))
}

// TestBFloat16PerturbationRoundedOnce: with bfloat16 variables the perturbed point is fl₁₆(θ + o), the sum
// taken in float32 and rounded once, not fl₁₆(θ + fl₁₆(o)). L = ½w², so ∇L(x̃) = x̃ exactly, and γ = ε hands
// x̃ itself to the base optimizer; o = εg₁ = εθ. Two constructed cases, one for each way the backend may
// round to bfloat16 (the double rounding shows only when it drops bits of o that decide the last bit of the
// sum): θ = 3·2⁻⁹ with ε ≈ (1 + 2⁻⁸)/θ (truncation: once 1 + 2⁻⁷, twice 1), and θ = 1 with ε = 2⁻⁸ + 2⁻²⁰
// (round to nearest: once 1 + 2⁻⁷, twice 1). Kills the mutant "θ + o summed in bfloat16".
func TestBFloat16PerturbationRoundedOnce(t *testing.T) {
	parallelOnXLA(t)
	for _, tc := range []struct{ theta, eps float64 }{
		{3.0 / 512, float64(float32((1 + 1.0/256) / (3.0 / 512)))},
		{1, 1.0/256 + 1.0/(1<<20)},
	} {
		g := bf16Gradient(t, []float64{tc.theta}, []float64{0}, []float64{1}, tc.eps, tc.eps)
		o := float32(tc.eps) * float32(tc.theta)
		want := bf16Round(t, float32(tc.theta)+o)
		assert.Equal(t, []float64{want}, g, "θ = %g, ε = %g", tc.theta, tc.eps)
	}
}
