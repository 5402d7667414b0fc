//go:build !(((linux && amd64) || darwin) && !noxla)

package grbackend

import (
	"errors"

	"github.com/gomlx/gomlx/backends"
)

// noAutoInstall does nothing: this build has no XLA backend.
func noAutoInstall() {}

// installedXLAPlugins returns nil: this build has no XLA backend.
func installedXLAPlugins() []string { return nil }

// newXLACPUDevices fails: this build has no XLA backend.
func newXLACPUDevices(string, int) (backends.Backend, error) {
	return nil, errors.New("this program was built without the XLA backend (noxla tag, or a platform " +
		"other than linux/amd64 and darwin)")
}

// describeXLA returns "": this build has no XLA backend.
func describeXLA(backends.Backend, string) string { return "" }
