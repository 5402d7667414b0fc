package cnn

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	gmnist "github.com/gomlx/gomlx/examples/mnist"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	"github.com/gradreg/gradreg/examples/internal/mnistdata"
	"github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// model is GoMLX's MNIST CNN on the flat [batch, 784] images of mnistdata.
func model(ctx *context.Context, spec any, inputs []*Node) []*Node {
	images := Reshape(inputs[0], inputs[0].Shape().Dimensions[0], 28, 28, 1)
	return gmnist.CnnModelGraph(ctx, spec, []*Node{images})
}

func newContext() *context.Context {
	ctx := context.New()
	ctx.SetParam("cnn_normalization", "batch") // GoMLX's option: batchnorm.New after each convolution
	ctx.SetParam("cnn_dropout_rate", 0.1)
	if err := ctx.SetRNGStateFromSeed(1); err != nil {
		panic(err)
	}
	return ctx
}

// newTrainer trains with DB, γ = 0.001: at initialization ‖Hg₁‖ ≈ 500‖g₁‖ on this model (measured
// with both DB and CentralDifference), so γ = 0.01 already makes DB's step 5× SGD's and the loss jumps.
func newTrainer(b backends.Backend, ctx *context.Context) *train.Trainer {
	sgd := optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.01).Done()
	return gr.NewTrainer(b, ctx, model, losses.SparseCategoricalCrossEntropyLogits,
		gr.DoubleBackprop(sgd).Gamma(0.001).Done(), nil, nil)
}

// xlaBackend returns the test backend, which must be XLA: GoMLX v0.26.0's pure-Go backend has neither
// BatchNormForTraining nor SelectAndScatterMax, so this model's training step fails there whatever the
// method (checked).
func xlaBackend(t *testing.T) backends.Backend {
	b, err := grbackend.New()
	if err != nil {
		t.Fatal(err)
	}
	if !b.Capabilities().Operations[backends.OpTypeBatchNormForTraining] {
		ctx := newContext()
		_, _, _, err := trainStep(b, ctx, newTrainer(b, ctx), 0)
		if err == nil || !strings.Contains(err.Error(), "BatchNormForTraining") {
			t.Fatalf("backend %s has no BatchNormForTraining, yet the step's error is %v", b.Name(), err)
		}
		t.Skipf("skipped: GoMLX's MNIST CNN with batch norm needs the XLA backend; %s fails with %.100s", b.Name(), err)
	}
	return b
}

var data *mnistdata.Split

// trainStep takes the step-th training step on the 256 first MNIST images, in batches of 32.
func trainStep(b backends.Backend, ctx *context.Context, trainer *train.Trainer, step int) (loss float64, x, y *tensors.Tensor, err error) {
	if data == nil {
		train, _, err := mnistdata.LoadCached("")
		if err != nil {
			return 0, nil, nil, err
		}
		data = &mnistdata.Split{Images: train.Images[:256*mnistdata.ImageSize], Labels: train.Labels[:256]}
	}
	ds := mnistdata.NewTrainDataset(data, 32, 7)
	ds.Seek(step)
	_, inputs, labels, err := ds.Yield()
	if err != nil {
		return 0, nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				panic(r)
			}
		}
	}()
	metrics, err := trainer.TrainStep(nil, inputs, labels)
	if err != nil {
		return 0, nil, nil, err
	}
	return float64(tensors.ToScalar[float32](metrics[0])), inputs[0], labels[0], nil
}

// GoMLX's MNIST CNN trains with double backpropagation once grgrad is installed: the loss over the
// last 5 of 20 steps is below that of the first 5.
func TestDoubleBackpropOnGoMLXsCNN(t *testing.T) {
	b := xlaBackend(t)
	grgrad.MustInstall()
	defer grgrad.Uninstall()
	ctx := newContext()
	trainer := newTrainer(b, ctx)
	var first, last float64
	const steps = 20
	for step := range steps {
		loss, _, _, err := trainStep(b, ctx, trainer, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if step < 5 {
			first += loss / 5
		} else if step >= steps-5 {
			last += loss / 5
		}
	}
	t.Logf("mean loss: %.4f over the first 5 steps, %.4f over the last 5", first, last)
	if !(last < 0.8*first) {
		t.Errorf("DB did not train GoMLX's CNN: mean loss %.4f over the first 5 steps, %.4f over the last 5", first, last)
	}
}

// Without grgrad, the step fails with an error naming the op and grgrad.Install as the remedy.
func TestDoubleBackpropOnGoMLXsCNNWithoutGrgrad(t *testing.T) {
	b := xlaBackend(t)
	grgrad.Uninstall()
	ctx := newContext()
	_, _, _, err := trainStep(b, ctx, newTrainer(b, ctx), 0)
	if err == nil {
		t.Fatal("DB trained GoMLX's CNN with GoMLX's own gradients: the test's premise (GoMLX v0.26.0 cannot) is wrong")
	}
	msg := err.Error()
	for _, want := range []string{"gr.DoubleBackprop needs the gradient of the gradient", "op ", "grgrad.Install()"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("error: %.300s", msg)
}
