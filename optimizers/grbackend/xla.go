//go:build ((linux && amd64) || darwin) && !noxla

package grbackend

import (
	"fmt"
	"strings"

	"github.com/gomlx/go-xla/pkg/pjrt"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

// noAutoInstall turns off the XLA backend's download of missing plugins.
func noAutoInstall() { xla.EnableAutoInstall(false) }

// installedXLAPlugins lists the PJRT plugins already installed, never downloading one.
func installedXLAPlugins() []string {
	noAutoInstall()
	return xla.GetAvailablePlugins()
}

// newXLACPUDevices creates GoMLX's XLA backend on plugin (a name such as "cpu" or a path, with GoMLX's
// options after commas) with cpu_device_count devices.
func newXLACPUDevices(plugin string, devices int) (backends.Backend, error) {
	if plugin == "" {
		plugin = "cpu"
	}
	return xla.NewWithOptions(plugin, pjrt.NamedValuesMap{"cpu_device_count": int64(devices)})
}

// describeXLA names an XLA backend's plugin: "XLA, PJRT plugin <path> (PJRT C API v0.81), 1 device". It
// returns "" for other backends.
func describeXLA(backend backends.Backend, config string) string {
	if _, ok := backend.(*xla.Backend); !ok {
		return ""
	}
	_, name, _ := strings.Cut(config, ":")
	name, _, _ = strings.Cut(name, ",")
	if name == "" {
		name = xla.GetAvailablePlugins()[0]
	}
	plugin, err := pjrt.GetPlugin(name)
	if err != nil {
		return "XLA, " + backend.Description()
	}
	major, minor := plugin.Version()
	devices := "devices"
	if backend.NumDevices() == 1 {
		devices = "device"
	}
	return fmt.Sprintf("XLA, PJRT plugin %s (PJRT C API v%d.%d), %d %s", plugin.Path(), major, minor,
		backend.NumDevices(), devices)
}
