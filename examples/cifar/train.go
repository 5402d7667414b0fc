package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"github.com/gradreg/gradreg/examples/internal/sgdm"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gomlx/gomlx/backends"
	gcifar "github.com/gomlx/gomlx/examples/cifar"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/datasets"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/metrics"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/ui/commandline"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers"
	"github.com/gradreg/gradreg/regularizers"
)

// config holds the command-line options of one run.
type config struct {
	Dataset, Data, Model, Conv, Method            string
	Gamma, Epsilon, Rho                           float64
	Normalized                                    bool
	FloodMethod                                   string
	FloodLevel                                    float64
	Batch, Steps, Epochs, EvalEvery, EvalExamples int
	LR, Momentum, WeightDecay                     float64
	Augment, Quiet, Synthetic                     bool
	Checkpoint, Plot, Set                         string
	Seed                                          int64
	SaveEvery                                     int
}

func defaultConfig() *config {
	return &config{Dataset: "c10", Data: defaultDataDir(), Model: "resnet20", Conv: "auto", Method: "sgd",
		Gamma: gr.DefaultGamma, Epsilon: gr.DefaultEpsilon, Rho: 0.05, FloodMethod: "none",
		Batch: 128, Epochs: 200, EvalEvery: 0, LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4, Augment: true,
		Plot: "cifar_curves.png", Seed: 42, SaveEvery: 1000}
}

func defaultDataDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "gradreg", "cifar")
	}
	return "cifar_data"
}

func (c *config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dataset, "dataset", c.Dataset, "c10 (CIFAR-10) or c100 (CIFAR-100)")
	fs.StringVar(&c.Data, "data", c.Data, "data directory: the dataset is downloaded there (checksum-verified) if missing")
	fs.StringVar(&c.Model, "model", c.Model, "model: "+strings.Join(modelNames, "|")+
		" (mlp runs anywhere; the CNNs need XLA or -conv=dconv)")
	fs.StringVar(&c.Conv, "conv", c.Conv, "convolution: gomlx (graph.Convolve: fast on XLA, first-order only, "+
		"not on the pure-Go backend), dconv (twice differentiable, every backend) or auto (dconv on the "+
		"pure-Go backend or with -method=db, else gomlx)")
	fs.StringVar(&c.Method, "method", c.Method, "optimizer method: sgd (the base alone) or a gr method: "+methodList())
	fs.Float64Var(&c.Gamma, "gamma", c.Gamma, "γ of gradient regularization")
	fs.Float64Var(&c.Epsilon, "epsilon", c.Epsilon, "ε, finite-difference step of forward|backward|central")
	fs.Float64Var(&c.Rho, "rho", c.Rho, "ρ of the SAM family")
	fs.BoolVar(&c.Normalized, "normalized", c.Normalized, "normalized finite-difference step (gr Config.Normalized)")
	fs.StringVar(&c.FloodMethod, "flood_method", c.FloodMethod, "loss wrapper: none|flooding|iflood|softad")
	fs.Float64Var(&c.FloodLevel, "flood_level", c.FloodLevel, "flood level b")
	fs.IntVar(&c.Batch, "batch", c.Batch, "batch size")
	fs.IntVar(&c.Steps, "steps", c.Steps, "training steps (overrides -epochs when > 0)")
	fs.IntVar(&c.Epochs, "epochs", c.Epochs, "training epochs of 50 000 images")
	fs.IntVar(&c.EvalEvery, "eval_every", c.EvalEvery, "evaluate on the test set every this many steps (0: every epoch)")
	fs.IntVar(&c.EvalExamples, "eval_examples", c.EvalExamples, "evaluate on the first this many test images (0: all 10 000)")
	fs.Float64Var(&c.LR, "lr", c.LR, "initial learning rate (cosine decay to 0 over the run)")
	fs.Float64Var(&c.Momentum, "momentum", c.Momentum, "SGD momentum")
	fs.Float64Var(&c.WeightDecay, "wd", c.WeightDecay, "weight decay (added to the gradient, PyTorch style)")
	fs.BoolVar(&c.Augment, "augment", c.Augment, "random crop (4-pixel padding) and horizontal flip")
	fs.StringVar(&c.Checkpoint, "checkpoint", c.Checkpoint, "checkpoint directory: resumes from it if it holds one")
	fs.IntVar(&c.SaveEvery, "save_every", c.SaveEvery, "save a checkpoint every this many steps (and at the end)")
	fs.StringVar(&c.Plot, "plot", c.Plot, "PNG file for the train/test curves (\"\": none); with -checkpoint, "+
		"relative paths go in the checkpoint directory")
	fs.StringVar(&c.Set, "set", c.Set, "GoMLX context settings applied last, e.g. \"gr_gamma=0.1;gr_epsilon=0.02\"")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed (initialization, augmentation)")
	fs.BoolVar(&c.Quiet, "quiet", c.Quiet, "no progress bar")
	fs.BoolVar(&c.Synthetic, "synthetic", c.Synthetic, "random CIFAR-shaped data instead of the dataset (timing only; "+
		"nothing is downloaded)")
}

// point is one evaluation of the curves.
type point struct {
	Step                int
	TrainLoss, TrainAcc float64 // averages over the steps since the previous point
	TestLoss, TestAcc   float64
}

// result is what a run returns (used by the tests).
type result struct {
	Points   []point
	StepTime time.Duration
	Params   int
}

func isPureGo(be backends.Backend) bool { return strings.Contains(be.Name(), "SimpleGo") }

// resolveConv picks the convolution for -conv and explains impossible combinations.
func resolveConv(c *config, be backends.Backend) (string, error) {
	if !isCNN(c.Model) {
		return "gomlx", nil
	}
	switch c.Conv {
	case "auto":
		if isPureGo(be) {
			fmt.Fprintf(os.Stderr, "cifar: the pure-Go backend cannot differentiate GoMLX's convolution (it lacks "+
				"the op Reverse): using dconv (im2col, slow there; -model=mlp is the fast choice, or XLA: "+
				"GOMLX_BACKEND=xla:cpu or xla:cuda)\n")
			return "dconv", nil
		}
		if c.Method == "db" {
			return "dconv", nil
		}
		return "gomlx", nil
	case "dconv":
		return "dconv", nil
	case "gomlx":
		if isPureGo(be) {
			return "", errors.Errorf("-model=%s with -conv=gomlx cannot train on the pure-Go backend: the gradient "+
				"of GoMLX's convolution needs the op Reverse, which that backend does not implement. Use "+
				"-model=mlp, -conv=dconv (slow), or XLA: GOMLX_BACKEND=xla:cpu, xla:cuda or "+
				"xla:/abs/path/pjrt_plugin.so (see examples/cifar/README.md)", c.Model)
		}
		if c.Method == "db" {
			return "", errors.Errorf("-method=db needs the gradient of the gradient, and GoMLX's convolution " +
				"gradient is not differentiable: use -conv=dconv (or -conv=auto)")
		}
		return "gomlx", nil
	}
	return "", errors.Errorf("unknown -conv %q: valid values are auto|gomlx|dconv", c.Conv)
}

// newContext builds the context: seeded RNG, the run's hyperparameters, then -set.
func newContext(c *config, conv string, numClasses int) (*context.Context, error) {
	if err := checkModel(c.Model); err != nil {
		return nil, err
	}
	method := c.Method
	if method == "sgd" {
		method = "none"
	}
	if !slices.Contains(gr.Methods, method) {
		return nil, errors.Errorf("unknown -method %q: valid values are %s", c.Method, methodList())
	}
	ctx := context.New()
	if err := ctx.SetRNGStateFromSeed(c.Seed); err != nil {
		return nil, err
	}
	ctx.SetParams(map[string]any{
		paramModel: c.Model, paramConv: conv, paramAugment: c.Augment, paramNumClasses: numClasses,
		gr.ParamMethod: method, gr.ParamGamma: c.Gamma, gr.ParamEpsilon: c.Epsilon, gr.ParamNormalized: c.Normalized,
		"gr_rho": c.Rho, regularizers.ParamFloodMethod: c.FloodMethod, regularizers.ParamFloodLevel: c.FloodLevel,
		optimizers.ParamLearningRate: c.LR,
	})
	if c.Set != "" {
		if _, err := commandline.ParseContextSettings(ctx, c.Set); err != nil {
			return nil, errors.WithMessage(err, "parsing -set")
		}
	}
	return ctx, nil
}

// loadData returns the training dataset (shuffled, infinite) and the test dataset (finite).
func loadData(be backends.Backend, c *config) (trainDS *datasets.InMemoryDataset, testDS *datasets.InMemoryDataset,
	numClasses int, err error) {
	source, numClasses := gcifar.C10, 10
	switch c.Dataset {
	case "c10":
	case "c100":
		source, numClasses = gcifar.C100, 100
	default:
		return nil, nil, 0, errors.Errorf("unknown -dataset %q: valid values are c10|c100", c.Dataset)
	}
	if c.Synthetic {
		trainDS, testDS, err = syntheticData(be, c, numClasses)
		return trainDS, testDS, numClasses, err
	}
	if err := os.MkdirAll(c.Data, 0o755); err != nil {
		return nil, nil, 0, err
	}
	err = catch(func() {
		baseTrain := gcifar.NewDataset(be, "train", c.Data, source, dtypes.Float32, gcifar.Train)
		baseTest := gcifar.NewDataset(be, "test", c.Data, source, dtypes.Float32, gcifar.Test)
		trainDS = baseTrain.BatchSize(c.Batch, true).Shuffle().Infinite(true).
			WithRand(newRand(c.Seed))
		testDS = baseTest.BatchSize(min(c.Batch*4, 1000), false)
		if c.EvalExamples > 0 {
			testDS.BatchSize(min(c.Batch*4, 1000, c.EvalExamples), false)
			testDS.TakeN(c.EvalExamples)
		}
	})
	if err != nil {
		return nil, nil, 0, errors.WithMessagef(err, "loading %s from %q", c.Dataset, c.Data)
	}
	return trainDS, testDS, numClasses, nil
}

// newOptimizer builds SGD + momentum + weight decay + cosine schedule, wrapped by the -method.
func newOptimizer(ctx *context.Context, c *config, totalSteps int) (optimizers.Interface, error) {
	base := &sgdm.Optimizer{LR: c.LR, Momentum: c.Momentum, WeightDecay: c.WeightDecay, TotalSteps: totalSteps}
	return gr.FromContext(ctx, base)
}

// run trains as c says.
func run(c *config) error {
	_, err := runWith(c)
	return err
}

// theBackend is created once: GoMLX's CIFAR loader caches the data on the backend it loaded it with.
var theBackend = sync.OnceValues(func() (backends.Backend, error) {
	if be, err := newGrowingXLABackend(); be != nil || err != nil {
		return be, err
	}
	return gr.NewBackend()
})

func runWith(c *config) (res *result, err error) {
	be, err := theBackend()
	if err != nil {
		return nil, err
	}
	if err := checkModel(c.Model); err != nil {
		return nil, err
	}
	conv, err := resolveConv(c, be)
	if err != nil {
		return nil, err
	}
	trainDS, testDS, numClasses, err := loadData(be, c)
	if err != nil {
		return nil, err
	}
	ctx, err := newContext(c, conv, numClasses)
	if err != nil {
		return nil, err
	}
	stepsPerEpoch := gcifar.NumTrainExamples / c.Batch
	totalSteps := c.Steps
	if totalSteps <= 0 {
		totalSteps = c.Epochs * stepsPerEpoch
	}
	evalEvery := c.EvalEvery
	if evalEvery <= 0 {
		evalEvery = stepsPerEpoch
	}
	opt, err := newOptimizer(ctx, c, totalSteps)
	if err != nil {
		return nil, err
	}
	lossFn, err := regularizers.FromContext(ctx, losses.SparseCategoricalCrossEntropyLogits)
	if err != nil {
		return nil, err
	}

	var ckpt *checkpoints.Handler
	plotPath := c.Plot
	var points []point
	if c.Checkpoint != "" {
		ckpt, err = checkpoints.Build(ctx).Dir(c.Checkpoint).Keep(3).Done()
		if err != nil {
			return nil, errors.WithMessagef(err, "checkpoint %q", c.Checkpoint)
		}
		if plotPath != "" && !filepath.IsAbs(plotPath) {
			plotPath = filepath.Join(ckpt.Dir(), plotPath)
		}
		points = loadPoints(ckpt.Dir())
	}

	movingAcc := metrics.NewMovingAverageSparseCategoricalAccuracy("Moving Average Accuracy", "~acc", 0.01)
	meanAcc := metrics.NewSparseCategoricalAccuracy("Mean Accuracy", "#acc")
	trainer := gr.NewTrainer(be, ctx, modelFn, lossFn, opt, []metrics.Interface{movingAcc}, []metrics.Interface{meanAcc})
	loop := train.NewLoop(trainer)
	if !c.Quiet {
		commandline.AttachProgressBar(loop)
	}

	globalStep := int(optimizers.GetGlobalStep(ctx))
	if globalStep > 0 {
		trainer.SetContext(ctx.Reuse())
		fmt.Printf("cifar: resuming from %q at step %d of %d\n", c.Checkpoint, globalStep, totalSteps)
	}
	fmt.Printf("cifar: %s on %s, conv=%s, method=%s, %d steps (%d per epoch), batch %d, on %s\n",
		c.Model, c.Dataset, conv, c.Method, totalSteps, stepsPerEpoch, c.Batch, be.Name())

	var sumLoss, sumAcc float64
	var count int
	loop.OnStep("curves", train.Priority(200), func(loop *train.Loop, m []*tensors.Tensor) error {
		sumLoss += scalar(m[0])
		sumAcc += scalar(m[len(m)-1])
		count++
		step := int(loop.LoopStep) + 1
		if step%evalEvery == 0 || step == totalSteps {
			p, err := evaluate(trainer, testDS, step, sumLoss/float64(count), sumAcc/float64(count))
			if err != nil {
				return err
			}
			sumLoss, sumAcc, count = 0, 0, 0
			points = append(points, p)
			if ckpt != nil && (step%c.SaveEvery == 0 || step == totalSteps) {
				if err := ckpt.Save(); err != nil {
					return err
				}
				savePoints(ckpt.Dir(), points)
			}
			if plotPath != "" {
				if err := plotCurves(plotPath, c, points); err != nil {
					return err
				}
			}
		} else if ckpt != nil && step%c.SaveEvery == 0 {
			if err := ckpt.Save(); err != nil {
				return err
			}
			savePoints(ckpt.Dir(), points)
		}
		return nil
	})

	if globalStep < totalSteps {
		var runErr error
		err = catch(func() {
			_, runErr = loop.RunToGlobalStep(trainDS, totalSteps)
		})
		if err == nil {
			err = runErr
		}
		if err != nil {
			return nil, explainError(err, c)
		}
	}
	res = &result{Points: points, StepTime: loop.MedianTrainStepDuration(), Params: countParams(ctx)}
	if n := len(points); n > 0 {
		p := points[n-1]
		fmt.Printf("cifar: step %d: train loss %.4f acc %.4f, test loss %.4f acc %.4f; median step %s "+
			"(step_ms=%.3f); %d parameters\n", p.Step, p.TrainLoss, p.TrainAcc, p.TestLoss, p.TestAcc,
			res.StepTime, float64(res.StepTime.Microseconds())/1000, res.Params)
	}
	if plotPath != "" && len(points) > 0 {
		fmt.Printf("cifar: curves in %s\n", plotPath)
	}
	return res, nil
}

// evaluate computes the test loss and accuracy.
func evaluate(trainer *train.Trainer, testDS train.Dataset, step int, trainLoss, trainAcc float64) (point, error) {
	m, err := trainer.Eval(testDS)
	if err != nil {
		return point{}, err
	}
	return point{Step: step, TrainLoss: trainLoss, TrainAcc: trainAcc, TestLoss: scalar(m[0]), TestAcc: scalar(m[len(m)-1])}, nil
}

func scalar(t *tensors.Tensor) float64 {
	switch v := t.Value().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	}
	return math.NaN()
}

// countParams counts the scalars of the trainable variables.
func countParams(ctx *context.Context) int {
	n := 0
	for v := range ctx.IterVariables() {
		if v.Trainable {
			n += v.Shape().Size()
		}
	}
	return n
}

const pointsFile = "curves.json"

func loadPoints(dir string) []point {
	data, err := os.ReadFile(filepath.Join(dir, pointsFile))
	if err != nil {
		return nil
	}
	var points []point
	_ = json.Unmarshal(data, &points)
	return points
}

func savePoints(dir string, points []point) {
	data, _ := json.Marshal(points)
	_ = os.WriteFile(filepath.Join(dir, pointsFile), data, 0o644)
}

// catch turns a panic into an error.
func catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = errors.Errorf("%v", r)
			}
		}
	}()
	fn()
	return nil
}

// explainError adds what to do to the errors a user can hit.
func explainError(err error, c *config) error {
	msg := err.Error()
	if strings.Contains(msg, "not implemented in SimpleGo") {
		return errors.WithMessagef(err, "the pure-Go backend lacks an op this model/method needs: use -model=mlp, "+
			"-conv=dconv, or XLA (GOMLX_BACKEND=xla:cpu, xla:cuda or xla:/abs/path/pjrt_plugin.so)")
	}
	return err
}

func createFile(path string) (*os.File, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return os.Create(path)
}

// syntheticData returns random CIFAR-shaped images and labels: 8 training batches (repeated forever) and
// 512 test images.
func syntheticData(be backends.Backend, c *config, numClasses int) (trainDS, testDS *datasets.InMemoryDataset, err error) {
	rng := newRand(c.Seed)
	make4 := func(n int) (*tensors.Tensor, *tensors.Tensor) {
		images := make([]float32, n*32*32*3)
		for i := range images {
			images[i] = rng.Float32()
		}
		labels := make([]int64, n)
		for i := range labels {
			labels[i] = int64(rng.Intn(numClasses))
		}
		return tensors.FromFlatDataAndDimensions(images, n, 32, 32, 3), tensors.FromFlatDataAndDimensions(labels, n, 1)
	}
	x, y := make4(8 * c.Batch)
	trainDS, err = datasets.InMemoryFromData(be, "synthetic-train", []any{x}, []any{y})
	if err != nil {
		return nil, nil, err
	}
	trainDS.BatchSize(c.Batch, true).Shuffle().Infinite(true)
	x, y = make4(512)
	testDS, err = datasets.InMemoryFromData(be, "synthetic-test", []any{x}, []any{y})
	if err != nil {
		return nil, nil, err
	}
	testDS.BatchSize(min(c.Batch*4, 512), false)
	return trainDS, testDS, nil
}
