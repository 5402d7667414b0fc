// Package grbackend gives programs and tests a GoMLX backend and says which one they got. The library
// itself (package gr) imports no backend: choosing one is the program's business, as with GoMLX's own
// optimizers. Programs may use GoMLX's backends.New directly; this package adds the choice our examples
// and tests make and one line on stderr naming it.
package grbackend

import (
	"fmt"
	"os"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // Registers the pure-Go backend ("go").
)

// New returns the backend our examples and tests use, and prints one line to stderr saying which:
//
//   - $GOMLX_BACKEND when set (e.g. "go", "xla:cpu", or "xla:/abs/path/pjrt_c_api_cuda_plugin.so");
//   - otherwise XLA when a PJRT plugin is already installed (nothing is ever downloaded);
//   - otherwise the pure-Go backend, "go".
//
// The pure-Go backend without options ("go", from $GOMLX_BACKEND or by default) runs as "go:ops_sequential"
// (PureGoConfig): GoMLX v0.26.0's pure-Go backend can deadlock when it runs independent ops in parallel —
// a batched DotGeneral running in a worker waits for more workers without releasing its own, and with
// several in flight (attention, Groups) every worker waits (docs/gomlx-notes.md, note 7). Sequential ops
// keep each op's own parallelism and cost nothing measurable on our MLP benchmark (docs/benchmarks.md).
// A configuration with options, e.g. "go:ops_parallel", is used as given.
//
// The XLA backend is compiled in on linux/amd64 and darwin unless built with the noxla tag.
func New() (backends.Backend, error) {
	config, found := os.LookupEnv(backends.ConfigEnvVar)
	source := "from $" + backends.ConfigEnvVar
	if !found || config == "" {
		config, source = "go", "no PJRT plugin installed"
		if plugins := installedXLAPlugins(); len(plugins) > 0 {
			config, source = "xla:"+plugins[0], "PJRT plugin installed"
		}
	}
	if config == "go" {
		config = PureGoConfig
	}
	backend, err := backends.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("gradreg: backend %q (%s): %w", config, source, err)
	}
	backendOnce.Do(func() {
		fmt.Fprintf(os.Stderr, "gradreg: backend %s (%q, %s)\n", backend.Name(), config, source)
	})
	return backend, nil
}

// PureGoConfig is the backend configuration New uses for the pure-Go backend without options.
const PureGoConfig = "go:ops_sequential"

var backendOnce sync.Once

// MustNew is New that panics on error.
func MustNew() backends.Backend {
	backend, err := New()
	if err != nil {
		panic(err)
	}
	return backend
}
