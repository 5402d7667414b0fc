// Command cifar trains ResNets, WideResNets, a small CNN or an MLP on CIFAR-10/100 with SGD + momentum,
// a cosine learning-rate schedule and weight decay, optionally with gradient regularization (any method of
// package gr), the SAM family or flooding, as in Karakida et al. (ICML 2023). It downloads the data with
// GoMLX's examples/cifar package (checksum-verified) unless it is already in -data.
//
//	go run ./examples/cifar -model=mlp -steps=200                       # any backend, the pure-Go one included
//	GOMLX_BACKEND=xla:cuda go run ./examples/cifar -model=resnet20 -method=forward -gamma=0.05 -epsilon=0.05 -epochs=200
//
// See examples/cifar/README.md for the paper's setting on a GPU.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	gr "github.com/gradreg/gradreg/optimizers"
)

func main() {
	cfg := defaultConfig()
	cfg.registerFlags(flag.CommandLine)
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cifar: %v\n", err)
		os.Exit(1)
	}
}

// methodNames returns the values accepted by -method: sgd and every method of package gr.
func methodNames() []string {
	names := []string{"sgd"}
	for _, m := range gr.Methods {
		if m != "none" {
			names = append(names, m)
		}
	}
	return names
}

func methodList() string { return strings.Join(methodNames(), "|") }
