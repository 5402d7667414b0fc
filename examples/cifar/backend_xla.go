//go:build ((linux && amd64) || darwin) && !noxla

package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/go-xla/pkg/pjrt"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

// newGrowingXLABackend returns, when $GOMLX_BACKEND is "xla:<plugin>" and $GRADREG_XLA_PREALLOCATE is
// "false", an XLA backend whose GPU allocator grows on demand instead of reserving 75% of the GPU memory
// up front, so that nvidia-smi shows the memory a run really needs (examples/cifar/gpu/check.sh). Otherwise
// it returns nil.
func newGrowingXLABackend() (backends.Backend, error) {
	config := os.Getenv(backends.ConfigEnvVar)
	if os.Getenv("GRADREG_XLA_PREALLOCATE") != "false" || !strings.HasPrefix(config, "xla:") {
		return nil, nil
	}
	xla.EnableAutoInstall(false) // as grbackend.New: nothing is downloaded at run time
	be, err := xla.NewWithOptions(strings.TrimPrefix(config, "xla:"), pjrt.NamedValuesMap{"preallocate": false})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "cifar: backend %s (%q, preallocate=false)\n", be.Name(), config)
	return be, nil
}
