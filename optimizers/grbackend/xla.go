//go:build ((linux && amd64) || darwin) && !noxla

package grbackend

import "github.com/gomlx/gomlx/backends/xla"

// installedXLAPlugins lists the PJRT plugins already installed, never downloading one.
func installedXLAPlugins() []string {
	xla.EnableAutoInstall(false)
	return xla.GetAvailablePlugins()
}
