package gr

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/gradreg/gradreg/optimizers/grbackend"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// tinyRegression is a linear model of two weights with a squared loss, and a batch of two examples.
func tinyRegression() (train.ModelFn, train.LossFn, *tensors.Tensor, *tensors.Tensor) {
	modelFn := func(ctx *context.Context, _ any, inputs []*graph.Node) []*graph.Node {
		w := ctx.VariableWithValue("w", []float64{0.5, -0.3}).ValueGraph(inputs[0].Graph())
		return []*graph.Node{graph.Dot(inputs[0], w)}
	}
	lossFn := func(labels, predictions []*graph.Node) *graph.Node {
		return graph.Square(graph.Sub(predictions[0], labels[0]))
	}
	return modelFn, lossFn, tensors.FromValue([][]float64{{1, 2}, {3, 4}}), tensors.FromValue([]float64{1, 0})
}

// TestEveryWarnsOncePerTrainer: a trainer that builds the both-branches graph of Every(k > 1) (plain
// trainer.TrainStep) prints the message once, however many steps; another trainer prints it once more;
// gr.TrainStep (one graph per phase) and Every(1) print nothing.
func TestEveryWarnsOncePerTrainer(t *testing.T) {
	buf := captureWarnings(t)
	backend, err := grbackend.New()
	if err != nil {
		t.Fatal(err)
	}
	modelFn, lossFn, x, y := tinyRegression()
	sgd := func() optimizers.Interface {
		return optimizers.StochasticGradientDescent().WithLearningRate(0.01).Done()
	}
	run := func(opt optimizers.Interface, viaGR bool, steps int) {
		trainer := NewTrainer(backend, context.New(), modelFn, lossFn, opt, nil, nil)
		for range steps {
			var err error
			if viaGR {
				_, err = TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			} else {
				_, err = trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	run(ForwardDifference(sgd()).Every(5).Done(), true, 6)
	run(ForwardDifference(sgd()).Done(), false, 3)
	if buf.Len() != 0 {
		t.Fatalf("unexpected message: %s", buf.String())
	}
	run(ForwardDifference(sgd()).Every(5).Done(), false, 4)
	if n := strings.Count(buf.String(), "gr.ForwardDifference with Every(5)"); n != 1 {
		t.Fatalf("%d messages, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "gr.EveryDataset(trainer, ds)") || !strings.Contains(buf.String(), "gr.TrainStep") {
		t.Fatalf("the message does not say what to add: %s", buf.String())
	}
	run(ForwardDifference(sgd()).Every(5).Done(), false, 2)
	if n := strings.Count(buf.String(), "gr.ForwardDifference with Every(5)"); n != 2 {
		t.Fatalf("%d messages after a second trainer, want 2", n)
	}
}

// TestTrainerRegistriesForgetCollectedTrainers: the package's two registries of trainers (everyTrainers, for
// StepSpec; warnedTrainers, for the both-branches message) hold weak pointers and drop a trainer's entry once
// it is collected, so programs that build many trainers do not grow them.
func TestTrainerRegistriesForgetCollectedTrainers(t *testing.T) {
	captureWarnings(t)
	backend, err := grbackend.New()
	if err != nil {
		t.Fatal(err)
	}
	var keys []weak.Pointer[train.Trainer]
	present := func() (every, warned int) {
		for _, key := range keys {
			if _, found := everyTrainers.Load(key); found {
				every++
			}
			if _, found := warnedTrainers.Load(key); found {
				warned++
			}
		}
		return
	}
	func() {
		modelFn, lossFn, x, y := tinyRegression()
		for range 3 {
			opt := ForwardDifference(optimizers.StochasticGradientDescent().Done()).Every(3).Done()
			trainer := NewTrainer(backend, context.New(), modelFn, lossFn, opt, nil, nil)
			if _, err := trainer.TrainStep(nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, weak.Make(trainer))
		}
	}()
	if every, warned := present(); every != 3 || warned != 3 {
		t.Fatalf("registered: everyTrainers %d, warnedTrainers %d of the 3 trainers", every, warned)
	}
	deadline := time.Now().Add(10 * time.Second)
	for every, warned := present(); every+warned > 0; every, warned = present() {
		if time.Now().After(deadline) {
			t.Fatalf("after GC: everyTrainers still holds %d, warnedTrainers %d of the 3 trainers", every, warned)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// captureWarnings sends the package's warnings to a buffer for the rest of the test.
func captureWarnings(t *testing.T) *bytes.Buffer {
	buf := &bytes.Buffer{}
	saved := warnOutput
	warnOutput = buf
	t.Cleanup(func() { warnOutput = saved })
	return buf
}
