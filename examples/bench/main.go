// Command bench measures the cost of every gradient-regularization method relative to its base optimizer:
// the median time per training step and the Go heap allocated per step, on an MLP, and prints a Markdown
// table.
//
// All methods run in one process, interleaved: after a warm-up (graph compilation and a few steps), each
// round runs one step of every method in turn, so that a change in the machine's load affects all of them
// alike; the table reports the median over the rounds (for Every(k), over blocks of k steps). Memory is the
// peak Go heap sampled while a method runs a few steps, above the heap after a GC before them: it is meaningful for the pure-Go backend, whose
// buffers live in the Go heap (on XLA the device memory is not seen). The pure-Go backend runs no CNN with
// second-order methods cheaply; this command benchmarks the MLP, or with -model=vit the ViT of examples/vit
// (its default architecture on [batch, 784] inputs).
//
// -model=cnn is the small CNN built on examples/cifar/dconv (twice differentiable, so DB runs) on [batch, 32, 32,
// 3] inputs. -backend takes several backends, comma-separated: each gets its own trainers, and the rounds
// interleave all of them; each table names its backend. -json prints the per-step times as JSON lines for
// the side-by-side run with PyTorch and JAX (examples/bench/peers/run.sh). -gradients=both runs every
// backend twice, with GoMLX's gradients of matrix products and with grgrad's (optimizers/grgrad).
//
// The goal column gives each row's goal (process CPU time per step ÷ the base's; for a "… guard off" row,
// the guard's: the row with the guard on ≤ 1.02× it) with ✔ or ✘; -check makes a missed goal exit with
// status 1 (docs/benchmarks.md gives the check's commands). A row of Every(k) or accumulation needs -rounds
// ≥ k (one block) and shows — otherwise. -rss=NAME trains the named method alone and prints the process's
// peak resident set (examples/bench/rss.sh runs it once per method); -cpuprofile writes a pprof profile of
// the timed rounds; -depth sets the number of hidden layers of the MLP.
//
//	go run ./examples/bench -check -backend=xla:cpu -gradients=grgrad -in=784 -hidden=256 -batch=64 -rounds=60 -only=ForwardDifference,SAM,USAM,DoubleBackprop
//	go run ./examples/bench -rounds=30 -batch=128 -hidden=256
//	go run ./examples/bench -model=vit -rounds=20 -batch=64
//	go run ./examples/bench -backend=go,xla:cpu -model=cnn -batch=32 -only=ForwardDifference,SAM,DoubleBackprop
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gradreg/gradreg/examples/cifar/dconv"
	vit "github.com/gradreg/gradreg/examples/vit/model"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grcontrib"
	"github.com/gradreg/gradreg/optimizers/grgrad"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/gradreg/gradreg/regularizers"
)

var (
	flagRounds = flag.Int("rounds", 30, "timed rounds (one step of every method per round)")
	flagWarmUp = flag.Int("warmup", 3, "untimed steps per method before timing")
	flagBatch  = flag.Int("batch", 128, "batch size")
	flagIn     = flag.Int("in", 64, "input features")
	flagHidden = flag.Int("hidden", 256, "hidden units of each hidden layer (-depth of them)")
	flagDepth  = flag.Int("depth", 2, "hidden layers of the MLP (1: the MNIST example's 784-64-10 with -in=784 -hidden=64)")
	flagOut    = flag.Int("out", 10, "classes")
	flagOnly   = flag.String("only", "", "run only the methods with these comma-separated names (and the base)")
	flagModel  = flag.String("model", "mlp", "model: mlp (two tanh hidden layers of -hidden), vit (the default "+
		"ViT of examples/vit on -batch random 28×28 images; -in, -hidden and -out are ignored) or cnn (the dconv "+
		"CNN on random 32×32×3 images: conv3×3(16) relu maxpool2, conv3×3(32) relu maxpool2, dense 128 relu, "+
		"dense -out; -in and -hidden are ignored)")
	flagBackend = flag.String("backend", "", "GoMLX backends, comma-separated, run interleaved (go, xla:cpu, "+
		"xla:cuda, xla:/path/plugin.so); default: $GOMLX_BACKEND, else an installed XLA plugin, else go")
	flagGradients = flag.String("gradients", "gomlx", "gradient of the matrix products: gomlx (GoMLX's, a "+
		"[batch, in, out] broadcast product and sum), grgrad (grgrad.Install: transposed matrix products) or both "+
		"(each backend twice, interleaved)")
	flagCheck = flag.Bool("check", false, "exit with status 1 when a ratio misses its goal (each such row is "+
		"marked ✘ in the table with or without -check)")
	flagCPUProfile = flag.String("cpuprofile", "", "write a pprof CPU profile of the timed rounds to this file (for the "+
		"pure-Go backend: with XLA's CPU plugin the one try hung, every thread waiting)")
	flagJSON = flag.Bool("json", false, "print per-step CPU and wall times as one JSON object per backend and "+
		"method instead of the tables (for examples/bench/peers/run.sh)")
)

// method is one benchmarked configuration.
type method struct {
	name    string
	target  string  // the expected cost, printed in the table (without a goal); with a goal it is derived
	goal    float64 // the most its CPU time per step may be, × the base's (✘ past it; -check exits 1); 0: none
	opt     func() optimizers.Interface
	lossFn  train.LossFn                      // nil: plain cross-entropy
	every   int                               // k of Every(k), n of accumulation: timed over blocks of k steps; 0 for the others
	model   func(train.ModelFn) train.ModelFn // wraps the benchmarked model; nil: the model itself
	acc     int                               // n of AccumulateGradients; 0: none
	trainer *train.Trainer
	ctx     *context.Context
	times   []time.Duration
	cpu     []time.Duration // process CPU time of each timed step
	peak    uint64
	backend backends.Backend
	grgrad  bool            // built with grgrad's gradients of matrix products (-gradients)
	x, y    *tensors.Tensor // the batch, on backend
	xs      []float32       // the batch in host memory
	ys      []int32

	run  func(m *method, model train.ModelFn) error // a step without a trainer (gap.go); nil: the trainer's
	exec *context.Exec                              // built by run
	fn   train.ModelFn                              // the model, for run
}

func sgd() optimizers.Interface {
	return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.01).Done()
}

func methods() []*method {
	const twoPasses = 2.05 // A two-pass method costs two passes of the base step, plus scalars.
	ms := []*method{
		{name: "base (SGD)", target: "1×", opt: sgd},
		{name: "DoubleBackprop", goal: 2.5, opt: func() optimizers.Interface { return gr.DoubleBackprop(sgd()).Done() }},
		{name: "ForwardDifference", goal: twoPasses, opt: func() optimizers.Interface { return gr.ForwardDifference(sgd()).Done() }},
		{name: "BackwardDifference", goal: twoPasses, opt: func() optimizers.Interface { return gr.BackwardDifference(sgd()).Done() }},
		{name: "CentralDifference", goal: 3.05, opt: func() optimizers.Interface { return gr.CentralDifference(sgd()).Done() }},
		{name: "SAM", goal: twoPasses, opt: func() optimizers.Interface { return gr.SAM(sgd()).Done() }},
		{name: "USAM", goal: twoPasses, opt: func() optimizers.Interface { return gr.USAM(sgd()).Done() }},
		{name: "GNP", goal: twoPasses, opt: func() optimizers.Interface { return gr.GNP(sgd()).Done() }},
		{name: "ASAM", goal: twoPasses, opt: func() optimizers.Interface { return gr.ASAM(sgd()).Done() }},
	}
	for _, k := range []int{2, 5, 10} {
		ms = append(ms, &method{name: fmt.Sprintf("ForwardDifference Every(%d)", k),
			target: fmt.Sprintf("≈ %.2f×", 1+1/float64(k)), every: k,
			opt: func() optimizers.Interface { return gr.ForwardDifference(sgd()).Every(k).Done() }})
	}
	ms = append(ms,
		&method{name: "GSAM", goal: twoPasses, opt: func() optimizers.Interface { return grcontrib.GSAM(sgd()).Done() }},
		&method{name: "FriendlySAM", goal: twoPasses, opt: func() optimizers.Interface { return grcontrib.FriendlySAM(sgd()).Done() }},
		&method{name: "LookSAM Every(5)", goal: 1.3, every: 5,
			opt: func() optimizers.Interface { return grcontrib.LookSAM(sgd()).Every(5).Done() }})
	ms = append(ms, &method{name: "Flooding (b=0.02)", goal: 1.02, opt: sgd,
		lossFn: regularizers.Flooding(crossEntropy, 0.02)})
	return append(append(ms, practiceMethods()...), gapMethods()...)
}

// practiceMethods are the rows of training in practice: batch splits, accumulation, the non-finite guard
// and bfloat16 weights.
func practiceMethods() []*method {
	fgr := func() *gr.Config { return gr.ForwardDifference(sgd()) }
	bf16 := func(model train.ModelFn) train.ModelFn {
		return func(ctx *context.Context, spec any, inputs []*Node) []*Node {
			x := ConvertDType(inputs[0], dtypes.BFloat16) // The layers take their variables' dtype from the input.
			return []*Node{ConvertDType(model(ctx, spec, []*Node{x})[0], dtypes.Float32)}
		}
	}
	return []*method{
		{name: "ForwardDifference Groups(4)", goal: 2.1, opt: func() optimizers.Interface { return fgr().Groups(4).Done() }},
		{name: "SAM Groups(4)", goal: 2.1, opt: func() optimizers.Interface { return gr.SAM(sgd()).Groups(4).Done() }},
		{name: "base (SGD) accumulation n=4", target: "per micro-batch", opt: sgd, acc: 4, every: 4},
		{name: "ForwardDifference accumulation n=4", target: "per micro-batch", opt: func() optimizers.Interface { return fgr().Done() }, acc: 4, every: 4},
		// The guard's goal is on the default rows (guard on) against these.
		{name: "ForwardDifference guard off", target: "guard on ≤ 1.02× this", opt: func() optimizers.Interface { return fgr().GuardNonFinite(false).Done() }},
		{name: "SAM guard off", target: "guard on ≤ 1.02× this", opt: func() optimizers.Interface { return gr.SAM(sgd()).GuardNonFinite(false).Done() }},
		{name: "ForwardDifference check off", target: "WarnUnstable(false): F-GR's check costs F-GR ÷ this", opt: func() optimizers.Interface { return fgr().WarnUnstable(false).Done() }},
		{name: "USAM check off", target: "WarnUnstable(false)", opt: func() optimizers.Interface { return gr.USAM(sgd()).WarnUnstable(false).Done() }},
		// What the per-step checks cost: a pass over every parameter that ends in one scalar.
		{name: "base (SGD) + 4 inner products", target: "4 × (one ⟨x, y⟩ over the parameters)", opt: sgd, model: perParameterPasses(4, false)},
		{name: "base (SGD) + 4 finiteness tests", target: "4 × (one all-finite test of the parameters)", opt: sgd, model: perParameterPasses(4, true)},
		{name: "base (SGD) bfloat16", target: "", opt: sgd, model: bf16},
		{name: "ForwardDifference bfloat16", target: "vs SGD bf16", opt: func() optimizers.Interface { return fgr().Done() }, model: bf16},
	}
}

// guardGoal is the most the non-finite guard may cost: a default row (guard on) against its "guard off" row.
const guardGoal = 1.02

// perParameterPasses wraps a model to add, to each training step, n passes over every trainable variable that
// each end in one scalar, as the methods' norms, inner products and checks do: n inner products
// Σᵢ⟨θᵢ, θᵢ + j⟩ (j = 0…n−1, so that no two are the same), or with finite n all-finite tests of θᵢ + j (as the
// guard's: IsFinite of the sum of 2⁻⁶⁴·(θᵢ + j)); the
// scalars are written to a variable, so that the graph keeps them.
func perParameterPasses(n int, finite bool) func(train.ModelFn) train.ModelFn {
	return func(model train.ModelFn) train.ModelFn {
		return func(ctx *context.Context, spec any, inputs []*Node) []*Node {
			out := model(ctx, spec, inputs)
			g := inputs[0].Graph()
			var params []*Node
			for v := range ctx.IterVariables() {
				if v.Trainable && v.InUseByGraph(g) {
					params = append(params, v.ValueGraph(g))
				}
			}
			total := ScalarZero(g, dtypes.Float32)
			for j := range n {
				shifted := make([]*Node, len(params))
				for i, p := range params {
					shifted[i] = AddScalar(p, float64(j))
				}
				if finite { // As gr's guard tests: the sums of 2⁻⁶⁴·θᵢ (grvec.ScaledSum), then IsFinite.
					sum := ScalarZero(g, dtypes.Float32)
					for _, p := range shifted {
						sum = Add(sum, grvec.ScaledSum(p, 0x1p-64))
					}
					total = Add(total, ConvertDType(IsFinite(sum), dtypes.Float32))
				} else {
					total = Add(total, grvec.InnerProduct(params, shifted))
				}
			}
			sink := ctx.InAbsPath("/bench").Checked(false).
				VariableWithValue("passes", tensors.FromShape(shapes.Make(dtypes.Float32))).SetTrainable(false)
			sink.SetValueGraph(total)
			return out
		}
	}
}

func crossEntropy(labels, logits []*Node) *Node {
	return losses.SparseCategoricalCrossEntropyLogits(labels, logits)
}

// cnnModelFn is the small CNN of -model=cnn, built on dconv (twice differentiable) so that every method,
// DB included, runs on every backend: conv3×3(16, no bias) relu maxpool2, conv3×3(32) relu maxpool2, dense
// 128 relu, dense -out.
func cnnModelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	x := inputs[0]
	for i, ch := range []int{16, 32} {
		cctx := ctx.In(fmt.Sprintf("conv_%d", i)).WithInitializer(initializers.HeFn(ctx))
		kernel := cctx.VariableWithShape("weights", shapes.Make(x.DType(), 3, 3, x.Shape().Dimensions[3], ch))
		x = dconv.MaxPool(activations.Relu(dconv.Conv2D(x, kernel.ValueGraph(x.Graph()), 1, 1)), 2)
	}
	x = Reshape(x, x.Shape().Dimensions[0], -1)
	x = activations.Relu(layers.DenseWithBias(ctx.In("dense"), x, 128))
	return []*Node{layers.DenseWithBias(ctx.In("logits"), x, *flagOut)}
}

func modelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	x := inputs[0]
	for i := range *flagDepth {
		x = layers.DenseWithBias(ctx.In(fmt.Sprintf("hidden_%d", i)), x, *flagHidden)
		x = activations.Apply(activations.TypeTanh, x)
	}
	return []*Node{layers.DenseWithBias(ctx.In("logits"), x, *flagOut)}
}

func main() {
	flag.Parse()
	if err := checkFlags(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(exitUsage)
	}
	if mainSoak() {
		return
	}
	model, description := modelFn, func() string {
		desc := fmt.Sprintf("MLP %d", *flagIn)
		for range *flagDepth {
			desc += fmt.Sprintf("→%d", *flagHidden)
		}
		return desc + fmt.Sprintf("→%d (tanh)", *flagOut)
	}
	inShape := func() []int { return []int{*flagBatch, *flagIn} }
	switch *flagModel {
	case "mlp":
	case "vit":
		*flagIn, *flagOut = 28*28, 10
		model = vit.ModelFn // the default architecture: the context sets none of its parameters
		description = func() string { return vit.DefaultConfig().String() }
	case "cnn":
		model, description = cnnModelFn, func() string {
			return fmt.Sprintf("dconv CNN 32×32×3→conv16→pool→conv32→pool→128→%d", *flagOut)
		}
		inShape = func() []int { return []int{*flagBatch, 32, 32, 3} }
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown -model=%q: valid values are mlp|vit|cnn\n", *flagModel)
		os.Exit(1)
	}
	bes := newBackends()
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, shapes.Make(dtypes.Float32, inShape()...).Size())
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	ys := make([]int32, *flagBatch)
	for i := range ys {
		ys[i] = int32(rng.IntN(*flagOut))
	}

	// One list of methods per backend; all of them are interleaved below.
	var runs [][]*method
	for _, be := range bes {
		for _, useGrgrad := range gradientChoices() {
			all := methods()
			var ms []*method
			for _, m := range all {
				if *flagRSS != "" && m.name != *flagRSS {
					continue // Memory mode: the named method alone.
				}
				if *flagRSS != "" || *flagOnly == "" || m == all[0] || slices.Contains(strings.Split(*flagOnly, ","), m.name) {
					// A tensor used on one backend cannot be fed to another: each backend has its own.
					m.backend, m.grgrad = be, useGrgrad
					m.x = tensors.FromFlatDataAndDimensions(xs, inShape()...)
					m.y = tensors.FromFlatDataAndDimensions(ys, *flagBatch, 1)
					m.xs, m.ys = xs, ys
					ms = append(ms, m)
				}
			}
			runs = append(runs, ms)
		}
	}
	step := func(m *method) {
		// Graphs are built at a method's first steps, with the gradients of matrix products in effect then;
		// setting them before every step keeps each method on its own (a map write, not timed apart).
		if m.grgrad {
			grgrad.MustInstall()
		} else {
			grgrad.Uninstall()
		}
		if m.run != nil {
			if err := m.run(m, m.fn); err != nil {
				fmt.Fprintf(os.Stderr, "%s on %s: %+v\n", m.name, describe(m), err)
				os.Exit(1)
			}
			return
		}
		if _, err := gr.TrainStep(m.trainer, nil, []*tensors.Tensor{m.x}, []*tensors.Tensor{m.y}); err != nil {
			fmt.Fprintf(os.Stderr, "%s on %s: %+v\n", m.name, describe(m), err)
			os.Exit(1)
		}
	}
	for _, ms := range runs {
		for _, m := range ms {
			m.ctx = context.New()
			lossFn := m.lossFn
			if lossFn == nil {
				lossFn = crossEntropy
			}
			mModel := model
			if m.model != nil {
				mModel = m.model(model)
			}
			m.fn = mModel
			if m.run == nil {
				m.trainer = gr.NewTrainer(m.backend, m.ctx, mModel, lossFn, m.opt(), nil, nil)
			}
			if m.acc > 0 {
				if err := m.trainer.AccumulateGradients(m.acc); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %+v\n", m.name, err)
					os.Exit(1)
				}
			}
			for range *flagWarmUp {
				step(m)
			}
		}
	}

	// Memory: peak heap above the post-GC heap while running 10 steps (so Every's both graphs run); not
	// with -json, which reports times only.
	for _, ms := range runs {
		if *flagJSON || *flagRSS != "" {
			break
		}
		for _, m := range ms {
			m.peak = peakHeap(func() {
				for range 10 {
					step(m)
				}
			}) / 10
		}
	}

	// Time: interleaved rounds, every method on every backend in turn.
	var wholePeak, before int64 // -rss: the peak before the timed steps (compilation, warm-up), the RSS then
	if *flagRSS != "" {
		var err error
		if wholePeak, err = peakRSS(); err == nil {
			err = resetPeakRSS()
		}
		if err == nil {
			before, err = statusBytes("VmRSS:")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -rss: %v\n", err)
			os.Exit(1)
		}
	}
	stopProfile := startProfile()
	for range *flagRounds {
		for _, ms := range runs {
			for _, m := range ms {
				start, startCPU := time.Now(), processCPU()
				step(m)
				m.times = append(m.times, time.Since(start))
				m.cpu = append(m.cpu, processCPU()-startCPU)
			}
		}
	}

	stopProfile()
	if *flagRSS != "" {
		printRSS(runs[0][0], description(), wholePeak, before)
		return
	}
	if *flagJSON {
		printJSON(runs, description())
		return
	}
	missed := 0
	for i, ms := range runs {
		if i > 0 {
			fmt.Println()
		}
		missed += printTable(ms, description())
	}
	if missed > 0 {
		fmt.Printf("\n✘ %d goal(s) missed (CPU time per step; goals in docs/benchmarks.md).\n", missed)
		if *flagCheck {
			os.Exit(1)
		}
	}
}

// startProfile starts the CPU profile of -cpuprofile, if given, and returns the function that stops it.
func startProfile() (stop func()) {
	if *flagCPUProfile == "" {
		return func() {}
	}
	f, err := os.Create(*flagCPUProfile)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: -cpuprofile=%q: %v\n", *flagCPUProfile, err)
		os.Exit(1)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: -cpuprofile=%q: %v\n", *flagCPUProfile, err)
			os.Exit(1)
		}
	}
}

// newBackends creates the backends of -backend (grbackend.New's choice when empty), each through
// newBackend (flags.go), which exits naming the setting on error.
func newBackends() []backends.Backend {
	var bes []backends.Backend
	for _, config := range backendConfigs() {
		if config != "" {
			if err := os.Setenv(backends.ConfigEnvVar, config); err != nil {
				fmt.Fprintf(os.Stderr, "bench: -backend=%q: %v\n", config, err)
				os.Exit(1)
			}
		}
		bes = append(bes, newBackend())
	}
	return bes
}

// dotGradients lists the variants of -gradients: false for GoMLX's gradients, true for grgrad's.
func gradientChoices() []bool {
	switch *flagGradients {
	case "grgrad":
		return []bool{true}
	case "both":
		return []bool{false, true}
	}
	return []bool{false}
}

// describe names a method's backend and, with grgrad's gradients, says so.
func describe(m *method) string {
	if m.grgrad {
		return grbackend.Describe(m.backend) + " + grgrad"
	}
	return grbackend.Describe(m.backend)
}

// backendConfigs splits -backend; [""] (grbackend.New's choice) when it is empty.
func backendConfigs() []string {
	if *flagBackend == "" {
		return []string{""}
	}
	return strings.Split(*flagBackend, ",")
}

// peakHeap returns the peak Go heap above the post-GC heap while f runs, without GC.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	base := st.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var s runtime.MemStats
		for {
			select {
			case <-done:
				return
			default:
			}
			runtime.ReadMemStats(&s)
			if s.HeapAlloc > peak.Load() {
				peak.Store(s.HeapAlloc)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	old := debugSetGCPercent(-1) // No GC during the steps: the peak is everything allocated.
	f()
	debugSetGCPercent(old)
	close(done)
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// printTable prints one backend's Markdown table and returns the number of goals it missed (rows marked ✘).
func printTable(ms []*method, description string) (missed int) {
	var params int64
	for v := range ms[0].ctx.IterVariables() {
		if v.Trainable {
			params += int64(v.Shape().Memory())
		}
	}
	baseT, _ := stepTime(ms[0], ms[0].times)
	baseC, _ := stepTime(ms[0], ms[0].cpu)
	baseM := float64(ms[0].peak)
	fmt.Printf("%s, batch %d, float32, %d parameter bytes; backend %s; %d rounds, median.\n\n",
		description, *flagBatch, params, describe(ms[0]), *flagRounds)
	fmt.Println("| method | time/step | × base | CPU/step | × base (CPU) | goal (CPU) | heap alloc/step | × base | extra ÷ param bytes |")
	fmt.Println("|---|---:|---:|---:|---:|---|---:|---:|---:|")
	for _, m := range ms {
		goal, miss := goalCell(m, ms)
		if miss {
			missed++
		}
		memory := fmt.Sprintf("%.1f MiB | — | %.1f", float64(m.peak)/(1<<20), (float64(m.peak)-baseM)/float64(params))
		if baseM > 0 {
			memory = fmt.Sprintf("%.1f MiB | %.2f× | %.1f", float64(m.peak)/(1<<20), float64(m.peak)/baseM,
				(float64(m.peak)-baseM)/float64(params))
		}
		t, ok := stepTime(m, m.times)
		c, _ := stepTime(m, m.cpu)
		if !ok {
			fmt.Printf("| %s | — | — | — | — | %s (needs -rounds ≥ %d: one block of %d steps) | %s |\n", m.name,
				goal, m.every, m.every, memory)
			continue
		}
		fmt.Printf("| %s | %.2f ms | %.2f× | %.2f ms | %.2f× | %s | %s |\n", m.name,
			float64(t.Microseconds())/1000, float64(t)/float64(baseT),
			float64(c.Microseconds())/1000, float64(c)/float64(max(baseC, 1)), goal, memory)
	}
	return missed
}

// goalCell returns the goal column of m's row: its goal (CPU time per step × the base's), or the guard's
// (the row with the guard on ≤ guardGoal× m's, for a "… guard off" row), with ✔ or ✘; miss says ✘.
func goalCell(m *method, ms []*method) (cell string, miss bool) {
	ratio := func(num, den *method) (float64, bool) {
		n, okN := stepTime(num, num.cpu)
		d, okD := stepTime(den, den.cpu)
		return float64(n) / float64(max(d, 1)), okN && okD
	}
	mark := func(r, goal float64) string {
		if r > goal {
			miss = true
			return fmt.Sprintf("%.2f× ✘", r)
		}
		return fmt.Sprintf("%.2f× ✔", r)
	}
	if on, found := strings.CutSuffix(m.name, guardOffSuffix); found {
		i := slices.IndexFunc(ms, func(o *method) bool { return o.name == on })
		if i < 0 {
			return fmt.Sprintf("%s ≤ %.2f× this (not run)", on, guardGoal), false
		}
		r, ok := ratio(ms[i], m)
		if !ok {
			return fmt.Sprintf("%s ≤ %.2f× this", on, guardGoal), false
		}
		return fmt.Sprintf("%s ≤ %.2f× this: %s", on, guardGoal, mark(r, guardGoal)), miss
	}
	if m.goal == 0 {
		return m.target, false
	}
	r, ok := ratio(m, ms[0])
	if !ok {
		return fmt.Sprintf("≤ %.2f×", m.goal), false
	}
	return fmt.Sprintf("≤ %.2f×: %s", m.goal, mark(r, m.goal)), miss
}

// guardOffSuffix ends the name of a row with the guard off; the row named without it has the guard on.
const guardOffSuffix = " guard off"

// printJSON prints one JSON object per backend and method: the per-step CPU and wall times in ms (blocks of
// k steps for Every(k) and accumulation, as in the tables).
func printJSON(runs [][]*method, description string) {
	ms := func(m *method, ts []time.Duration) []float64 {
		k := max(m.every, 1)
		var out []float64
		for i := 0; i+k <= len(ts); i += k {
			var sum time.Duration
			for _, t := range ts[i : i+k] {
				sum += t
			}
			out = append(out, float64(sum)/float64(k)/1e6)
		}
		return out
	}
	for _, r := range runs {
		for _, m := range r {
			line, err := json.Marshal(map[string]any{
				"framework": "gradreg", "backend": describe(m), "model": *flagModel,
				"description": description, "batch": *flagBatch, "method": m.name,
				"threads": runtime.NumCPU(), "cpu_ms": ms(m, m.cpu), "wall_ms": ms(m, m.times)})
			if err != nil {
				panic(err)
			}
			fmt.Println(string(line))
		}
	}
}

// stepTime is the median of times (wall or CPU time per step); for Every(k), the median over blocks of k
// consecutive steps of the block's mean (each block holds exactly one ascent step, whatever its alignment),
// since the median of single steps would just pick a skip step. ok is false when there is no whole block
// (fewer than k rounds).
func stepTime(m *method, times []time.Duration) (d time.Duration, ok bool) {
	k := max(m.every, 1)
	var blocks []time.Duration
	for i := 0; i+k <= len(times); i += k {
		var sum time.Duration
		for _, t := range times[i : i+k] {
			sum += t
		}
		blocks = append(blocks, sum/time.Duration(k))
	}
	if len(blocks) == 0 {
		return 0, false
	}
	return median(blocks), true
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
