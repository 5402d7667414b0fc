//go:build !(((linux && amd64) || darwin) && !noxla)

package optimizers

// installedXLAPlugins returns nil: this build has no XLA backend.
func installedXLAPlugins() []string { return nil }
