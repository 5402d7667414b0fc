//go:build unix

package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"

	"github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// processCPU is the CPU time of the process so far, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkResNetStep measures one training step of CIFAR ResNet-20 (batch 32, float32, synthetic images,
// no augmentation) for SGD, F-GR, SAM and DB on GoMLX's own layers (-conv=gomlx, grgrad's gradients) and on
// dconv, interleaved: every round runs -bench_steps steps of each configuration in turn, so that load
// changes hit all alike. It reports the median over rounds of the per-step process CPU time and wall time,
// and F-GR's cost ÷ DB's on each convolution (the paper's claim (a): F-GR more than 2× cheaper than DB).
//
//	GOMLX_BACKEND=xla:cpu go test ./examples/cifar -run=NONE -bench=ResNetStep -benchtime=1x -timeout=60m
func BenchmarkResNetStep(b *testing.B) {
	be, err := theBackend()
	if err != nil {
		b.Fatal(err)
	}
	if isPureGo(be) {
		b.Skip("skipped: GoMLX's layers need the XLA backend (GOMLX_BACKEND=xla:cpu)")
	}
	grgrad.MustInstall()
	defer grgrad.Uninstall()
	const batch, rounds, steps = 32, 5, 3
	sgd := func() optimizers.Interface {
		return optimizers.StochasticGradientDescent().WithDecay(false).WithLearningRate(0.01).Done()
	}
	methods := []struct {
		name string
		opt  func() optimizers.Interface
	}{
		{"SGD", sgd},
		{"F-GR", func() optimizers.Interface { return gr.ForwardDifference(sgd()).Gamma(0.05).Epsilon(0.05).Done() }},
		{"SAM", func() optimizers.Interface { return gr.SAM(sgd()).Rho(0.05).Done() }},
		{"DB", func() optimizers.Interface { return gr.DoubleBackprop(sgd()).Gamma(0.05).Done() }},
	}
	type config struct {
		conv, method string
		trainer      *train.Trainer
		cpu, wall    []float64 // ms per step, one per round
	}
	rng := rand.New(rand.NewPCG(1, 2))
	images := make([]float32, batch*32*32*3)
	for i := range images {
		images[i] = rng.Float32()
	}
	labels := make([]int32, batch)
	for i := range labels {
		labels[i] = int32(rng.IntN(10))
	}
	x := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(images, batch, 32, 32, 3)}
	y := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(labels, batch, 1)}
	var configs []*config
	for _, conv := range []string{"gomlx", "dconv"} {
		for _, m := range methods {
			ctx := context.New()
			ctx.SetParams(map[string]any{paramModel: "resnet20", paramConv: conv, paramAugment: false, paramNumClasses: 10})
			c := &config{conv: conv, method: m.name,
				trainer: gr.NewTrainer(be, ctx, modelFn, losses.SparseCategoricalCrossEntropyLogits, m.opt(), nil, nil)}
			for range 2 { // compile and warm up
				if _, err := c.trainer.TrainStep(nil, x, y); err != nil {
					b.Fatalf("%s on %s: %v", m.name, conv, err)
				}
			}
			configs = append(configs, c)
		}
	}
	b.ResetTimer()
	for range b.N {
		for range rounds {
			for _, c := range configs {
				cpu0, wall0 := processCPU(), time.Now()
				for range steps {
					if _, err := c.trainer.TrainStep(nil, x, y); err != nil {
						b.Fatal(err)
					}
				}
				c.cpu = append(c.cpu, float64(processCPU()-cpu0)/float64(time.Millisecond)/steps)
				c.wall = append(c.wall, float64(time.Since(wall0))/float64(time.Millisecond)/steps)
			}
		}
	}
	b.StopTimer()
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	med := map[string][2]float64{}
	fmt.Printf("ResNet-20, batch %d, %s; median of %d rounds of %d steps per configuration, interleaved\n",
		batch, backends.Backend(be).Name(), rounds*b.N, steps)
	fmt.Printf("| conv | method | CPU ms/step | wall ms/step | CPU × SGD |\n|---|---|---:|---:|---:|\n")
	for _, c := range configs {
		med[c.conv+c.method] = [2]float64{median(c.cpu), median(c.wall)}
		sgdCPU := med[c.conv+"SGD"][0]
		fmt.Printf("| %s | %s | %.1f | %.1f | %.2f |\n", c.conv, c.method, median(c.cpu), median(c.wall), median(c.cpu)/sgdCPU)
		b.ReportMetric(median(c.cpu), fmt.Sprintf("cpu-ms/%s-%s", c.conv, c.method))
	}
	for _, conv := range []string{"gomlx", "dconv"} {
		fmt.Printf("%s: DB ÷ F-GR = %.2f (CPU), %.2f (wall)\n", conv, med[conv+"DB"][0]/med[conv+"F-GR"][0],
			med[conv+"DB"][1]/med[conv+"F-GR"][1])
	}
	for _, m := range methods {
		fmt.Printf("%s: dconv ÷ gomlx = %.2f (CPU), %.2f (wall)\n", m.name, med["dconv"+m.name][0]/med["gomlx"+m.name][0],
			med["dconv"+m.name][1]/med["gomlx"+m.name][1])
	}
}
