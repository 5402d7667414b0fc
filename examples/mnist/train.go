package main

import (
	"fmt"
	"github.com/gradreg/gradreg/examples/internal/sgdm"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers"
	"github.com/gradreg/gradreg/regularizers"
)

// Context hyperparameters of this example (besides the gr_* ones of package gr and GoMLX's optimizer ones).
const (
	paramHidden   = "mnist_hidden"   // hidden layer sizes, e.g. "128" or "256,128"
	paramBase     = "mnist_base"     // base optimizer: sgd|momentum|adam
	paramMomentum = "mnist_momentum" // momentum coefficient of base "momentum"
)

// runConfig is one training run.
type runConfig struct {
	Method     string // "sgd" (the base optimizer alone) or a name of gr.Methods
	Seed       int64
	Steps      int
	Batch      int
	EvalEvery  int    // test accuracy every EvalEvery steps (and at the end); 0: only at the end
	Checkpoint string // checkpoint folder; "" for none
	SaveEvery  int    // checkpoint every SaveEvery steps (and at the end)
	Settings   string // GoMLX -set string, applied after the flags' values
	Params     map[string]any
	Quiet      bool // no progress bar
}

// curvePoint is the test accuracy at a step.
type curvePoint struct {
	Step     int
	Accuracy float64
}

// runResult is what a run measured.
type runResult struct {
	Method       string
	Seed         int64
	TestAccuracy float64
	TrainLoss    float64 // mean loss over the training subset at the end
	TrainAcc     float64
	StepTime     time.Duration // median duration of a training step
	Curve        []curvePoint
	Ctx          *context.Context
}

// floodMethods are the -method values that wrap the loss with package regularizers (base optimizer alone).
var floodMethods = []string{"flooding", "iflood", "softad"}

// methodNames returns the values accepted by -method: sgd, every method of package gr and the flooding
// regularizers.
func methodNames() []string {
	names := []string{"sgd"}
	for _, m := range gr.Methods {
		if m != "none" {
			names = append(names, m)
		}
	}
	return append(names, floodMethods...)
}

// methodLabel is the name a method gets in tables and plots.
func methodLabel(m string) string {
	switch m {
	case "sgd", "none":
		return "sgd"
	case "forward":
		return "F-GR"
	case "backward":
		return "B-GR"
	case "central":
		return "C-GR"
	case "db":
		return "DB-GR"
	}
	return m
}

// newContext builds the context of a run: seeded RNG, the run's hyperparameters, then the -set settings.
func newContext(cfg runConfig) (*context.Context, error) {
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(cfg.Seed); err != nil {
		return nil, err
	}
	ctx.SetParams(cfg.Params)
	if cfg.Settings != "" {
		if _, err := commandline.ParseContextSettings(ctx, cfg.Settings); err != nil {
			return nil, errors.WithMessage(err, "parsing -set")
		}
	}
	method, flood := cfg.Method, "none"
	switch {
	case method == "sgd":
		method = "none"
	case slices.Contains(floodMethods, method):
		method, flood = "none", cfg.Method
	case !slices.Contains(gr.Methods, method):
		return nil, errors.Errorf("unknown -method %q: valid values are %s", cfg.Method,
			strings.Join(methodNames(), "|"))
	}
	ctx.SetParam(gr.ParamMethod, method)
	ctx.SetParam(regularizers.ParamFloodMethod, flood)
	return ctx, nil
}

// newOptimizer builds the base optimizer named by paramBase and wraps it with the GR method of the context.
func newOptimizer(ctx *context.Context) (optimizers.Interface, error) {
	lr := context.GetParamOr(ctx, optimizers.ParamLearningRate, 0.1)
	var base optimizers.Interface
	switch name := context.GetParamOr(ctx, paramBase, "sgd"); name {
	case "sgd":
		base = optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(lr).Done()
	case "momentum":
		base = &sgdm.Optimizer{LR: lr, Momentum: context.GetParamOr(ctx, paramMomentum, 0.9)}
	case "adam":
		base = optimizers.Adam().FromContext(ctx).LearningRate(lr).Done()
	default:
		return nil, errors.Errorf("unknown -base %q: valid values are sgd|momentum|adam", name)
	}
	return gr.FromContext(ctx, base)
}

// modelFn is an MLP: 784 → hidden… (ReLU) → 10 logits.
func modelFn(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
	x := inputs[0]
	for i, width := range hiddenSizes(ctx) {
		x = layers.Dense(ctx.In(fmt.Sprintf("hidden_%d", i)), x, true, width)
		x = activations.Relu(x)
	}
	return []*graph.Node{layers.Dense(ctx.In("logits"), x, true, 10)}
}

// perExampleCrossEntropy is the cross-entropy of each example, shape [batch] (the trainer averages it; the
// per-example values are what iFlood and SoftAD need).
func perExampleCrossEntropy(labels, logits []*graph.Node) *graph.Node {
	logp := graph.LogSoftmax(logits[0], -1)
	onehot := graph.OneHot(graph.Reshape(labels[0], -1), logp.Shape().Dim(-1), logp.DType())
	return graph.Neg(graph.ReduceSum(graph.Mul(onehot, logp), -1))
}

// hiddenSizes parses paramHidden; parseHidden validated it beforehand.
func hiddenSizes(ctx *context.Context) []int {
	sizes, err := parseHidden(context.GetParamOr(ctx, paramHidden, "128"))
	if err != nil {
		panic(err)
	}
	return sizes
}

func parseHidden(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil || n <= 0 {
			return nil, errors.Errorf("invalid hidden layer size %q in %q: want positive integers separated "+
				"by commas, e.g. 256,128", f, s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// trainRun trains one model and measures it.
func trainRun(backend backends.Backend, cfg runConfig, trainData, testData *Split) (*runResult, error) {
	ctx, err := newContext(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := parseHidden(context.GetParamOr(ctx, paramHidden, "128")); err != nil {
		return nil, err
	}
	opt, err := newOptimizer(ctx)
	if err != nil {
		return nil, err
	}
	lossFn, err := regularizers.FromContext(ctx, perExampleCrossEntropy)
	if err != nil {
		return nil, err
	}
	trainer := gr.NewTrainer(backend, ctx, modelFn, lossFn, opt,
		[]metrics.Interface{metrics.NewMovingAverageSparseCategoricalAccuracy("Moving Average Accuracy", "~acc", 0.01)},
		[]metrics.Interface{metrics.NewSparseCategoricalAccuracy("Mean Accuracy", "#acc")})

	var ckpt *checkpoints.Handler
	if cfg.Checkpoint != "" {
		ckpt, err = checkpoints.Build(ctx).Dir(cfg.Checkpoint).Keep(2).ExcludeAllParams().Done()
		if err != nil {
			return nil, errors.WithMessagef(err, "checkpoint folder %q", cfg.Checkpoint)
		}
	}
	startStep := int(optimizers.GetGlobalStep(ctx))
	if startStep > 0 && !cfg.Quiet {
		fmt.Printf("resuming %s (seed %d) from the checkpoint at step %d\n", cfg.Method, cfg.Seed, startStep)
	}

	ds := newTrainDataset(trainData, cfg.Batch, cfg.Seed)
	ds.Seek(startStep)
	testDS := &evalDataset{name: "test", data: testData, batch: 1000}
	res := &runResult{Method: cfg.Method, Seed: cfg.Seed, Ctx: ctx}

	loop := train.NewLoop(trainer)
	if !cfg.Quiet {
		commandline.AttachProgressBar(loop)
	}
	evaluate := func(loop *train.Loop) error {
		testDS.Reset()
		m, err := trainer.Eval(testDS)
		if err != nil {
			return err
		}
		res.Curve = append(res.Curve, curvePoint{Step: loop.LoopStep + 1, Accuracy: scalar(m[len(m)-1])})
		return nil
	}
	if cfg.EvalEvery > 0 {
		train.EveryNSteps(loop, cfg.EvalEvery, "test accuracy", 100, func(loop *train.Loop, _ []*tensors.Tensor) error {
			if loop.LoopStep+1 == cfg.Steps {
				return nil // evaluated below
			}
			return evaluate(loop)
		})
	}
	if ckpt != nil && cfg.SaveEvery > 0 {
		train.EveryNSteps(loop, cfg.SaveEvery, "checkpoint", 100, func(*train.Loop, []*tensors.Tensor) error {
			return ckpt.Save()
		})
	}
	if startStep < cfg.Steps {
		if _, err := loop.RunToGlobalStep(ds, cfg.Steps); err != nil {
			return nil, err
		}
		res.StepTime = loop.MedianTrainStepDuration()
		if ckpt != nil {
			if err := ckpt.Save(); err != nil {
				return nil, err
			}
		}
	}
	if err := evaluate(loop); err != nil {
		return nil, err
	}
	res.TestAccuracy = res.Curve[len(res.Curve)-1].Accuracy
	res.Curve[len(res.Curve)-1].Step = cfg.Steps
	m, err := trainer.Eval(&evalDataset{name: "train", data: trainData, batch: 1000})
	if err != nil {
		return nil, err
	}
	res.TrainLoss, res.TrainAcc = scalar(m[1]), scalar(m[len(m)-1])
	return res, nil
}

func scalar(t *tensors.Tensor) float64 {
	return shapes.ConvertTo[float64](t.Value())
}
