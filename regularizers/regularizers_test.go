package regularizers_test

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/regularizers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each wrapper is evaluated on a "loss function" that returns the predictions as per-example losses ℓ_i, so the
// value and the gradient with respect to each ℓ_i can be compared with the formulas directly.

var losses = []float64{0.31, 0.08, 0.52, 0.19, 0.27}

func identity(_, predictions []*Node) *Node { return predictions[0] }

func meanLoss(_, predictions []*Node) *Node { return ReduceAllMean(predictions[0]) }

// eval returns the wrapped loss and its gradient with respect to ℓ, with mask (nil: none) among the labels.
func eval(t *testing.T, wrapped train.LossFn, ell []float64, mask []bool) (value float64, grad []float64) {
	backend := grbackend.MustNew()
	hasMask := mask != nil
	if !hasMask {
		mask = make([]bool, len(ell)) // fed but not used
	}
	fn := func(x, m *Node) (*Node, *Node) {
		labels := []*Node{x}
		if hasMask {
			labels = append(labels, m)
		}
		loss := wrapped(labels, []*Node{x})
		require.True(t, loss.IsScalar(), "the wrapped loss is a scalar")
		return loss, Gradient(loss, x)[0]
	}
	out := MustExecOnceN(backend, fn, ell, mask)
	return tensors.ToScalar[float64](out[0]), tensors.MustCopyFlatData[float64](out[1])
}

func sign(x float64) float64 {
	if x > 0 {
		return 1
	}
	return -1
}

func TestFlooding(t *testing.T) {
	n := float64(len(losses))
	mean := 0.0
	for _, l := range losses {
		mean += l / n
	}
	for _, b := range []float64{0.1, 0.4} { // below the mean (descent) and above it (ascent)
		for _, lossFn := range []train.LossFn{identity, meanLoss} { // per-example or already averaged
			value, grad := eval(t, regularizers.Flooding(lossFn, b), losses, nil)
			assert.InDelta(t, math.Abs(mean-b)+b, value, 1e-15)
			for i := range grad {
				assert.InDelta(t, sign(mean-b)/n, grad[i], 1e-15, "b=%g: ∂/∂ℓ_%d", b, i)
			}
		}
	}
}

func TestIFlood(t *testing.T) {
	const b = 0.25 // some examples below, some above
	n := float64(len(losses))
	value, grad := eval(t, regularizers.IFlood(identity, b), losses, nil)
	want := 0.0
	for i, l := range losses {
		want += (math.Abs(l-b) + b) / n
		assert.InDelta(t, sign(l-b)/n, grad[i], 1e-15, "∂/∂ℓ_%d: per-example sign", i)
	}
	assert.InDelta(t, want, value, 1e-15)
}

func TestSoftAD(t *testing.T) {
	for _, tc := range []struct{ b, sigma float64 }{{0.25, 1}, {0.25, 0.1}, {0.05, 0.3}} {
		n := float64(len(losses))
		value, grad := eval(t, regularizers.SoftAD(identity, tc.b, tc.sigma), losses, nil)
		want := tc.b
		for i, l := range losses {
			x := (l - tc.b) / tc.sigma
			want += tc.sigma * tc.sigma * (math.Sqrt(x*x+1) - 1) / n
			assert.InDelta(t, tc.sigma*x/math.Sqrt(x*x+1)/n, grad[i], 1e-15, "%+v: ∂/∂ℓ_%d", tc, i)
		}
		assert.InDelta(t, want, value, 1e-15, "%+v", tc)
	}
}

// TestMask: a boolean mask among the labels removes examples from the mean.
func TestMask(t *testing.T) {
	mask := []bool{true, false, true, true, false}
	const b = 0.25
	value, grad := eval(t, regularizers.IFlood(identity, b), losses, mask)
	want := 0.0
	for i, l := range losses {
		if mask[i] {
			want += (math.Abs(l-b) + b) / 3
			assert.InDelta(t, sign(l-b)/3, grad[i], 1e-15, "ℓ_%d", i)
		} else {
			assert.Zero(t, grad[i], "masked-out ℓ_%d", i)
		}
	}
	assert.InDelta(t, want, value, 1e-15)
}

// TestScalarLossRefused: IFlood and SoftAD need per-example losses and say so.
func TestScalarLossRefused(t *testing.T) {
	for name, wrapped := range map[string]train.LossFn{
		"IFlood": regularizers.IFlood(meanLoss, 0.1), "SoftAD": regularizers.SoftAD(meanLoss, 0.1, 1),
	} {
		err := catch(func() { eval(t, wrapped, losses, nil) })
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "regularizers."+name+" needs per-example losses")
	}
}

func TestBadInput(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		fn   func()
		want string
	}{
		{func() { regularizers.Flooding(identity, nan) }, "flood level b must be a finite number"},
		{func() { regularizers.IFlood(identity, math.Inf(1)) }, "flood level b"},
		{func() { regularizers.SoftAD(identity, nan, 1) }, "threshold b"},
		{func() { regularizers.SoftAD(identity, 0.1, 0) }, "scale σ (sigma) must be a finite number in (0, +∞)"},
		{func() { regularizers.SoftAD(identity, 0.1, nan) }, "scale σ"},
	} {
		err := catch(tc.fn)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestFromContext(t *testing.T) {
	ctx := context.New()
	same, err := regularizers.FromContext(ctx, meanLoss)
	require.NoError(t, err)
	value, _ := eval(t, same, losses, nil)
	assert.InDelta(t, 0.274, value, 1e-15, "none: the loss unchanged")

	ctx.SetParams(map[string]any{regularizers.ParamFloodMethod: "softad", regularizers.ParamFloodLevel: 0.25,
		regularizers.ParamSoftADSigma: 0.1})
	fromCtx, err := regularizers.FromContext(ctx, identity)
	require.NoError(t, err)
	got, _ := eval(t, fromCtx, losses, nil)
	want, _ := eval(t, regularizers.SoftAD(identity, 0.25, 0.1), losses, nil)
	assert.Equal(t, want, got)

	ctx.SetParam(regularizers.ParamFloodMethod, "flood")
	_, err = regularizers.FromContext(ctx, identity)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "flood_method")
	ctx.SetParams(map[string]any{regularizers.ParamFloodMethod: "softad", regularizers.ParamSoftADSigma: -1.0})
	_, err = regularizers.FromContext(ctx, identity)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "σ")
}

// catch returns the error of a panic in fn, or nil.
func catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = assert.AnError
			}
		}
	}()
	fn()
	return nil
}

// TestBoolLabelsAreNotAMask: labels[0] are the labels even when they are boolean (binary classification):
// only labels[1:] can be the mask, so the mean runs over every example. Kills the mutant "a boolean
// labels[0] is taken as the mask" (every other test has float labels).
func TestBoolLabelsAreNotAMask(t *testing.T) {
	const b = 0.25
	labels := []bool{true, false, true, false, false}
	for name, wrapped := range map[string]train.LossFn{
		"Flooding": regularizers.Flooding(identity, b), "IFlood": regularizers.IFlood(identity, b),
		"SoftAD": regularizers.SoftAD(identity, b, 0.3),
	} {
		wantValue, wantGrad := eval(t, wrapped, losses, nil)
		fn := func(x, y *Node) (*Node, *Node) {
			loss := wrapped([]*Node{y}, []*Node{x})
			return loss, Gradient(loss, x)[0]
		}
		out := MustExecOnceN(grbackend.MustNew(), fn, losses, labels)
		assert.InDelta(t, wantValue, tensors.ToScalar[float64](out[0]), 1e-15, name)
		assert.InDeltaSlice(t, wantGrad, tensors.MustCopyFlatData[float64](out[1]), 1e-15, name)
	}
}
