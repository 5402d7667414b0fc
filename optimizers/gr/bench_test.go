package gr_test

import (
	"fmt"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
)

// BenchmarkStep times one training step of each method on the float64 tanh MLP of the tests (256 examples,
// 32 inputs, 64 hidden units), for comparison with "base". Compare ratios within one run, e.g.
//
//	GOMLX_BACKEND=go go test -run=^$ -bench=Step -count=5 ./optimizers
//
// and see examples/bench for the interleaved table of docs/benchmarks.md.
func BenchmarkStep(b *testing.B) {
	p := newProblem(41, 256, 32, 64, 0.001)
	cases := []struct {
		name string
		opt  func() optimizers.Interface
	}{
		{"base", func() optimizers.Interface { return sgd(0.01) }},
		{"db", func() optimizers.Interface { return gr.DoubleBackprop(sgd(0.01)).Done() }},
		{"forward", func() optimizers.Interface { return gr.ForwardDifference(sgd(0.01)).Done() }},
		{"backward", func() optimizers.Interface { return gr.BackwardDifference(sgd(0.01)).Done() }},
		{"central", func() optimizers.Interface { return gr.CentralDifference(sgd(0.01)).Done() }},
		{"sam", func() optimizers.Interface { return gr.SAM(sgd(0.01)).Done() }},
		{"usam", func() optimizers.Interface { return gr.USAM(sgd(0.01)).Done() }},
		{"gnp", func() optimizers.Interface { return gr.GNP(sgd(0.01)).Done() }},
		{"asam", func() optimizers.Interface { return gr.ASAM(sgd(0.01)).Done() }},
	}
	for _, k := range []int{2, 5, 10} {
		cases = append(cases, struct {
			name string
			opt  func() optimizers.Interface
		}{fmt.Sprintf("forward-every%d", k), func() optimizers.Interface {
			return gr.ForwardDifference(sgd(0.01)).Every(k).Done()
		}})
	}
	x, y := p.tensors()
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			trainer := gr.NewTrainer(backend(b), context.New(), p.modelFn(false), squaredLoss, c.opt(), nil, nil)
			step := func() {
				if _, err := gr.TrainStep(trainer, nil, []*tensors.Tensor{x}, []*tensors.Tensor{y}); err != nil {
					b.Fatal(err)
				}
			}
			for range 10 { // Compile every graph (both phases of Every) and warm up.
				step()
			}
			b.ResetTimer()
			for b.Loop() {
				step()
			}
		})
	}
}
