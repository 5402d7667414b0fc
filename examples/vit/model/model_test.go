package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/stretchr/testify/require"

	"github.com/gradreg/gradreg/examples/internal/testbackend"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// backend is the tests' shared backend.
var backend = testbackend.Get

// tiny is a ViT small enough for finite differences in float64: 14×14 patches (4 tokens + class token),
// width 4, one block of 2 heads, MLP width 8 (1,054 parameters).
func tiny(norm, readout, tokens string) Config {
	return Config{Patch: 14, Width: 4, Depth: 1, Heads: 2, MLP: 8, Norm: norm, Readout: readout, Tokens: tokens}
}

// vitProblem is one batch of random float64 images and labels for a Config, with its initial weights.
type vitProblem struct {
	cfg    Config
	x, y   *tensors.Tensor
	names  []string             // "scope/name" of the model's trainable variables, sorted
	theta0 map[string][]float64 // initial values
	shapes map[string][]int

	// The plain SGD(lr = 1) trainer of grad, built once: its graph is compiled once and serves every θ (the
	// variables are set before each step), where a trainer per call compiled the same graph each time.
	sgdCtx     *context.Context
	sgdTrainer *train.Trainer

	steps map[string][]float64 // combined0's results, by the method's Params
}

// problems holds the problems of sharedProblem, by architecture, batch and seed.
var (
	problemsMu sync.Mutex
	problems   = map[string]*vitProblem{}
)

// sharedProblem returns the problem newVitProblem(t, cfg, batch, seed) builds, built once for the whole test
// binary: the tests that use one problem share its compiled graphs (the evaluation that materializes the
// variables, grad's SGD trainer) and, through combined0, the steps of identical methods at θ₀. On XLA a test's
// time is mostly compiling graphs; the ViT's take seconds each.
func sharedProblem(t *testing.T, cfg Config, batch int, seed uint64) *vitProblem {
	problemsMu.Lock()
	defer problemsMu.Unlock()
	key := fmt.Sprintf("%+v/%d/%d", cfg, batch, seed)
	if p, found := problems[key]; found {
		return p
	}
	p := newVitProblem(t, cfg, batch, seed)
	problems[key] = p
	return p
}

func newVitProblem(t *testing.T, cfg Config, batch int, seed uint64) *vitProblem {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := make([]float64, batch*imageSide*imageSide)
	for i := range x {
		x[i] = rng.Float64()
	}
	y := make([]int32, batch)
	for i := range y {
		y[i] = int32(rng.IntN(numClasses))
	}
	p := &vitProblem{cfg: cfg, x: tensors.FromFlatDataAndDimensions(x, batch, imageSide*imageSide),
		y: tensors.FromFlatDataAndDimensions(y, batch, 1), theta0: map[string][]float64{}, shapes: map[string][]int{}}
	// Materialize the variables with an evaluation (no update) and record them.
	ctx := p.newContext(nil, int64(seed))
	trainer := gr.NewTrainer(backend(t), ctx, ModelFn, losses.SparseCategoricalCrossEntropyLogits,
		optimizers.StochasticGradientDescent().Done(), nil, nil)
	_, err := trainer.EvalStep(nil, []*tensors.Tensor{p.x}, []*tensors.Tensor{p.y})
	require.NoError(t, err)
	for v := range ctx.IterVariables() {
		if !v.Trainable || strings.HasPrefix(v.Scope(), gr.Scope) {
			continue
		}
		key := v.Scope() + "/" + v.Name()
		p.names = append(p.names, key)
		p.theta0[key] = tensors.MustCopyFlatData[float64](v.MustValue())
		p.shapes[key] = v.Shape().Dimensions
	}
	slices.Sort(p.names)
	require.NotEmpty(t, p.names)
	return p
}

// newContext returns a context with the problem's architecture and, if theta is not nil, the model's
// variables preloaded with theta (unchecked, so that the model reuses them).
func (p *vitProblem) newContext(theta []float64, seed int64) *context.Context {
	ctx := context.New()
	ctx.SetParams(p.cfg.Params())
	ctx.SetParam(context.ParamInitialSeed, seed)
	if theta == nil {
		return ctx
	}
	p.eachVariable(theta, func(scope, name string, value *tensors.Tensor) {
		ctx.InAbsPath(scope).VariableWithValue(name, value)
	})
	return ctx.Checked(false)
}

// eachVariable calls fn with the scope, name and value in theta (flattened in the order of names) of each
// trainable variable.
func (p *vitProblem) eachVariable(theta []float64, fn func(scope, name string, value *tensors.Tensor)) {
	off := 0
	for _, key := range p.names {
		i := strings.LastIndex(key, "/")
		size := len(p.theta0[key])
		fn(key[:i], key[i+1:], tensors.FromFlatDataAndDimensions(slices.Clone(theta[off:off+size]), p.shapes[key]...))
		off += size
	}
}

// thetaOf returns the values of the trainable variables in ctx, flattened in the order of names.
func (p *vitProblem) thetaOf(ctx *context.Context) []float64 {
	var out []float64
	for _, key := range p.names {
		i := strings.LastIndex(key, "/")
		out = append(out, tensors.MustCopyFlatData[float64](ctx.InAbsPath(key[:i]).GetVariable(key[i+1:]).MustValue())...)
	}
	return out
}

// theta returns the initial θ flattened in the order of names.
func (p *vitProblem) theta() []float64 {
	var out []float64
	for _, key := range p.names {
		out = append(out, p.theta0[key]...)
	}
	return out
}

// step runs one training step of opt from θ through gr.NewTrainer and returns θ after it and the loss.
func (p *vitProblem) step(t *testing.T, opt optimizers.Interface, theta []float64) (after []float64, loss float64) {
	ctx := p.newContext(theta, 0)
	trainer := gr.NewTrainer(backend(t), ctx, ModelFn, losses.SparseCategoricalCrossEntropyLogits, opt, nil, nil)
	metrics, err := trainer.TrainStep(nil, []*tensors.Tensor{p.x}, []*tensors.Tensor{p.y})
	require.NoError(t, err)
	return p.thetaOf(ctx), metrics[0].Value().(float64)
}

// combined returns the gradient a method hands to SGD(lr=1): θ − θ'.
func (p *vitProblem) combined(t *testing.T, cfg *gr.Config, theta []float64) []float64 {
	after, _ := p.step(t, cfg.Done(), theta)
	return sub(theta, after)
}

// combined0 is combined at θ₀ of a method whose base optimizer is sgd1(), computed once per problem for each
// configuration (the key is the method's Params, which do not show the base optimizer): tests checking one
// method on one problem share its compiled step.
func (p *vitProblem) combined0(t *testing.T, cfg *gr.Config) []float64 {
	opt := cfg.Done()
	key := fmt.Sprint(opt.(*gr.Regularized).Params())
	if g, found := p.steps[key]; found {
		return g
	}
	theta := p.theta()
	after, _ := p.step(t, opt, theta)
	if p.steps == nil {
		p.steps = map[string][]float64{}
	}
	p.steps[key] = sub(theta, after)
	return p.steps[key]
}

// grad returns ∇L(θ) (a plain SGD step with lr = 1) and L(θ), from the problem's one SGD trainer.
func (p *vitProblem) grad(t *testing.T, theta []float64) (g []float64, loss float64) {
	if p.sgdTrainer == nil {
		p.sgdCtx = p.newContext(theta, 0)
		p.sgdTrainer = gr.NewTrainer(backend(t), p.sgdCtx, ModelFn, losses.SparseCategoricalCrossEntropyLogits,
			sgd1(), nil, nil)
	} else {
		p.eachVariable(theta, func(scope, name string, value *tensors.Tensor) {
			require.NoError(t, p.sgdCtx.InAbsPath(scope).GetVariable(name).SetValue(value))
		})
	}
	metrics, err := p.sgdTrainer.TrainStep(nil, []*tensors.Tensor{p.x}, []*tensors.Tensor{p.y})
	require.NoError(t, err)
	return sub(theta, p.thetaOf(p.sgdCtx)), metrics[0].Value().(float64)
}

// fdHVP is the central finite difference of gradients [∇L(θ + hu) − ∇L(θ − hu)] / 2h, h = step/‖u‖.
func (p *vitProblem) fdHVP(t *testing.T, theta, u []float64, step float64) []float64 {
	h := step / norm(u)
	gp, _ := p.grad(t, axpy(h, u, theta))
	gm, _ := p.grad(t, axpy(-h, u, theta))
	return scale(1/(2*h), sub(gp, gm))
}

func sgd1() optimizers.Interface {
	return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(1).Done()
}

func sub(a, b []float64) []float64 { return axpy(-1, b, a) }
func scale(c float64, x []float64) []float64 {
	return axpy(c, x, make([]float64, len(x)))
}

// axpy returns a·x + y.
func axpy(a float64, x, y []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = a*x[i] + y[i]
	}
	return out
}

func dotVec(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(x []float64) float64 { return math.Sqrt(dotVec(x, x)) }

// relErr returns ‖a − b‖ / ‖b‖.
func relErr(a, b []float64) float64 { return norm(sub(a, b)) / norm(b) }

// TestGradientMatchesLossDifferences checks the first-order gradient the other tests build on against
// central differences of the loss along random directions: ∇L·u ≈ [L(θ + hu) − L(θ − hu)] / 2h.
func TestGradientMatchesLossDifferences(t *testing.T) {
	p := sharedProblem(t, tiny("layer", "class", "onehot"), 3, 4)
	theta := p.theta()
	g, _ := p.grad(t, theta)
	rng := rand.New(rand.NewPCG(5, 5))
	for range 3 {
		u := make([]float64, len(theta))
		for i := range u {
			u[i] = rng.NormFloat64()
		}
		h := 1e-5 / norm(u)
		_, lp := p.grad(t, axpy(h, u, theta))
		_, lm := p.grad(t, axpy(-h, u, theta))
		fd := (lp - lm) / (2 * h)
		require.InDelta(t, fd, dotVec(g, u), 1e-6*math.Abs(fd)+1e-9, "directional derivative")
	}
}

// TestDBHessianVectorProduct: DB's Hg₁ through one transformer block (attention, softmax, layer norm or
// RMS norm, GELU, the readouts class and mean) equals the central finite difference of first-order
// gradients along g₁, in float64: DB with SGD(lr = 1) gives g₁ + γHg₁. γ = 0.1 and the problems are those of
// TestOneStepMatchesReference and TestGammaZeroIsSGD, so that the layer-norm problem's DB step is that test's.
func TestDBHessianVectorProduct(t *testing.T) {
	const gamma = 0.1
	for _, c := range []struct {
		cfg         Config
		batch, seed int
	}{{tiny("layer", "class", "onehot"), 3, 4}, {tiny("rms", "mean", "onehot"), 3, 2}} {
		t.Run(c.cfg.Norm+"_"+c.cfg.Readout, func(t *testing.T) {
			p := sharedProblem(t, c.cfg, c.batch, uint64(c.seed))
			theta := p.theta()
			g1, _ := p.grad(t, theta)
			hg := scale(1/gamma, sub(p.combined0(t, gr.DoubleBackprop(sgd1()).Gamma(gamma)), g1))
			require.Greater(t, norm(hg), norm(g1), "Hg₁ is not negligible (the test can fail)")
			// The central difference's error is O(h²): it falls 100-fold from h to h/10 when DB is exact.
			coarse := relErr(hg, p.fdHVP(t, theta, g1, 1e-4))
			fine := relErr(hg, p.fdHVP(t, theta, g1, 1e-5))
			require.Less(t, fine, 1e-6, "DB's Hg₁ vs finite difference of gradients")
			require.InDelta(t, 2, math.Log10(coarse/fine), 0.2, "order of the difference (coarse %.3g, fine %.3g)",
				coarse, fine)
		})
	}
}

// TestDBThroughConcatenate: with vit_tokens=concat the gradient of the gradient needs graph.Pad (the
// gradient of Concatenate is Slice, whose gradient is Pad). The pure-Go backend does not implement Pad
// (backends.Capabilities): there DB fails with an error naming Pad and suggesting F-GR, and F-GR trains; on backends with Pad
// (XLA) DB's Hg₁ matches the finite difference.
func TestDBThroughConcatenate(t *testing.T) {
	p := newVitProblem(t, tiny("layer", "class", "concat"), 2, 3)
	theta := p.theta()
	if backend(t).Capabilities().Operations[backends.OpTypePad] || grgrad.Installed() { // grgrad: Slice's gradient without Pad
		g1, _ := p.grad(t, theta)
		hg := sub(p.combined(t, gr.DoubleBackprop(sgd1()).Gamma(1), theta), g1)
		// h = 1e-6: the difference's O(h²) error is 7.4e-4, 7.4e-6, 7.4e-8 at h = 1e-4, 1e-5, 1e-6 on the
		// pure-Go backend with grgrad, 3e-5, 3e-7, 3e-9 on XLA.
		require.Less(t, relErr(hg, p.fdHVP(t, theta, g1, 1e-6)), 1e-6)
		return
	}
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				if err, _ = r.(error); err == nil {
					t.Fatalf("panic without an error: %v", r)
				}
			}
		}()
		ctx := p.newContext(theta, 0)
		trainer := gr.NewTrainer(backend(t), ctx, ModelFn, losses.SparseCategoricalCrossEntropyLogits,
			gr.DoubleBackprop(sgd1()).Done(), nil, nil)
		_, err = trainer.TrainStep(nil, []*tensors.Tensor{p.x}, []*tensors.Tensor{p.y})
	}()
	require.Error(t, err)
	require.Contains(t, err.Error(), "op Pad")
	require.Contains(t, err.Error(), "gr.ForwardDifference")
	// The finite-difference methods need first-order gradients only: F-GR's step matches its formula.
	const gamma, eps = 0.05, 0.05
	g1, _ := p.grad(t, theta)
	gp, _ := p.grad(t, axpy(eps, g1, theta))
	want := axpy(gamma/eps, gp, scale(1-gamma/eps, g1))
	require.Less(t, relErr(p.combined(t, gr.ForwardDifference(sgd1()).Gamma(gamma).Epsilon(eps), theta), want), 1e-9)
}
