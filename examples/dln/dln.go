package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/run"
	gr "github.com/gradreg/gradreg/optimizers/gr"
)

type Node = graph.Node

// Problem is one sparse regression data set: n training points x ~ N(0, I_d), y = ⟨w*, x⟩ (+ noise), w* with
// k non-zero entries ±1.
type Problem struct {
	D, N    int
	X       []float64 // [n, d] row-major
	Y       []float64 // [n]
	WStar   []float64 // [d]
	Support []bool    // [d]: w*_i ≠ 0
	LambdaH float64   // largest eigenvalue of XᵀX/n
}

// NewProblem draws a problem from seed.
func NewProblem(seed uint64, d, n, k int, noise float64) *Problem {
	rng := rand.New(rand.NewPCG(seed, 0xd1))
	p := &Problem{D: d, N: n, X: make([]float64, n*d), Y: make([]float64, n), WStar: make([]float64, d),
		Support: make([]bool, d)}
	for _, i := range rng.Perm(d)[:k] {
		p.Support[i] = true
		p.WStar[i] = 1
		if rng.IntN(2) == 0 {
			p.WStar[i] = -1
		}
	}
	for j := range p.X {
		p.X[j] = rng.NormFloat64()
	}
	for s := range n {
		for i := range d {
			p.Y[s] += p.X[s*d+i] * p.WStar[i]
		}
		p.Y[s] += noise * rng.NormFloat64()
	}
	p.LambdaH = p.largestEigenvalue()
	return p
}

// hv returns (XᵀX/n)·v.
func (p *Problem) hv(v []float64) []float64 {
	xv := make([]float64, p.N)
	for s := range p.N {
		for i := range p.D {
			xv[s] += p.X[s*p.D+i] * v[i]
		}
	}
	out := make([]float64, p.D)
	for s := range p.N {
		for i := range p.D {
			out[i] += p.X[s*p.D+i] * xv[s] / float64(p.N)
		}
	}
	return out
}

// largestEigenvalue of XᵀX/n by power iteration.
func (p *Problem) largestEigenvalue() float64 {
	v := make([]float64, p.D)
	for i := range v {
		v[i] = 1 / math.Sqrt(float64(p.D))
	}
	lambda := 0.0
	for range 200 {
		hv := p.hv(v)
		lambda = math.Sqrt(dot(hv, hv))
		for i := range v {
			v[i] = hv[i] / lambda
		}
	}
	return lambda
}

func dot(a, b []float64) (s float64) {
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// Residual returns r = ∇_w L = Xᵀ(Xw − y)/n and the loss L = (1/2n)‖Xw − y‖².
func (p *Problem) Residual(w []float64) (r []float64, loss float64) {
	e := make([]float64, p.N)
	for s := range p.N {
		for i := range p.D {
			e[s] += p.X[s*p.D+i] * w[i]
		}
		e[s] -= p.Y[s]
		loss += e[s] * e[s] / (2 * float64(p.N))
	}
	r = make([]float64, p.D)
	for s := range p.N {
		for i := range p.D {
			r[i] += p.X[s*p.D+i] * e[s] / float64(p.N)
		}
	}
	return r, loss
}

// ClosedFormDB returns the DB-GR gradient g₁ + γHg₁ of the DLN loss at (u, v), in closed form:
// g₁ = (2u⊙r, −2v⊙r) and, along (du, dv) with dw = 2u⊙du − 2v⊙dv,
// H(du, dv) = (2du⊙r + 2u⊙(H_w dw), −2dv⊙r − 2v⊙(H_w dw)), H_w = XᵀX/n.
func (p *Problem) ClosedFormDB(u, v []float64, gamma float64) (gu, gv []float64) {
	w := make([]float64, p.D)
	for i := range w {
		w[i] = u[i]*u[i] - v[i]*v[i]
	}
	r, _ := p.Residual(w)
	du, dv, dw := make([]float64, p.D), make([]float64, p.D), make([]float64, p.D)
	for i := range r {
		du[i], dv[i] = 2*u[i]*r[i], -2*v[i]*r[i]
		dw[i] = 2*u[i]*du[i] - 2*v[i]*dv[i]
	}
	hdw := p.hv(dw)
	gu, gv = make([]float64, p.D), make([]float64, p.D)
	for i := range r {
		gu[i] = du[i] + gamma*(2*du[i]*r[i]+2*u[i]*hdw[i])
		gv[i] = dv[i] + gamma*(-2*dv[i]*r[i]-2*v[i]*hdw[i])
	}
	return gu, gv
}

// Method is one training method of the grid.
type Method struct {
	Name    string  // "gd", "db", "forward", "backward", "central"
	Epsilon float64 // for the finite-difference methods
}

// Label names the method in tables and plots.
func (m Method) Label() string {
	switch m.Name {
	case "gd":
		return "GD"
	case "db":
		return "DB-GR"
	case "forward":
		return fmt.Sprintf("F-GR ε=%g", m.Epsilon)
	case "backward":
		return fmt.Sprintf("B-GR ε=%g", m.Epsilon)
	case "central":
		return fmt.Sprintf("C-GR ε=%g", m.Epsilon)
	}
	return m.Name
}

// optimizer wraps base with the method's GR optimizer.
func (m Method) optimizer(base optimizers.Interface, gamma float64) (optimizers.Interface, error) {
	var c *gr.Config
	switch m.Name {
	case "gd":
		return base, nil
	case "db":
		c = gr.DoubleBackprop(base)
	case "forward":
		c = gr.ForwardDifference(base).Epsilon(m.Epsilon)
	case "backward":
		c = gr.BackwardDifference(base).Epsilon(m.Epsilon)
	case "central":
		c = gr.CentralDifference(base).Epsilon(m.Epsilon)
	default:
		return nil, errors.Errorf("unknown method %q: valid values are gd|db|forward|backward|central", m.Name)
	}
	// The batch masks diverged models itself (blockSGD skips a masked model's non-finite gradient); the
	// non-finite guard would drop the whole batch's step instead.
	return c.Gamma(gamma).GuardNonFinite(false).Build()
}

// Model is one model of a batch: the problem it trains on, its initialization scale α and its step size.
type Model struct {
	Problem *Problem
	Seed    uint64
	Alpha   float64
	LR      float64
}

// Settings are shared by every model of a batch.
type Settings struct {
	Gamma      float64
	Tol        float64 // stop a model when its training loss is below Tol
	MaxSteps   int     // step cap
	CheckEvery int     // check the losses every CheckEvery steps
	Quiet      bool    // no progress bar (there is none either when stdout is not a terminal)
}

// MaxLoss is the divergence threshold: a model whose training loss is non-finite or above MaxLoss at the
// start of a step is masked in the graph from that step on (see TrainBatch).
const MaxLoss = 1e6

// Result is what one model ended with.
type Result struct {
	Model
	Method     Method
	Steps      int // updates applied (MaxSteps if it neither converged nor diverged)
	Converged  bool
	Diverged   bool    // its loss became non-finite or above MaxLoss; U and V are frozen where it was masked
	TrainLoss  float64 // at the end (non-finite or above MaxLoss for a diverged model)
	TestError  float64 // ‖w − w*‖²
	AlphaEff   float64 // geometric mean over coordinates of √(uᵢvᵢ)
	AlphaEffS  float64 // … over the support of w*
	AlphaEffS0 float64 // … off the support
	U, V       []float64
}

var errAllDone = errors.New("every model converged or diverged")

// Scopes and names of the DLN variables.
const (
	scopeModel = "/dln"
	scopeStep  = "/dln_step"
	varStopped = "stopped_at" // in scopeStep: [K, 1], −1 while a model is live, else the step it was masked at
)

// weights returns u and v of every model, [K, d] each, creating them from the initial values.
func weights(ctx *context.Context, g *graph.Graph, uInit, vInit *tensors.Tensor) (u, v *Node) {
	mctx := ctx.InAbsPath(scopeModel)
	variable := func(name string, init *tensors.Tensor) *Node {
		if v := mctx.GetVariable(name); v != nil {
			return v.ValueGraph(g)
		}
		return mctx.VariableWithValue(name, init).ValueGraph(g)
	}
	return variable("u", uInit), variable("v", vInit)
}

// predict returns f(x) = ⟨u⊙u − v⊙v, x⟩ for every model: x [K, n, d] → [K, n].
func predict(x, u, v *Node) *Node {
	w := graph.Sub(graph.Square(u), graph.Square(v))
	return graph.ReduceSum(graph.Mul(x, graph.ExpandAxes(w, 1)), -1)
}

// modelLosses returns each model's loss (1/2n)‖X_k w_k − y_k‖²: predictions and y [K, n] → [K].
func modelLosses(predictions, y *Node) *Node {
	e := graph.Sub(predictions, y)
	return graph.DivScalar(graph.ReduceSum(graph.Square(e), -1), float64(2*y.Shape().Dimensions[1]))
}

// maskedLosses is the model function of the batched graph: on inputs x [K, n, d] and y [K, n] it returns
// each model's loss [K], 0 for a masked model (the trainer's loss function sums them). A model is live
// while the stopped_at variable holds −1 for it. In a training graph, a live model whose loss at the
// current weights is non-finite or above MaxLoss is masked from this step on, and stopped_at records the
// global step (the number of updates it took). Masking selects with Where, so the batch loss stays finite;
// blockSGD applies no update to a masked model, so a gradient that a diverged model made non-finite is
// never written, and the other models are untouched (every operation is row-separable). In the GR
// methods' second pass at θ + εg₁ the same test runs on the perturbed loss (GradAt starts it from the step's
// stopped_at and restores the first pass's value afterwards): a model whose perturbed loss overflows
// contributes a zero perturbed gradient in that step.
func maskedLosses(ctx *context.Context, x, y *Node, uInit, vInit *tensors.Tensor) *Node {
	g := x.Graph()
	u, v := weights(ctx, g, uInit, vInit)
	losses := modelLosses(predict(x, u, v), y) // [K]
	stoppedVar := stoppedAt(ctx)
	stopped := stoppedVar.ValueGraph(g) // [K, 1]
	live := isLive(stopped)
	if ctx.IsTraining(g) {
		l := graph.ExpandAxes(losses, -1)
		healthy := graph.LogicalAnd(graph.IsFinite(l), graph.LessOrEqual(l, graph.Scalar(g, l.DType(), MaxLoss)))
		step := optimizers.GetGlobalStepVar(ctx.InAbsPath(context.RootScope)).ValueGraph(g)
		stoppedVar.SetValueGraph(graph.Where(graph.LogicalAnd(live, graph.LogicalNot(healthy)),
			graph.BroadcastToShape(graph.ConvertDType(step, stopped.DType()), stopped.Shape()), stopped))
		live = graph.LogicalAnd(live, healthy)
	}
	return graph.Where(graph.Reshape(live, -1), losses, graph.ZerosLike(losses))
}

// stoppedAt returns the stopped_at variable created by TrainBatch.
func stoppedAt(ctx *context.Context) *context.Variable {
	v := ctx.InAbsPath(scopeStep).GetVariable(varStopped)
	if v == nil {
		panic(errors.Errorf("dln: variable %s/%s missing: build the graph through TrainBatch", scopeStep, varStopped))
	}
	return v
}

// isLive returns stopped_at < 0: the live models.
func isLive(stopped *Node) *Node {
	return graph.LessThan(stopped, graph.ScalarZero(stopped.Graph(), stopped.DType()))
}

// blockSGD is plain gradient descent with one step size per model (row of every variable): θ_k ← θ_k − η_k g_k
// for the models live after the step's first pass (maskedLosses), θ_k unchanged for the others. A step size
// of 0 freezes a model too. The GR terms of independent models separate exactly, so each model of
// the batch follows exactly the trajectory it would follow alone.
type blockSGD struct{}

func (blockSGD) UpdateGraph(ctx *context.Context, g *graph.Graph, loss *Node) {
	blockSGD{}.UpdateGraphWithGradients(ctx, ctx.BuildTrainableVariablesGradientsGraph(loss), loss.DType())
}

func (blockSGD) UpdateGraphWithGradients(ctx *context.Context, grads []*Node, dtype dtypes.DType) {
	g := grads[0].Graph()
	optimizers.IncrementGlobalStepGraph(ctx, g, dtype)
	step := ctx.InAbsPath(scopeStep).GetVariable("eta").ValueGraph(g) // [K, 1]
	live := isLive(stoppedAt(ctx).ValueGraph(g))                      // [K, 1], as the first pass left it
	i := 0
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.InUseByGraph(g) {
			continue
		}
		theta := v.ValueGraph(g)
		v.SetValueGraph(graph.Where(graph.BroadcastToShape(live, theta.Shape()),
			graph.Sub(theta, graph.Mul(step, grads[i])), theta))
		i++
	}
}

func (blockSGD) Clear(*context.Context) error { return nil }

// fullBatch yields the same full batch every step: inputs x and y (the model function tests each model's
// loss), labels y.
type fullBatch struct{ x, y *tensors.Tensor }

func (ds *fullBatch) Name() string                 { return "full batch" }
func (ds *fullBatch) Reset()                       {}
func (ds *fullBatch) IsOwnershipTransferred() bool { return false }
func (ds *fullBatch) Yield() (any, []*tensors.Tensor, []*tensors.Tensor, error) {
	return nil, []*tensors.Tensor{ds.x, ds.y}, []*tensors.Tensor{ds.y}, nil
}

// TrainBatch trains every model with the method by full-batch gradient descent in one graph, each model
// until its loss is below s.Tol (or s.MaxSteps), and measures them. A model that diverges (loss non-finite
// or above MaxLoss) is masked in the graph (see maskedLosses): it stops updating, the others go on
// exactly as they would alone, and it is reported with Diverged set and Steps the number of updates it
// took.
func TrainBatch(backend backends.Backend, method Method, models []Model, s Settings) ([]*Result, error) {
	K, d, n := len(models), models[0].Problem.D, models[0].Problem.N
	xs, ys := make([]float64, 0, K*n*d), make([]float64, 0, K*n)
	u0, eta, stopped0 := make([]float64, 0, K*d), make([]float64, K), make([]float64, K)
	for k, m := range models {
		xs, ys = append(xs, m.Problem.X...), append(ys, m.Problem.Y...)
		for range d {
			u0 = append(u0, m.Alpha)
		}
		eta[k], stopped0[k] = m.LR, -1
	}
	uInit := tensors.FromFlatDataAndDimensions(u0, K, d)
	vInit := tensors.FromFlatDataAndDimensions(append([]float64(nil), u0...), K, d)
	data := &fullBatch{x: tensors.FromFlatDataAndDimensions(xs, K, n, d), y: tensors.FromFlatDataAndDimensions(ys, K, n)}

	ctx := context.New()
	etaVar := ctx.InAbsPath(scopeStep).VariableWithValue("eta",
		tensors.FromFlatDataAndDimensions(append([]float64(nil), eta...), K, 1)).SetTrainable(false)
	stoppedVar := ctx.InAbsPath(scopeStep).VariableWithValue(varStopped,
		tensors.FromFlatDataAndDimensions(stopped0, K, 1)).SetTrainable(false)
	modelFn := func(ctx *context.Context, _ any, inputs []*Node) []*Node {
		return []*Node{maskedLosses(ctx, inputs[0], inputs[1], uInit, vInit)}
	}
	lossFn := func(_, predictions []*Node) *Node { // Σ_k (1/2n)‖X_k w_k − y_k‖² over the live models
		return graph.ReduceAllSum(predictions[0])
	}
	opt, err := method.optimizer(blockSGD{}, s.Gamma)
	if err != nil {
		return nil, err
	}
	trainer := gr.NewTrainer(backend, ctx, modelFn, lossFn, opt, nil, nil)
	// Each model's loss at its current (unmasked) weights: non-finite or large for a diverged model.
	lossesExec, err := context.NewExec(backend, ctx.Reuse(), func(ctx *context.Context, x, y *Node) *Node {
		u, v := weights(ctx, x.Graph(), uInit, vInit)
		return modelLosses(predict(x, u, v), y)
	})
	if err != nil {
		return nil, err
	}

	results := make([]*Result, K)
	for k, m := range models {
		results[k] = &Result{Model: m, Method: method, Steps: s.MaxSteps}
	}
	active := K
	check := func(step int) error {
		out, err := lossesExec.Exec(data.x, data.y)
		if err != nil {
			return err
		}
		losses, err := tensors.CopyFlatData[float64](out[0])
		if err != nil {
			return err
		}
		stoppedAt, err := tensors.CopyFlatData[float64](stoppedVar.MustValue())
		if err != nil {
			return err
		}
		changed := false
		for k, r := range results {
			if eta[k] == 0 {
				continue
			}
			switch {
			case stoppedAt[k] >= 0: // masked in the graph at that step
				r.Diverged, r.Steps = true, int(stoppedAt[k])
			case losses[k] < s.Tol:
				r.Converged, r.Steps = true, step
			default:
				continue
			}
			eta[k], changed = 0, true
			active--
		}
		if changed {
			if err := etaVar.SetValue(tensors.FromFlatDataAndDimensions(append([]float64(nil), eta...), K, 1)); err != nil {
				return err
			}
		}
		if active == 0 {
			return errAllDone
		}
		return nil
	}

	loop := train.NewLoop(trainer)
	if !s.Quiet && run.StdoutIsTerminal() { // No progress bar in a log.
		commandline.AttachProgressBar(loop)
	}
	train.EveryNSteps(loop, s.CheckEvery, "convergence", 200, func(loop *train.Loop, _ []*tensors.Tensor) error {
		return check(loop.LoopStep + 1)
	})
	if _, err := loop.RunSteps(data, s.MaxSteps); err != nil && !errors.Is(err, errAllDone) {
		return nil, err
	}
	if active > 0 {
		if err := check(s.MaxSteps); err != nil && !errors.Is(err, errAllDone) {
			return nil, err
		}
	}
	out, err := lossesExec.Exec(data.x, data.y)
	if err != nil {
		return nil, err
	}
	losses, _ := tensors.CopyFlatData[float64](out[0])
	us, err := tensors.CopyFlatData[float64](ctx.InAbsPath(scopeModel).GetVariable("u").MustValue())
	if err != nil {
		return nil, err
	}
	vs, _ := tensors.CopyFlatData[float64](ctx.InAbsPath(scopeModel).GetVariable("v").MustValue())
	for k, r := range results {
		r.TrainLoss = losses[k]
		r.U, r.V = us[k*d:(k+1)*d], vs[k*d:(k+1)*d]
		r.measure()
	}
	return results, nil
}

// measure computes the test error and α_eff from U and V.
func (r *Result) measure() {
	p := r.Problem
	var logAll, logS, logS0 float64
	var nS int
	for i := range p.D {
		w := r.U[i]*r.U[i] - r.V[i]*r.V[i]
		r.TestError += (w - p.WStar[i]) * (w - p.WStar[i])
		l := 0.5 * math.Log(math.Abs(r.U[i]*r.V[i]))
		logAll += l
		if p.Support[i] {
			logS += l
			nS++
		} else {
			logS0 += l
		}
	}
	r.AlphaEff = math.Exp(logAll / float64(p.D))
	r.AlphaEffS = math.Exp(logS / float64(nS))
	r.AlphaEffS0 = math.Exp(logS0 / float64(p.D-nS))
}
