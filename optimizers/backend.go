package optimizers

import (
	"fmt"
	"os"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // Registers the pure-Go backend ("go").
)

// NewBackend returns the backend our examples and tests use, and prints one line to stderr saying which:
//
//   - $GOMLX_BACKEND when set (e.g. "go", "xla:cpu", or "xla:/abs/path/pjrt_c_api_cuda_plugin.so");
//   - otherwise XLA when a PJRT plugin is already installed (nothing is ever downloaded);
//   - otherwise the pure-Go backend, "go".
//
// The XLA backend is compiled in on linux/amd64 and darwin unless built with the noxla tag.
func NewBackend() (backends.Backend, error) {
	config, found := os.LookupEnv(backends.ConfigEnvVar)
	source := "from $" + backends.ConfigEnvVar
	if !found || config == "" {
		config, source = "go", "no PJRT plugin installed"
		if plugins := installedXLAPlugins(); len(plugins) > 0 {
			config, source = "xla:"+plugins[0], "PJRT plugin installed"
		}
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

var backendOnce sync.Once

// MustNewBackend is NewBackend that panics on error.
func MustNewBackend() backends.Backend {
	backend, err := NewBackend()
	if err != nil {
		panic(err)
	}
	return backend
}
