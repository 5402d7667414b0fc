package model

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"

	gr "github.com/gradreg/gradreg/optimizers"
)

// NewBackend is gr.NewBackend, except that the pure-Go backend without options ("go") is replaced by
// "go:ops_sequential". GoMLX v0.26.0's pure-Go backend can deadlock when it runs ops in parallel: a
// batched DotGeneral (every Einsum of the attention) running in a worker waits for more workers without
// releasing its own (backends/simplego/dotgeneral_small.go), and with several such ops in flight all
// workers wait (docs/gomlx-notes.md). Sequential ops keep the DotGeneral's own parallelism and cannot
// deadlock. A GOMLX_BACKEND with options, e.g. "go:ops_parallel", is used as given.
func NewBackend() (backends.Backend, error) {
	backend, err := gr.NewBackend()
	if err != nil {
		return nil, err
	}
	if _, pureGo := backend.(*simplego.Backend); !pureGo || strings.Contains(os.Getenv(backends.ConfigEnvVar), ":") {
		return backend, nil
	}
	backend.Finalize()
	if backend, err = simplego.New("ops_sequential"); err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "vit: pure-Go backend with ops_sequential (its parallel op scheduling can deadlock on "+
		"attention: docs/gomlx-notes.md)")
	return backend, nil
}
