package gr

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
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
	run := func(opt optimizers.Interface, steps int) string {
		buf.Reset()
		trainer := NewTrainer(backend, context.New(), modelFn, lossFn, opt, nil, nil)
		for range steps {
			if _, err := TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
				t.Fatal(err)
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
			out := run(method(base(1.15*bound)).Done(), 60)
			if n := strings.Count(out, "past its edge of stability"); n != 1 {
				t.Errorf("%s, β = %g, lr = 1.15·η* = %g: %d warnings, want 1:\n%s", name, beta, 1.15*bound, n, out)
			}
			if !strings.Contains(out, "gr."+name) {
				t.Errorf("%s, β = %g: the warning does not name the method:\n%s", name, beta, out)
			}
			if out := run(method(base(0.98*bound)).Done(), 60); out != "" {
				t.Errorf("%s, β = %g, lr = 0.98·η* = %g: unexpected warning:\n%s", name, beta, 0.98*bound, out)
			}
			if out := run(method(base(1.15*bound)).WarnUnstable(false).Done(), 60); out != "" {
				t.Errorf("%s, β = %g, WarnUnstable(false): unexpected warning:\n%s", name, beta, out)
			}
		}
		if out := run(SAM(base(1.15*bound)).Rho(gamma).Done(), 60); out != "" {
			t.Errorf("SAM, β = %g: unexpected warning:\n%s", beta, out)
		}
	}
	t.Logf("warning text: %s", run(ForwardDifference(optimizers.StochasticGradientDescent().WithDecay(false).
		WithLearningRate(1.15*2/(lambda*(1+gamma*lambda)))).Gamma(gamma).Done(), 30))
}
