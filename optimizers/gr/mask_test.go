package gr_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maskedReference is the combined gradient of method when it acts only where acts[i] (θ = (W, v) flattened),
// computed in float64: the perturbation and every norm use m⊙g₁ (m the 0/1 mask), the method's gradient is
// taken where m = 1 and the plain g₁ elsewhere.
func maskedReference(p *problem, method string, theta []float64, acts []bool, gamma, eps float64, hp samParams) []float64 {
	g1 := p.grad(theta, false)
	g1a := make([]float64, len(g1))
	for i := range g1 {
		if acts[i] {
			g1a[i] = g1[i]
		}
	}
	at := func(e []float64) []float64 { return p.grad(axpy(1, e, theta), false) }
	var g []float64
	switch method {
	case "sam":
		g = at(scaleVec(hp.rho/(normVec(g1a)+gr.NormStabilizer), g1a))
	case "gnp":
		sam := at(scaleVec(hp.rho/(normVec(g1a)+gr.NormStabilizer), g1a))
		g = axpy(hp.alpha, sam, scaleVec(1-hp.alpha, g1))
	case "forward":
		g = axpy(gamma/eps, at(scaleVec(eps, g1a)), scaleVec(1-gamma/eps, g1))
	case "db": // ∇ₐ[L + (γ/2)‖g₁ₐ‖²] = g₁ + γ(H(m⊙g₁))ₐ
		g = axpy(gamma, p.hvp(theta, g1a, false), g1)
	default:
		panic(method)
	}
	out := make([]float64, len(g))
	for i := range g {
		out[i] = g1[i]
		if acts[i] {
			out[i] = g[i]
		}
	}
	return out
}

// maskedMethod builds method with the test's hyperparameters.
func maskedMethod(method string, base optimizers.Interface, gamma, eps float64, hp samParams) *gr.Config {
	switch method {
	case "sam":
		return gr.SAM(base).Rho(hp.rho)
	case "gnp":
		return gr.GNP(base).Rho(hp.rho).Alpha(hp.alpha)
	case "forward":
		return gr.ForwardDifference(base).Gamma(gamma).Epsilon(eps)
	case "db":
		return gr.DoubleBackprop(base).Gamma(gamma)
	}
	panic(method)
}

// TestMaskOneStepMatchesFormula: with Exclude leaving one variable out (and, for SAM, Mask and gr_exclude
// through -set too), a step equals the float64 formula in which only the method's variables are perturbed and
// counted in the norms; the variable left out gets the base optimizer's plain step, exactly; the variables it
// acts on do not.
func TestMaskOneStepMatchesFormula(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(81, 16, 3, 4, 0.01)
	const lr, gamma, eps = 0.3, 0.07, 0.03
	hp := samParams{rho: 0.2, alpha: 0.6}
	theta0 := p.theta0()
	nW := len(p.w0)
	sgdStep := axpy(-lr, p.grad(theta0, false), theta0)
	methods := []string{"sam", "gnp", "forward", "db"}
	unmasked := map[string][]float64{}
	for _, method := range methods {
		unmasked[method], _ = p.trainSteps(t, maskedMethod(method, sgd(lr), gamma, eps, hp).Done(), false, 1)
	}
	for _, left := range []string{"v", "W"} {
		acts := make([]bool, len(theta0))
		for i := range acts {
			acts[i] = (i < nW) != (left == "W")
		}
		isLeft := func(v *context.Variable) bool { return v.Name() == left }
		for _, method := range methods {
			want := axpy(-lr, maskedReference(p, method, theta0, acts, gamma, eps, hp), theta0)
			hows := []string{"Exclude"}
			if method == "sam" { // The three ways to the same mask; the formulas above do not depend on the way.
				hows = append(hows, "Mask", "-set")
			}
			for _, how := range hows {
				t.Run(fmt.Sprintf("%s/%s left out by %s", method, left, how), func(t *testing.T) {
					var opt optimizers.Interface
					switch how {
					case "Mask":
						opt = maskedMethod(method, sgd(lr), gamma, eps, hp).
							Mask(func(v *context.Variable) bool { return !isLeft(v) }).Done()
					case "Exclude":
						opt = maskedMethod(method, sgd(lr), gamma, eps, hp).Exclude("^/" + left + "$").Done()
					case "-set":
						ctx := context.New()
						gr.RegisterParams(ctx)
						_, err := commandline.ParseContextSettings(ctx, fmt.Sprintf(
							"gr_method=%s;gr_rho=%g;gr_gnp_alpha=%g;gr_gamma=%g;gr_epsilon=%g;gr_exclude=^/%s$",
							method, hp.rho, hp.alpha, gamma, eps, left))
						require.NoError(t, err)
						opt, err = gr.FromContext(ctx, sgd(lr))
						require.NoError(t, err)
					}
					theta1, _ := p.trainSteps(t, opt, false, 1)
					assert.Less(t, relErr(theta1, want), 1e-8, "θ after one step")
					for i := range theta1 {
						if !acts[i] {
							assert.InDelta(t, sgdStep[i], theta1[i], 1e-15, "%s[%d]: the plain SGD step", left, i)
						}
					}
					// The variables the method acts on do not take SGD's step, and the masked step differs from the
					// unmasked method's: the test can fail both ways.
					assert.Greater(t, relErr(theta1, sgdStep), 1e-6)
					assert.Greater(t, relErr(theta1, unmasked[method]), 1e-6)
				})
			}
		}
	}
}

// TestMaskWithOptions: with Exclude, Groups(2), Every(2) (both phases) and WarmUp still leave the excluded
// variable at the plain SGD step on every step, and Exclude("") is the unmasked method bit for bit.
func TestMaskWithOptions(t *testing.T) {
	parallelOnXLA(t)
	p := newProblem(82, 16, 3, 4, 0.01)
	const lr = 0.2
	nW := len(p.w0)
	for _, tc := range []struct {
		name string
		cfg  func() *gr.Config
	}{
		{"Groups(2)", func() *gr.Config { return gr.SAM(sgd(lr)).Rho(0.1).Groups(2) }},
		{"Every(2)", func() *gr.Config { return gr.ForwardDifference(sgd(lr)).Gamma(0.1).Every(2) }},
		{"WarmUp(2)", func() *gr.Config { return gr.GNP(sgd(lr)).WarmUp(2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.New()
			trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, tc.cfg().Exclude("^/v$").Done(), nil, nil)
			x, y := p.tensors()
			for step := range 3 {
				before := p.theta0()
				if step > 0 {
					before = variableValues(ctx, "W", "v")
				}
				_, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
				require.NoError(t, err)
				after := variableValues(ctx, "W", "v")
				plain := axpy(-lr, p.grad(before, false), before)
				assert.Less(t, relErr(after[nW:], plain[nW:]), 1e-12, "step %d: v takes the plain SGD step", step)
				if step > 0 || tc.name != "WarmUp(2)" { // WarmUp's first step is plain SGD everywhere.
					assert.Greater(t, relErr(after[:nW], plain[:nW]), 1e-7, "step %d: W takes the method's step", step)
				}
			}
			unmasked, _ := p.trainSteps(t, tc.cfg().Done(), false, 2)
			empty, _ := p.trainSteps(t, tc.cfg().Exclude("").Done(), false, 2)
			assert.Equal(t, unmasked, empty, `Exclude("") changes nothing`)
		})
	}
}

// TestVariablesInThetaOrder: Step.Variables names the variables of Theta, in its order, without those left
// out; a method reads its int and string hyperparameters with ParamInt and ParamString.
func TestVariablesInThetaOrder(t *testing.T) {
	p := newProblem(83, 8, 3, 4, 0.01)
	var seen [][]string
	var shapesMatch bool
	var ns []int
	var tags []string
	newProbe := gr.NewMethod("Probe", func(s *gr.Step) []*Node {
		var names []string
		shapesMatch = len(s.Variables()) == len(s.Theta()) && len(s.Theta()) == len(s.Grad())
		for i, v := range s.Variables() {
			names = append(names, v.ScopeAndName())
			shapesMatch = shapesMatch && v.Shape().Equal(s.Theta()[i].Shape())
		}
		seen = append(seen, names)
		ns, tags = append(ns, s.ParamInt("gr_probe_n")), append(tags, s.ParamString("gr_probe_tag"))
		return s.Grad()
	})
	probe := func() *gr.Config {
		return newProbe(sgd(0.1)).Declare(
			gr.Hyperparameter{Key: "gr_probe_n", Default: 3, Min: 1, Max: math.Inf(1)},
			gr.Hyperparameter{Key: "gr_probe_tag", Default: "plain"})
	}
	p.trainSteps(t, probe().Set("gr_probe_n", 5).Done(), false, 1)
	p.trainSteps(t, probe().Set("gr_probe_tag", "x").Exclude("W").Done(), false, 1)
	require.Len(t, seen, 2)
	assert.Equal(t, []string{"/W", "/v"}, seen[0], "the context's order, that of Theta")
	assert.Equal(t, []string{"/v"}, seen[1], "without the excluded variable")
	assert.True(t, shapesMatch)
	assert.Equal(t, []int{5, 3}, ns, "ParamInt: the set value, then the default")
	assert.Equal(t, []string{"plain", "x"}, tags, "ParamString: the default, then the set value")
}

// TestMaskErrors: an invalid pattern is an error naming gr_exclude, from the builder and from the context; a
// mask that leaves the method no variable fails at graph building, saying so.
func TestMaskErrors(t *testing.T) {
	_, err := gr.SAM(sgd(0.1)).Exclude("bias(").Build()
	assert.ErrorContains(t, err, "gr.SAM: Exclude [gr_exclude] must be a regular expression")
	ctx := context.New()
	ctx.SetParams(map[string]any{gr.ParamMethod: "sam", gr.ParamExclude: "(("})
	_, err = gr.FromContext(ctx, sgd(0.1))
	assert.ErrorContains(t, err, "gr_exclude")

	p := newProblem(84, 8, 3, 4, 0.01)
	trainer := gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss,
		gr.SAM(sgd(0.1)).Exclude(".").Done(), nil, nil)
	x, y := p.tensors()
	_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), `leave the method none of the 2 trainable variables`), err.Error())
}
