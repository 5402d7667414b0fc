// Command distcheck checks that a gr step through GoMLX's distributed path equals the plain step: for
// F-GR, SAM and DB-GR, two trainers built with gr.NewTrainer from the same initial weights take the same
// steps on the same batch, one with trainer.TrainStep, the other with trainer.DistributedTrainStep
// (distributed.AutoSharding, a 1-device mesh, inputs and labels sharded along the batch axis), and the
// weights, the batch-norm moving mean and the momentum velocities must agree:
//
//	‖θ_dist − θ_plain‖₂ ≤ tol · ‖θ_plain − θ₀‖₂   (all variables together; -tol, default 1e-4)
//
// that is, the distributed update equals the plain update to a relative 1e-4 (float32: both run the same
// operations, XLA may fuse and order them differently). The model is a small MLP with a training-mode
// batch normalization (batch statistics, moving mean updated once per step) so that GoMLX's handling of
// non-trainable variables under sharding is covered too; the base optimizer is SGD + momentum + weight
// decay (examples/internal/sgdm).
//
// GoMLX's distributed execution needs the XLA backend: the pure-Go backend refuses shardings, and then the
// command prints SKIP with GoMLX's error, after checking that two plain trainers agree (exit status 0).
// Part 3 of examples/cifar/gpu/check.sh runs it.
//
//	GOMLX_BACKEND=xla:/path/to/xla_cuda_plugin.so distcheck -steps=2
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/sgdm"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
)

const (
	batch, inDim, hidden, classes = 32, 16, 32, 4
	gamma, epsilon, rho           = 0.05, 0.05, 0.05
)

// methods are the checked methods, each wrapping the base optimizer.
var methods = []struct {
	name  string
	build func(optimizers.Interface) (optimizers.Interface, error)
}{
	{"F-GR", func(b optimizers.Interface) (optimizers.Interface, error) {
		return gr.ForwardDifference(b).Gamma(gamma).Epsilon(epsilon).Build()
	}},
	{"SAM", func(b optimizers.Interface) (optimizers.Interface, error) { return gr.SAM(b).Rho(rho).Build() }},
	{"DB-GR", func(b optimizers.Interface) (optimizers.Interface, error) {
		return gr.DoubleBackprop(b).Gamma(gamma).Build()
	}},
}

func main() {
	steps := flag.Int("steps", 1, "training steps of each trainer")
	tol := flag.Float64("tol", 1e-4, "tolerance: ‖θ_dist − θ_plain‖₂ ≤ tol·‖θ_plain − θ₀‖₂")
	flag.Parse()
	if *steps < 1 {
		fmt.Fprintf(os.Stderr, "distcheck: -steps=%d: must be ≥ 1\n", *steps)
		os.Exit(2)
	}
	if !(*tol > 0) {
		fmt.Fprintf(os.Stderr, "distcheck: -tol=%g: must be > 0\n", *tol)
		os.Exit(2)
	}
	backend, err := grbackend.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "distcheck:", err)
		os.Exit(1)
	}
	fmt.Printf("distcheck: %s, %d device(s); MLP %d-%d(BN)-%d, batch %d, SGD+momentum base, %d step(s), tol %g\n",
		backend.Name(), backend.NumDevices(), inDim, hidden, classes, batch, *steps, *tol)
	failed := false
	for _, m := range methods {
		init := initialValues()
		plain, err := run(backend, m.build, init, *steps, false)
		if err != nil {
			fmt.Printf("%-6s FAIL plain step: %v\n", m.name, err)
			failed = true
			continue
		}
		other, err := run(backend, m.build, init, *steps, true)
		mode := "DistributedTrainStep(AutoSharding, 1-device mesh)"
		if err != nil {
			if !backendDistributes(backend) {
				// Show that the comparison itself works: a second plain trainer must agree exactly.
				again, err2 := run(backend, m.build, init, *steps, false)
				if err2 != nil {
					fmt.Printf("%-6s FAIL second plain step: %v\n", m.name, err2)
					failed = true
					continue
				}
				d, u := difference(plain, again, init)
				fmt.Printf("%-6s SKIP distributed: this backend refuses shardings (%s); two plain trainers: "+
					"‖Δ‖ = %.3g of an update of %.3g\n", m.name, firstLine(err), d, u)
				continue
			}
			fmt.Printf("%-6s FAIL %s: %v\n", m.name, mode, err)
			failed = true
			continue
		}
		d, u := difference(plain, other, init)
		verdict := "PASS"
		if !(d <= *tol*u) || u == 0 {
			verdict, failed = "FAIL", true
		}
		fmt.Printf("%-6s %s %s vs TrainStep: ‖θ_dist − θ_plain‖₂ = %.3g, ‖θ_plain − θ₀‖₂ = %.3g, ratio %.3g (tol %g)\n",
			m.name, verdict, mode, d, u, d/u, *tol)
	}
	if failed {
		os.Exit(1)
	}
}

// backendDistributes reports whether GoMLX can run sharded computations on the backend (XLA only).
func backendDistributes(backend backends.Backend) bool { return !isPureGo(backend) }

func isPureGo(backend backends.Backend) bool { return strings.Contains(backend.Name(), "SimpleGo") }

// firstLine returns the error's first line.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// values are variable values by scope and name ("/mlp/w1", ...).
type values map[string][]float64

// initialValues draws the weights from a fixed seed.
func initialValues() values {
	rng := rand.New(rand.NewPCG(7, 11))
	normal := func(n int, scale float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = scale * rng.NormFloat64()
		}
		return out
	}
	return values{
		"/mlp/w1": normal(inDim*hidden, math.Sqrt(2.0/inDim)), "/mlp/b1": make([]float64, hidden),
		"/mlp/w2": normal(hidden*classes, math.Sqrt(1.0/hidden)), "/mlp/b2": make([]float64, classes),
	}
}

// batchData is the fixed batch: x [batch, inDim], integer labels [batch, 1].
func batchData() (*tensors.Tensor, *tensors.Tensor) {
	rng := rand.New(rand.NewPCG(3, 5))
	x := make([]float32, batch*inDim)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int32, batch)
	for i := range y {
		y[i] = int32(rng.IntN(classes))
	}
	return tensors.FromFlatDataAndDimensions(x, batch, inDim), tensors.FromFlatDataAndDimensions(y, batch, 1)
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// run trains a fresh trainer from init for steps steps on the fixed batch and returns every float32
// variable but the trainer's metrics (weights, moving mean, velocities, learning rate) by scope and name.
func run(backend backends.Backend, build func(optimizers.Interface) (optimizers.Interface, error), init values,
	steps int, distributedStep bool) (out values, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.Errorf("panic: %v", r)
		}
	}()
	ctx := context.New()
	mctx := ctx.In("mlp")
	mctx.VariableWithValue("w1", tensors.FromFlatDataAndDimensions(f32(init["/mlp/w1"]), inDim, hidden))
	mctx.VariableWithValue("b1", tensors.FromFlatDataAndDimensions(f32(init["/mlp/b1"]), hidden))
	mctx.VariableWithValue("w2", tensors.FromFlatDataAndDimensions(f32(init["/mlp/w2"]), hidden, classes))
	mctx.VariableWithValue("b2", tensors.FromFlatDataAndDimensions(f32(init["/mlp/b2"]), classes))
	mctx.VariableWithValue("moving_mean", tensors.FromFlatDataAndDimensions(make([]float32, hidden), hidden)).
		SetTrainable(false)
	modelFn := func(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
		g := inputs[0].Graph()
		mctx := ctx.In("mlp")
		value := func(name string) *graph.Node { return mctx.GetVariable(name).ValueGraph(g) }
		h := graph.Add(graph.Dot(inputs[0], value("w1")), graph.InsertAxes(value("b1"), 0))
		// Training-mode normalization by the batch statistics, differentiated through them.
		mean := graph.ReduceAndKeep(h, graph.ReduceMean, 0)
		centered := graph.Sub(h, mean)
		variance := graph.ReduceAndKeep(graph.Square(centered), graph.ReduceMean, 0)
		h = graph.Div(centered, graph.Sqrt(graph.AddScalar(variance, 1e-5)))
		if ctx.IsTraining(g) {
			mv := mctx.GetVariable("moving_mean")
			mv.SetValueGraph(graph.Add(graph.MulScalar(mv.ValueGraph(g), 0.9),
				graph.MulScalar(graph.StopGradient(graph.Reshape(mean, hidden)), 0.1)))
		}
		h = graph.Tanh(h)
		return []*graph.Node{graph.Add(graph.Dot(h, value("w2")), graph.InsertAxes(value("b2"), 0))}
	}
	opt, err := build(&sgdm.Optimizer{LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		return nil, err
	}
	trainer := gr.NewTrainer(backend, ctx, modelFn, losses.SparseCategoricalCrossEntropyLogits, opt, nil, nil)
	x, y := batchData()
	for range steps {
		if distributedStep {
			err = distributedTrainStep(trainer, x, y)
		} else {
			_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
		}
		if err != nil {
			return nil, err
		}
	}
	out = values{}
	for v := range ctx.IterVariables() {
		if strings.HasPrefix(v.Scope(), "/metrics") {
			continue // The trainer's moving-average loss: its variable names are random per trainer.
		}
		t, err := v.Value()
		if err != nil {
			return nil, err
		}
		flat, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			continue // Not float32 (global step, RNG state).
		}
		vals := make([]float64, len(flat))
		for i, f := range flat {
			vals[i] = float64(f)
		}
		out[v.ScopeAndName()] = vals
	}
	return out, nil
}

// distributedTrainStep runs one trainer.DistributedTrainStep with AutoSharding on a 1-device mesh, the
// batch axis of inputs and labels sharded along the mesh axis.
func distributedTrainStep(trainer *train.Trainer, x, y *tensors.Tensor) error {
	mesh, err := distributed.NewDeviceMesh([]int{1}, []string{"batch"})
	if err != nil {
		return err
	}
	xSpec, err := distributed.BuildSpec(mesh).S("batch").R().Done()
	if err != nil {
		return err
	}
	xd, err := distributed.ShardTensor(xSpec, x)
	if err != nil {
		return err
	}
	yd, err := distributed.ShardTensor(xSpec, y)
	if err != nil {
		return err
	}
	_, err = trainer.DistributedTrainStep(distributed.AutoSharding, []backends.DeviceNum{0}, nil,
		[]*distributed.Tensor{xd}, []*distributed.Tensor{yd})
	return err
}

// difference returns ‖a − b‖₂ over every variable of b, and the size of b's update ‖b − θ₀‖₂ (θ₀ = init for
// the weights, 0 for the moving mean and the velocities).
func difference(a, b, init values) (diff, update float64) {
	var d2, u2 float64
	for key, bv := range b {
		av, iv := a[key], init[key]
		for i, x := range bv {
			if i < len(av) {
				d2 += (av[i] - x) * (av[i] - x)
			} else {
				d2 = math.Inf(1)
			}
			x0 := 0.0
			if i < len(iv) {
				x0 = iv[i]
			}
			u2 += (x - x0) * (x - x0)
		}
	}
	return math.Sqrt(d2), math.Sqrt(u2)
}
