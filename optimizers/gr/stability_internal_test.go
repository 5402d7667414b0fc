package gr

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	"github.com/gradreg/gradreg/optimizers/grbackend"
)

// heavyBall is v ← βv + g, θ ← θ − ηv with a constant η, declaring itself to the stability check.
type heavyBall struct{ lr, beta float64 }

func (o *heavyBall) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *Node) {
	o.UpdateGraphWithGradients(ctx, ctx.BuildTrainableVariablesGradientsGraph(loss), loss.DType())
}

func (o *heavyBall) UpdateGraphWithGradients(ctx *context.Context, grads []*Node, lossDType dtypes.DType) {
	g := grads[0].Graph()
	optimizers.IncrementGlobalStepGraph(ctx, g, lossDType)
	i := 0
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.InUseByGraph(g) {
			continue
		}
		vel := ctx.InAbsPath("/hb").Checked(false).VariableWithValue(v.Name(), tensors.FromShape(v.Shape())).
			SetTrainable(false)
		newVel := graph.Add(graph.MulScalar(vel.ValueGraph(g), o.beta), grads[i])
		vel.SetValueGraph(newVel)
		v.SetValueGraph(graph.Sub(v.ValueGraph(g), graph.MulScalar(newVel, o.lr)))
		i++
	}
}

func (o *heavyBall) Clear(ctx *context.Context) error { return nil }

func (o *heavyBall) HeavyBall(_ *context.Context, g *graph.Graph) (*Node, float64) {
	return graph.Scalar(g, dtypes.Float64, o.lr), o.beta
}

// TestStabilityWarning: on the isotropic quadratic L = (λ/2)‖θ‖² (λ̂ = λ exactly) the warning fires, once,
// at the first read (StabilityReadEvery steps),
// when the learning rate is 15 % past the GR bound η* = 2(1 + β)/(λ(1 + γλ)) — where SGD alone (bound
// 2(1 + β)/λ) is still stable — and stays silent at 0.98·η*, for GoMLX's SGD (β = 0) and a heavy-ball base
// (β = 0.9), for F-GR and DB; it is silent for SAM and with WarnUnstable(false).
func TestStabilityWarning(t *testing.T) {
	buf := captureWarnings(t)
	backend, err := grbackend.New()
	if err != nil {
		t.Fatal(err)
	}
	const lambda, gamma = 4.0, 0.1
	modelFn := func(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
		theta := ctx.VariableWithValue("theta", []float64{1, -0.5, 0.8}).ValueGraph(inputs[0].Graph())
		return []*graph.Node{graph.Add(theta, graph.ZerosLike(inputs[0]))}
	}
	lossFn := func(_, predictions []*graph.Node) *graph.Node {
		return graph.MulScalar(graph.ReduceAllSum(graph.Square(predictions[0])), lambda/2)
	}
	x := tensors.FromValue([]float64{0, 0, 0})
	y := tensors.FromValue([]float64{0})
	const steps = 2*StabilityReadEvery + 10
	run := func(opt optimizers.Interface, steps int) string {
		buf.Reset()
		trainer := NewTrainer(backend, context.New(), modelFn, lossFn, opt, nil, nil)
		for i := range steps {
			if _, err := TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
				t.Fatal(err)
			}
			if i == StabilityReadEvery-2 && buf.Len() > 0 {
				t.Fatalf("warning before the first read (step %d of %d): %s", i+1, StabilityReadEvery, buf)
			}
		}
		return buf.String()
	}
	for _, beta := range []float64{0, 0.9} {
		bound := 2 * (1 + beta) / (lambda * (1 + gamma*lambda))
		if lr := 1.15 * bound; lr*lambda >= 2*(1+beta) {
			t.Fatalf("test setup: SGD alone must be stable at %g", lr)
		}
		base := func(lr float64) optimizers.Interface {
			if beta == 0 {
				return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr).Done()
			}
			return &heavyBall{lr: lr, beta: beta}
		}
		for name, method := range map[string]func(optimizers.Interface) *Config{
			"ForwardDifference": func(b optimizers.Interface) *Config {
				return ForwardDifference(b).Gamma(gamma).Epsilon(0.01)
			},
			"DoubleBackprop": func(b optimizers.Interface) *Config { return DoubleBackprop(b).Gamma(gamma) },
		} {
			out := run(method(base(1.15*bound)).Done(), steps)
			if n := strings.Count(out, "past its edge of stability"); n != 1 {
				t.Errorf("%s, β = %g, lr = 1.15·η* = %g: %d warnings, want 1:\n%s", name, beta, 1.15*bound, n, out)
			}
			if !strings.Contains(out, "gr."+name) {
				t.Errorf("%s, β = %g: the warning does not name the method:\n%s", name, beta, out)
			}
			if out := run(method(base(0.98*bound)).Done(), steps); out != "" {
				t.Errorf("%s, β = %g, lr = 0.98·η* = %g: unexpected warning:\n%s", name, beta, 0.98*bound, out)
			}
			if out := run(method(base(1.15*bound)).WarnUnstable(false).Done(), steps); out != "" {
				t.Errorf("%s, β = %g, WarnUnstable(false): unexpected warning:\n%s", name, beta, out)
			}
		}
		if out := run(SAM(base(1.15*bound)).Rho(gamma).Done(), steps); out != "" {
			t.Errorf("SAM, β = %g: unexpected warning:\n%s", beta, out)
		}
	}
	t.Logf("warning text: %s", run(ForwardDifference(optimizers.StochasticGradientDescent().WithDecay(false).
		WithLearningRate(1.15*2/(lambda*(1+gamma*lambda)))).Gamma(gamma).Done(), StabilityReadEvery))
}

// The backend of quadraticTrainer: one for all its trainers, so that they can share input tensors.
var (
	quadraticBackend      sync.Once
	quadraticBackendValue backends.Backend
	quadraticBackendErr   error
)

// quadraticTrainer returns a trainer of NewTrainer on ctx for L = (λ/2)‖θ‖², θ a variable under ctx.In(name).
func quadraticTrainer(t *testing.T, ctx *context.Context, name string, lambda float64,
	opt optimizers.Interface) *train.Trainer {
	quadraticBackend.Do(func() { quadraticBackendValue, quadraticBackendErr = grbackend.New() })
	if quadraticBackendErr != nil {
		t.Fatal(quadraticBackendErr)
	}
	backend := quadraticBackendValue
	modelFn := func(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
		theta := ctx.In(name).VariableWithValue("theta", []float64{1, -0.5, 0.8}).ValueGraph(inputs[0].Graph())
		return []*graph.Node{graph.Add(theta, graph.ZerosLike(inputs[0]))}
	}
	lossFn := func(_, predictions []*graph.Node) *graph.Node {
		return graph.MulScalar(graph.ReduceAllSum(graph.Square(predictions[0])), lambda/2)
	}
	return NewTrainer(backend, ctx, modelFn, lossFn, opt, nil, nil)
}

// TestStabilityNoReadPerStep: the stability check copies its report to the host once every
// StabilityReadEvery steps, not at every step, and its latched report holds the values of the first step
// whose leaky count passed the threshold, computed here in float64 from the recurrences.
func TestStabilityNoReadPerStep(t *testing.T) {
	captureWarnings(t)
	const lambda, gamma, steps = 4.0, 0.1, 3*StabilityReadEvery + 7
	lr := 1.15 * 2 / (lambda * (1 + gamma*lambda))
	ctx := context.New()
	opt := ForwardDifference(optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr)).
		Gamma(gamma).Epsilon(0.01).Done()
	var watch *stabilityWatch // The trainer's, handed over by the hook (only while this test runs).
	onStabilityWatch = func(_ *train.Trainer, w *stabilityWatch) { watch = w }
	t.Cleanup(func() { onStabilityWatch = nil })
	trainer := quadraticTrainer(t, ctx, "model", lambda, opt)
	if watch == nil {
		t.Fatal("NewTrainer installed no stability watch")
	}
	var reads []int
	x, y := tensors.FromValue([]float64{0, 0, 0}), tensors.FromValue([]float64{0})
	for range steps {
		if _, err := TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, stabilityReads(watch))
	}
	// The warning fired at the first read, so exactly one read in all.
	for i, n := range reads {
		want := 0
		if i+1 >= StabilityReadEvery {
			want = 1
		}
		if n != want {
			t.Fatalf("after step %d: %d reads of the stability report, want %d", i+1, n, want)
		}
	}

	// Expected latch: r = ηλ(1 + γλ)/2 on every step (λ̂ = λ exactly on this quadratic); the count crosses
	// StabilityShare·StabilityWindow at the first step where c = Σ 0.95ᵏ passes it.
	ratio := lr * lambda * (1 + gamma*lambda) / 2
	var c float64
	for c <= StabilityShare*StabilityWindow {
		c = c*(1-1.0/StabilityWindow) + 1
	}
	got := ctx.InAbsPath(Scope + "/stability").GetVariable(MetricStabilityReport).MustValue().Value()
	want := []float64{1, c, ratio, lambda, lr, gamma, 0}
	for i, w := range want {
		if g := got.([]float64)[i]; math.Abs(g-w) > 1e-6*(1+math.Abs(w)) {
			t.Errorf("latched report[%d] = %g, want %g (report %v, want %v)", i, g, w, got, want)
		}
	}
}

// stabilityReads returns how many times w copied a report to the host.
func stabilityReads(w *stabilityWatch) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reads
}

// TestStabilityCounterUnderScope: two optimizers with different Config.Scope whose trainers share one
// context keep apart counters — one past its bound, one stable — under their own scopes.
func TestStabilityCounterUnderScope(t *testing.T) {
	captureWarnings(t)
	const lambda, gamma, steps = 4.0, 0.1, 30
	bound := 2 / (lambda * (1 + gamma*lambda))
	fgr := func(lr float64, scope string) optimizers.Interface { // heavyBall with β = 0: θ ← θ − ηg, η its own
		return ForwardDifference(&heavyBall{lr: lr}).Gamma(gamma).Epsilon(0.01).Scope(scope).Done()
	}
	ctx := context.New()
	unstable := quadraticTrainer(t, ctx, "a", lambda, fgr(1.15*bound, "gr_a"))
	stable := quadraticTrainer(t, ctx, "b", lambda, fgr(0.98*bound, "gr_b"))
	x, y := tensors.FromValue([]float64{0, 0, 0}), tensors.FromValue([]float64{0})
	for range steps {
		for _, trainer := range []*train.Trainer{unstable, stable} {
			if _, err := TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want float64 // Σ 0.95ᵏ over the steps, every step of the unstable one violating.
	for range steps {
		want = want*(1-1.0/StabilityWindow) + 1
	}
	count := func(scope string) float64 {
		v := ctx.InAbsPath("/" + scope + "/stability").GetVariable(MetricViolations)
		if v == nil {
			t.Fatalf("no stability counter under /%s/stability", scope)
		}
		return v.MustValue().Value().(float64)
	}
	if got := count("gr_a"); math.Abs(got-want) > 1e-9*want {
		t.Errorf("counter of the unstable optimizer = %g, want %g", got, want)
	}
	if got := count("gr_b"); got != 0 {
		t.Errorf("counter of the stable optimizer = %g, want 0", got)
	}
	if v := ctx.InAbsPath(Scope + "/stability").GetVariable(MetricViolations); v != nil {
		t.Errorf("a stability counter under the default scope %s, though both optimizers have their own", Scope)
	}
}

// TestEtaVariables: SGD's learning rate is measured over the smallest variables, up to 1/64 of the
// parameters, at least one.
func TestEtaVariables(t *testing.T) {
	ctx := context.New()
	mk := func(name string, dims ...int) *context.Variable {
		return ctx.VariableWithShape(name, shapes.Make(dtypes.Float32, dims...))
	}
	// The MLP 784-256-256-10: 269,322 parameters, 1/64 of them 4,208.
	mlp := []*context.Variable{mk("w0", 784, 256), mk("b0", 256), mk("w1", 256, 256), mk("b1", 256),
		mk("w2", 256, 10), mk("b2", 10)}
	if got, want := etaVariables(mlp), []int{5, 1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("etaVariables(MLP) = %v, want %v (sizes 10, 256, 256, 2560)", got, want)
	}
	if got := etaVariables(mlp[:1]); !slices.Equal(got, []int{0}) {
		t.Errorf("etaVariables(one variable) = %v, want [0]", got)
	}
	if got := etaVariables([]*context.Variable{mlp[0], mlp[2]}); !slices.Equal(got, []int{1}) {
		t.Errorf("etaVariables(two matrices) = %v, want [1] (the smaller, though above 1/64)", got)
	}
}
