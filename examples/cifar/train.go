package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	gcifar "github.com/gomlx/gomlx/examples/cifar"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/datasets"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/run"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// Context hyperparameters of the data (flags -dataset, -data, -eval_examples, -synthetic).
const (
	paramDataset      = "cifar_dataset"       // c10|c100
	paramData         = "cifar_data"          // data directory
	paramEvalExamples = "cifar_eval_examples" // evaluate on the first this many test images; 0: all
	paramSynthetic    = "cifar_synthetic"     // random CIFAR-shaped data (timing only)
)

func defaultDataDir() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "gradreg", "cifar")
	}
	return "cifar_data"
}

func isPureGo(be backends.Backend) bool { return strings.Contains(be.Name(), "SimpleGo") }

// resolveConv picks the convolution for -conv (model, conv and method from the context) and explains
// impossible combinations. "gomlx" is GoMLX's own layers (native convolutions, batchnorm.New, pooling):
// the XLA backend, and grgrad's gradients for -method=db. "dconv" runs on every backend.
func resolveConv(ctx *context.Context, be backends.Backend) (string, error) {
	model := context.GetParamOr(ctx, paramModel, "mlp")
	method := context.GetParamOr(ctx, gr.ParamMethod, "none")
	if !isCNN(model) {
		return "gomlx", nil
	}
	const pureGoLacks = "the pure-Go backend lacks ops GoMLX's layers need (BatchNormForTraining for batchnorm.New, " +
		"SelectAndScatterMax for MaxPool's gradient, Pad for MeanPool's)"
	switch conv := context.GetParamOr(ctx, paramConv, "auto"); conv {
	case "auto":
		if isPureGo(be) {
			fmt.Fprintf(os.Stderr, "cifar: %s: using dconv (im2col, slow there; -model=mlp is the fast choice, or "+
				"XLA: GOMLX_BACKEND=xla:cpu or xla:cuda)\n", pureGoLacks)
			return "dconv", nil
		}
		if method == "db" && !grgrad.Installed() {
			fmt.Fprintf(os.Stderr, "cifar: -method=db with -gradients=gomlx: GoMLX's own gradients of convolutions "+
				"are not differentiable, using dconv (-gradients=grgrad, the default, runs DB on GoMLX's layers)\n")
			return "dconv", nil
		}
		return "gomlx", nil
	case "dconv":
		return "dconv", nil
	case "gomlx":
		if isPureGo(be) {
			return "", errors.Errorf("-model=%s with -conv=gomlx cannot train on the pure-Go backend: %s. Use "+
				"-model=mlp, -conv=dconv (slow), or XLA: GOMLX_BACKEND=xla:cpu, xla:cuda or "+
				"xla:/abs/path/pjrt_plugin.so (see examples/cifar/README.md)", model, pureGoLacks)
		}
		if method == "db" && !grgrad.Installed() {
			return "", errors.Errorf("-method=db needs the gradient of the gradient, and GoMLX's own gradients of " +
				"convolutions, pooling and batch norm are not differentiable: use -gradients=grgrad (the default), " +
				"which installs optimizers/grgrad's, or -conv=dconv")
		}
		return "gomlx", nil
	default:
		return "", errors.Errorf("unknown -conv (%s) %q: valid values are auto|gomlx|dconv", paramConv, conv)
	}
}

// data resolves -conv (written back to the context for the model) and returns the training dataset
// (an endless stream whose batch order is drawn from the seed) and the test dataset (finite).
func data(be backends.Backend, ctx *context.Context, seed int64) (*run.Data, error) {
	model := context.GetParamOr(ctx, paramModel, "mlp")
	if err := checkModel(model); err != nil {
		return nil, err
	}
	conv, err := resolveConv(ctx, be)
	if err != nil {
		return nil, err
	}
	ctx.SetParam(paramConv, conv)
	batch := context.GetParamOr(ctx, run.ParamBatch, 128)
	evalExamples := context.GetParamOr(ctx, paramEvalExamples, 0)
	dataset := context.GetParamOr(ctx, paramDataset, "c10")
	source, numClasses := gcifar.C10, 10
	switch dataset {
	case "c10":
	case "c100":
		source, numClasses = gcifar.C100, 100
	default:
		return nil, errors.Errorf("unknown -dataset (%s) %q: valid values are c10|c100", paramDataset, dataset)
	}
	if evalExamples < 0 {
		return nil, errors.Errorf("-eval_examples (%s) must be ≥ 0 (0: the whole test set), got %d", paramEvalExamples,
			evalExamples)
	}
	if batch > gcifar.NumTrainExamples {
		return nil, errors.Errorf("-batch (%s) %d is larger than the %d training examples", run.ParamBatch, batch,
			gcifar.NumTrainExamples)
	}
	ctx.SetParam(paramNumClasses, numClasses)
	d := &run.Data{StepsPerEpoch: gcifar.NumTrainExamples / batch,
		Description: fmt.Sprintf("%s on %s, conv=%s", model, dataset, conv)}
	var trainDS *seededBatches
	var testDS *datasets.InMemoryDataset
	if context.GetParamOr(ctx, paramSynthetic, false) {
		trainDS, testDS, err = syntheticData(be, batch, seed, numClasses)
		if err != nil {
			return nil, err
		}
		d.Description += " (synthetic data)"
	} else {
		dir := context.GetParamOr(ctx, paramData, defaultDataDir())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		err = run.Catch(func() { // GoMLX's loader panics on bad files; so does hostCopy's read-back
			baseTrain := gcifar.NewDataset(be, "train", dir, source, dtypes.Float32, gcifar.Train)
			baseTest := gcifar.NewDataset(be, "test", dir, source, dtypes.Float32, gcifar.Test)
			testDS = baseTest.BatchSize(min(batch*4, 1000), false)
			images, dims, labels, err := hostCopy(baseTrain)
			if err == nil {
				trainDS, err = newSeededBatches(images, dims, labels, batch, seed)
			}
			if err != nil {
				panic(err)
			}
		})
		if err != nil {
			return nil, errors.WithMessagef(err, "loading %s from %q", dataset, dir)
		}
	}
	if evalExamples > 0 {
		testDS.BatchSize(min(batch*4, 1000, evalExamples), false)
		testDS.TakeN(evalExamples)
	}
	d.Train, d.Test = trainDS, testDS
	return d, nil
}

// theBackend is created once: GoMLX's CIFAR loader caches the data on the backend it loaded it with.
var theBackend = sync.OnceValues(func() (backends.Backend, error) {
	if be, err := newGrowingXLABackend(); be != nil || err != nil {
		return be, err
	}
	return grbackend.New()
})

// explainError adds what to do to the errors a user can hit.
func explainError(err error) error {
	if strings.Contains(err.Error(), "not implemented in SimpleGo") {
		return errors.WithMessagef(err, "the pure-Go backend lacks an op this model/method needs: use -model=mlp, "+
			"-conv=dconv, or XLA (GOMLX_BACKEND=xla:cpu, xla:cuda or xla:/abs/path/pjrt_plugin.so)")
	}
	return err
}

// syntheticData returns random CIFAR-shaped images and labels: 8 training batches (repeated forever) and
// 512 test images.
func syntheticData(be backends.Backend, batch int, seed int64, numClasses int) (trainDS *seededBatches, testDS *datasets.InMemoryDataset, err error) {
	rng := rand.New(rand.NewSource(seed))
	make4 := func(n int) ([]float32, []int64) {
		images := make([]float32, n*32*32*3)
		for i := range images {
			images[i] = rng.Float32()
		}
		labels := make([]int64, n)
		for i := range labels {
			labels[i] = int64(rng.Intn(numClasses))
		}
		return images, labels
	}
	x, y := make4(8 * batch)
	if trainDS, err = newSeededBatches(x, []int{32, 32, 3}, y, batch, seed); err != nil {
		return nil, nil, err
	}
	x, y = make4(512)
	testDS, err = datasets.InMemoryFromData(be, "synthetic-test",
		[]any{tensors.FromFlatDataAndDimensions(x, 512, 32, 32, 3)}, []any{tensors.FromFlatDataAndDimensions(y, 512, 1)})
	if err != nil {
		return nil, nil, err
	}
	testDS.BatchSize(min(batch*4, 512), false)
	return trainDS, testDS, nil
}
