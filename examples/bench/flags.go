package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/pkg/errors"

	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
)

// exitUsage is the exit code of a bad flag (the flag package's).
const exitUsage = 2

// checkFlags validates every flag before any work, naming the flag and its valid values.
func checkFlags() error {
	if flag.NArg() > 0 {
		return errors.Errorf("unexpected arguments %q: flags only", flag.Args())
	}
	for _, v := range []struct {
		flag     string
		val, min int
	}{{"rounds", *flagRounds, 1}, {"warmup", *flagWarmUp, 0}, {"batch", *flagBatch, 1}, {"in", *flagIn, 1},
		{"hidden", *flagHidden, 1}, {"depth", *flagDepth, 1}, {"out", *flagOut, 2}, {"soak", *flagSoak, 0}, {"soak_batch", *flagSoakBatch, 1},
		{"soak_hidden", *flagSoakHidden, 1}} {
		if v.val < v.min {
			return errors.Errorf("-%s must be ≥ %d, got %d", v.flag, v.min, v.val)
		}
	}
	if lr := *flagSoakLR; !(lr > 0) || math.IsInf(lr, 0) {
		return errors.Errorf("-soak_lr must be a finite number > 0, got %g", lr)
	}
	if m := *flagModel; m != "mlp" && m != "vit" && m != "cnn" {
		return errors.Errorf("unknown -model=%q: valid values are mlp|vit|cnn", m)
	}
	for _, config := range backendConfigs() {
		if *flagBackend != "" && strings.TrimSpace(config) == "" {
			return errors.Errorf("-backend=%q: an empty backend in the comma-separated list", *flagBackend)
		}
	}
	if d := *flagGradients; d != "gomlx" && d != "grgrad" && d != "both" {
		return errors.Errorf("unknown -gradients=%q: valid values are gomlx|grgrad|both", d)
	}
	if *flagCheck && *flagJSON {
		return errors.New("-check tests the tables' ratios, which -json does not print: give one of them")
	}
	if *flagSoak > 0 && *flagGradients == "both" {
		return errors.New("-gradients=both compares step times; with -soak give gomlx or grgrad")
	}
	if *flagOnly != "" {
		var names []string
		for _, m := range methods() {
			names = append(names, m.name)
		}
		for _, name := range strings.Split(*flagOnly, ",") {
			if !slices.Contains(names, name) {
				return errors.Errorf("-only: unknown method %q: valid names (comma-separated, exactly as in the "+
					"table) are %q", name, names)
			}
		}
	}
	if *flagRSS != "" {
		var names []string
		for _, m := range methods() {
			names = append(names, m.name)
		}
		if !slices.Contains(names, *flagRSS) {
			return errors.Errorf("-rss: unknown method %q: valid names (exactly as in the table) are %q", *flagRSS, names)
		}
		if *flagGradients == "both" || strings.Contains(*flagBackend, ",") {
			return errors.New("-rss measures one method in one process: give one backend and -gradients=gomlx or grgrad")
		}
	}
	if *flagSoakOnly != "" {
		for _, name := range strings.Split(*flagSoakOnly, ",") {
			if !slices.Contains(gr.Methods(), name) {
				return errors.Errorf("-soak_methods: unknown gr_method %q: valid values are %s", name,
					strings.Join(gr.Methods(), ","))
			}
		}
	}
	if dir := *flagMNIST; dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return errors.Errorf("-mnist=%q is not a folder: give the folder holding the MNIST files", dir)
		}
	}
	return nil
}

// newBackend creates the backend or exits with a message naming the setting (no stack trace).
func newBackend() backends.Backend {
	backend, err := grbackend.New() // An unknown $GOMLX_BACKEND is an error naming it.
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(exitUsage)
	}
	return backend
}
