//go:build !(((linux && amd64) || darwin) && !noxla)

package grbackend

// installedXLAPlugins returns nil: this build has no XLA backend.
func installedXLAPlugins() []string { return nil }
