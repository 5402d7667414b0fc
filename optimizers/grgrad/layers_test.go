package grgrad_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/batchnorm"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	"github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// layerModel is a small float64 CNN on [4, 6, 6, 2] images with 3 outputs, built from GoMLX's layers;
// body is the part under test, before a dense head.
type layerModel struct {
	name  string
	body  func(ctx *context.Context, x *Node) *Node
	needs []backends.OpType // forward ops a backend may lack
}

var layerModels = []layerModel{
	// The ops the pure-Go backend has: a strided convolution, layer and RMS normalization, Slice and
	// Concatenate.
	{name: "Convolution Strides(2) PadSame, LayerNormalization, RMSNorm, Slice, Concatenate",
		body: func(ctx *context.Context, x *Node) *Node {
			x = layers.Convolution(ctx.In("conv"), x).Filters(8).KernelSize(3).Strides(2).PadSame().Done()
			x = Tanh(layers.LayerNormalization(ctx.In("ln"), x, -1).Done())
			a, b := Slice(x, AxisRange(), AxisRange(0, 1)), Slice(x, AxisRange(), AxisRange(1, 3))
			x = Concatenate([]*Node{b, Square(a)}, 1)
			return Tanh(layers.RMSNorm(ctx.In("rms"), x).Done())
		}},
	// A ResNet's ops, which need the XLA backend: batch normalization (training mode), max- and
	// mean-pooling.
	{name: "Convolution Strides(2) PadSame, batchnorm.New, MaxPool, MeanPool",
		needs: []backends.OpType{backends.OpTypeBatchNormForTraining, backends.OpTypeSelectAndScatterMax, backends.OpTypePad},
		body: func(ctx *context.Context, x *Node) *Node {
			x = layers.Convolution(ctx.In("conv"), x).Filters(8).KernelSize(3).Strides(1).PadSame().Done()
			x = Tanh(batchnorm.New(ctx.In("bn"), x, -1).Done())
			x = MaxPool(x).Window(2).Done()
			x = layers.Convolution(ctx.In("conv2"), x).Filters(4).KernelSize(3).Strides(2).PadSame().Done()
			return MeanPool(Tanh(x)).Window(2).Done()
		}},
}

func (m layerModel) modelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	x := m.body(ctx, inputs[0])
	x = Reshape(x, x.Shape().Dimensions[0], -1)
	return []*Node{layers.Dense(ctx.In("head"), x, true, 3)}
}

func squaredLoss(labels, predictions []*Node) *Node {
	return ReduceAllMean(Square(Sub(predictions[0], labels[0])))
}

// layerData is the fixed batch of the layer tests.
func layerData() (x, y *tensors.Tensor) {
	rng := rand.New(rand.NewPCG(3, 4))
	return randomTensor(rng, 4, 6, 6, 2), randomTensor(rng, 4, 3)
}

// stepOnce takes one step with opt from the same initial weights and returns the trainable variables.
func stepOnce(t *testing.T, m layerModel, opt optimizers.Interface) []float64 {
	t.Helper()
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(17); err != nil {
		t.Fatal(err)
	}
	trainer := gr.NewTrainer(backend(t), ctx, m.modelFn, squaredLoss, opt, nil, nil)
	x, y := layerData()
	if _, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
		panic(err)
	}
	var vars []*context.Variable
	for v := range ctx.IterVariables() {
		if v.Trainable {
			vars = append(vars, v)
		}
	}
	slices.SortFunc(vars, func(a, b *context.Variable) int { return strings.Compare(a.ScopeAndName(), b.ScopeAndName()) })
	var theta []float64
	for _, v := range vars {
		theta = append(theta, tensors.MustCopyFlatData[float64](v.MustValue())...)
	}
	return theta
}

func sgd(lr float64) optimizers.Interface {
	return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr).Done()
}

// relDiff returns ‖a − b‖/‖b‖.
func relDiff(a, b []float64) float64 {
	var d, n float64
	for i := range b {
		d, n = d+(a[i]-b[i])*(a[i]-b[i]), n+b[i]*b[i]
	}
	return math.Sqrt(d / n)
}

// slope fits log(err) = a + s·log(ε) by least squares and returns s.
func slope(eps, errs []float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(eps))
	for i := range eps {
		x, y := math.Log(eps[i]), math.Log(errs[i])
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// Through GoMLX's layers, one double-backprop step equals one central-difference step as ε → 0, with
// error ∝ ε² (the steps are SGD with learning rate 1, so θ₀ − θ₁ is the regularized gradient).
func TestDoubleBackpropThroughLayers(t *testing.T) {
	backend := backend(t)
	grgrad.MustInstall()
	defer grgrad.Uninstall()
	const gamma = 0.5
	epsilons := []float64{0.008, 0.004}
	for _, m := range layerModels {
		t.Run(m.name, func(t *testing.T) {
			if op := missingOp(backend, m.needs); op != backends.OpTypeInvalid {
				err := buildError(func() { stepOnce(t, m, gr.DoubleBackprop(sgd(1)).Gamma(gamma).Done()) })
				if err == nil {
					t.Fatalf("backend %s lacks %s, yet the model trained", backend.Name(), op)
				}
				if msg := err.Error(); !strings.Contains(msg, op.String()) || !strings.Contains(strings.ToLower(msg), backendWord(backend)) {
					t.Fatalf("error does not name the backend (%s) and the op (%s): %v", backend.Name(), op, err)
				}
				t.Logf("%s has no %s: %s", backend.Name(), op, firstLine(err.Error()))
				return
			}
			theta0 := stepOnce(t, m, sgd(0))
			db := stepOnce(t, m, gr.DoubleBackprop(sgd(1)).Gamma(gamma).Done())
			gDB := make([]float64, len(db))
			for i := range db {
				gDB[i] = theta0[i] - db[i]
			}
			errs := make([]float64, len(epsilons))
			for i, eps := range epsilons {
				cd := stepOnce(t, m, gr.CentralDifference(sgd(1)).Gamma(gamma).Epsilon(eps).Normalized(true).Done())
				gCD := make([]float64, len(cd))
				for j := range cd {
					gCD[j] = theta0[j] - cd[j]
				}
				errs[i] = relDiff(gCD, gDB)
			}
			s := slope(epsilons, errs)
			t.Logf("‖g_CD − g_DB‖/‖g_DB‖ = %.3g at ε = %v: order %.2f", errs, epsilons, s)
			if math.Abs(s-2) > 0.2 || errs[len(errs)-1] > 1e-3 {
				t.Errorf("central differences do not converge to double backprop with order 2: errors %.3g, order %.2f", errs, s)
			}
		})
	}
}
