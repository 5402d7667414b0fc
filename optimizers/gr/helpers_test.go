package gr_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/stretchr/testify/require"
)

// The tests run on the backend grbackend.New picks: $GOMLX_BACKEND, else XLA if a PJRT plugin is
// installed, else the pure-Go backend. E.g. GOMLX_BACKEND=xla:cpu go test ./...

var (
	backendOnce sync.Once
	testBackend backends.Backend
)

// parallelOnXLA runs the test in parallel with the other such tests on XLA, where a test's time is mostly the
// compilation of its graphs; on the pure-Go backend, whose executions can deadlock when many matrix products run
// at once (see the note on gr's Groups), the tests stay sequential. Tests that call it change no global state.
func parallelOnXLA(t *testing.T) {
	if strings.HasPrefix(strings.ToLower(backend(t).Name()), "xla") {
		t.Parallel()
	}
}

func backend(t testing.TB) backends.Backend {
	backendOnce.Do(func() {
		var err error
		testBackend, err = grbackend.New()
		if err != nil {
			t.Fatalf("no backend: %v", err)
		}
	})
	return testBackend
}

// problem is a small regression problem in float64: inputs x (n×in) and targets t (n).
type problem struct {
	x      [][]float64
	t      []float64
	w0     []float64 // initial W, in×hidden, row-major
	v0     []float64 // initial v, hidden
	hidden int
	lambda float64 // weight of the AddLoss term λ‖W‖²
}

func newProblem(seed uint64, n, in, hidden int, lambda float64) *problem {
	rng := rand.New(rand.NewPCG(seed, 7))
	p := &problem{hidden: hidden, lambda: lambda}
	for range n {
		row := make([]float64, in)
		for k := range row {
			row[k] = rng.NormFloat64()
		}
		p.x = append(p.x, row)
		p.t = append(p.t, math.Sin(row[0])+0.3*rng.NormFloat64())
	}
	for range in * hidden {
		p.w0 = append(p.w0, 0.7*rng.NormFloat64())
	}
	for range hidden {
		p.v0 = append(p.v0, 0.7*rng.NormFloat64())
	}
	return p
}

func (p *problem) in() int { return len(p.x[0]) }

// theta0 is the initial θ = (W, v) flattened.
func (p *problem) theta0() []float64 { return append(append([]float64{}, p.w0...), p.v0...) }

// modelFn is the GoMLX model: pred_i = Σ_j v_j tanh(Σ_k x_ik W_kj), with the AddLoss term λ‖W‖².
// With linear=true the tanh is omitted, making the loss quadratic in v (W is then frozen: not trainable).
func (p *problem) modelFn(linear bool) train.ModelFn {
	return func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		x := inputs[0]
		wVar := ctx.VariableWithValue("W", tensors.FromFlatDataAndDimensions(p.w0, p.in(), p.hidden))
		vVar := ctx.VariableWithValue("v", tensors.FromFlatDataAndDimensions(p.v0, p.hidden))
		h := Dot(x, wVar.ValueGraph(x.Graph()))
		if linear {
			wVar.SetTrainable(false)
		} else {
			h = Tanh(h)
			train.AddLoss(ctx, MulScalar(ReduceAllSum(Square(wVar.ValueGraph(x.Graph()))), p.lambda))
		}
		pred := Dot(h, vVar.ValueGraph(x.Graph()))
		return []*Node{pred}
	}
}

// squaredLoss returns the per-example (pred − t)²; the trainer takes the mean.
func squaredLoss(labels, predictions []*Node) *Node {
	return Square(Sub(predictions[0], labels[0]))
}

func (p *problem) tensors() (x, t *tensors.Tensor) {
	flat := make([]float64, 0, len(p.x)*p.in())
	for _, row := range p.x {
		flat = append(flat, row...)
	}
	return tensors.FromFlatDataAndDimensions(flat, len(p.x), p.in()), tensors.FromFlatDataAndDimensions(p.t, len(p.t))
}

// sgd is plain SGD with learning rate lr and no decay.
func sgd(lr float64) optimizers.Interface {
	return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr).Done()
}

// trainSteps runs steps training steps with opt through gr.NewTrainer and returns θ = (W, v) after them,
// and the reported losses.
func (p *problem) trainSteps(t testing.TB, opt optimizers.Interface, linear bool, steps int) (theta, losses []float64) {
	return p.train(t, p.modelFn(linear), squaredLoss, opt, steps)
}

// train is trainSteps with any model and loss functions.
func (p *problem) train(t testing.TB, modelFn train.ModelFn, lossFn train.LossFn, opt optimizers.Interface, steps int) (theta, losses []float64) {
	ctx := context.New()
	trainer := gr.NewTrainer(backend(t), ctx, modelFn, lossFn, opt, nil, nil)
	x, y := p.tensors()
	for range steps {
		metrics, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		require.NoError(t, err)
		losses = append(losses, metrics[0].Value().(float64))
	}
	return variableValues(ctx, "W", "v"), losses
}

// variableValues concatenates the flat values of the named root-scope variables.
func variableValues(ctx *context.Context, names ...string) []float64 {
	var out []float64
	for _, name := range names {
		v := ctx.GetVariableByScopeAndName(context.RootScope, name)
		out = append(out, tensors.MustCopyFlatData[float64](v.MustValue())...)
	}
	return out
}

// relErr returns max|a − b| / max|b|.
func relErr(a, b []float64) float64 {
	var num, den float64
	for i := range b {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	return num / den
}

// gradientFromStep recovers the combined gradient from one SGD(lr=1) step: g = θ₀ − θ₁.
func gradientFromStep(theta0, theta1 []float64) []float64 {
	g := make([]float64, len(theta0))
	for i := range g {
		g[i] = theta0[i] - theta1[i]
	}
	return g
}

// metricAt returns the value of the train metric named name in a step's results m.
func metricAt(t *testing.T, trainer *train.Trainer, m []*tensors.Tensor, name string) float64 {
	for i, mi := range trainer.TrainMetrics() {
		if mi.Name() == name {
			return m[i].Value().(float64)
		}
	}
	t.Fatalf("no train metric %q", name)
	return 0
}
