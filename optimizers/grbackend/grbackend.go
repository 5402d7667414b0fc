// Package grbackend gives programs and tests a GoMLX backend and says which one they got. The library
// itself (package gr) imports no backend: choosing one is the program's business, as with GoMLX's own
// optimizers. Programs may use GoMLX's backends.New directly; this package adds the choice gradreg's examples
// and tests make and one line on stderr naming it.
package grbackend

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // Registers the pure-Go backend ("go").

	"github.com/gradreg/gradreg/optimizers/grgrad"
)

// New returns the backend gradreg's examples and tests use, and prints one line to stderr saying which:
//
//   - $GOMLX_BACKEND when set (e.g. "go", "xla:cpu", or "xla:/abs/path/pjrt_c_api_cuda_plugin.so");
//   - otherwise XLA when a PJRT plugin is already installed;
//   - otherwise the pure-Go backend, "go".
//
// Nothing is ever downloaded: New turns off the XLA backend's auto-install (xla.EnableAutoInstall(false))
// before creating it, also when $GOMLX_BACKEND names XLA. "xla:cpu" finds the plugin file
// pjrt_c_api_cpu_plugin.so in $PJRT_PLUGIN_LIBRARY_PATH (or /usr/local/lib/go-xla, ~/.local/lib/go-xla);
// .ci/install-xla-cpu DIR installs one from Python's package index. For XLA the line names the plugin's
// path, the PJRT C API version it reports and its number of devices (XLA's CPU plugin makes 4 by default;
// NewCPUDevices chooses).
//
// The pure-Go backend without options ("go", from $GOMLX_BACKEND or by default) runs as "go:ops_sequential"
// (PureGoConfig): GoMLX v0.26.0's pure-Go backend can deadlock when it runs independent ops in parallel —
// a batched DotGeneral running in a worker waits for more workers without releasing its own, and with
// several in flight (attention, Groups) every worker waits (docs/gomlx-notes.md, note 7). Sequential ops
// keep each op's own parallelism and cost nothing measurable on the MLP benchmark (docs/benchmarks.md).
// A configuration with options, e.g. "go:ops_parallel", is used as given.
//
// $GRADREG_GRADIENTS chooses how every graph of the process differentiates matrix products: "grgrad"
// installs optimizers/grgrad (transposed matrix products, 6–8× less CPU per MLP step), "gomlx" keeps GoMLX's own
// gradients (a [batch, in, out] broadcast product and sum); unset, New changes nothing. The line says
// "grgrad" when grgrad's gradients are in effect.
//
// The XLA backend is compiled in on linux/amd64 and darwin unless built with the noxla tag.
func New() (backends.Backend, error) {
	if err := dotGradient(); err != nil {
		return nil, err
	}
	config, source := choose()
	if name, _, _ := strings.Cut(config, ":"); isXLAName(name) || source != "from $"+backends.ConfigEnvVar {
		if err := checkPluginFiles(); err != nil {
			return nil, err
		}
	}
	noAutoInstall()
	backend, err := newWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("gradreg: backend %q (%s): %w%s", config, source, err, hint(config))
	}
	announce(backend, config, source)
	return backend, nil
}

// NewCPUDevices is New with the given number of CPU devices, for trainer.DistributedTrainStep on one
// machine: XLA's CPU plugin takes the count as its client option cpu_device_count. The backend New would
// pick must be XLA on a CPU plugin ("xla:cpu" or the path of a CPU plugin); otherwise it is an error
// saying so: GoMLX's pure-Go backend has one device and refuses shardings. devices must be ≥ 1.
func NewCPUDevices(devices int) (backends.Backend, error) {
	if devices < 1 {
		return nil, fmt.Errorf("gradreg: NewCPUDevices(devices=%d): devices must be ≥ 1", devices)
	}
	if err := dotGradient(); err != nil {
		return nil, err
	}
	if err := checkPluginFiles(); err != nil {
		return nil, err
	}
	config, source := choose()
	name, plugin, _ := strings.Cut(config, ":")
	if !isXLAName(name) {
		return nil, fmt.Errorf("gradreg: NewCPUDevices(%d): backend %q (%s) is not XLA; several devices need "+
			"XLA's CPU plugin, e.g. GOMLX_BACKEND=xla:cpu (GoMLX's pure-Go backend has one device and refuses "+
			"shardings)", devices, config, source)
	}
	noAutoInstall()
	backend, err := newXLACPUDevices(plugin, devices)
	if err != nil {
		return nil, fmt.Errorf("gradreg: backend %q with %d CPU devices (%s): %w%s", config, devices, source, err,
			hint(config))
	}
	if backend.NumDevices() != devices {
		n := backend.NumDevices()
		backend.Finalize()
		return nil, fmt.Errorf("gradreg: backend %q (%s) made %d devices, not the %d asked for: is it a CPU "+
			"plugin?", config, source, n, devices)
	}
	announce(backend, fmt.Sprintf("%s, cpu_device_count=%d", config, devices), source)
	return backend, nil
}

// newWithConfig is backends.NewWithConfig returning, not panicking with, GoMLX's error for a configuration it
// does not know (e.g. GOMLX_BACKEND=bogus): a user's mistake gets a message, not a stack trace.
func newWithConfig(config string) (backend backends.Backend, err error) {
	defer func() {
		if r := recover(); r != nil {
			backend, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return backends.NewWithConfig(config)
}

// choose returns the configuration New uses and where it came from.
func choose() (config, source string) {
	config, found := os.LookupEnv(backends.ConfigEnvVar)
	source = "from $" + backends.ConfigEnvVar
	if !found || config == "" {
		config, source = "go", "no PJRT plugin installed"
		if checkPluginFiles() != nil { // New reports it.
			return config, source
		}
		if plugins := installedXLAPlugins(); len(plugins) > 0 {
			config, source = "xla:"+plugins[0], "PJRT plugin installed"
		}
	}
	if config == "go" {
		config = PureGoConfig
	}
	return config, source
}

// hint says how to install XLA's CPU plugin when config names XLA without a plugin path.
func hint(config string) string {
	name, plugin, _ := strings.Cut(config, ":")
	if !isXLAName(name) || strings.HasPrefix(plugin, "/") {
		return ""
	}
	return "; nothing is downloaded at run time: install XLA's CPU plugin with `.ci/install-xla-cpu DIR` " +
		"(gradreg's repository) and set PJRT_PLUGIN_LIBRARY_PATH=DIR"
}

// isXLAName reports whether name is one of the names GoMLX registers its XLA backend under.
func isXLAName(name string) bool {
	switch name {
	case "xla", "stablehlo", "hlo", "shlo":
		return true
	}
	return false
}

// PureGoConfig is the backend configuration New uses for the pure-Go backend without options.
const PureGoConfig = "go:ops_sequential"

// announced holds the lines already printed: each backend configuration is named once per process.
var announced sync.Map

// described maps the backends created here to their description (Describe).
var described sync.Map // backends.Backend → string

// Describe names a backend for a report's table: for one created by New or NewCPUDevices on XLA, "XLA, PJRT
// plugin <path> (PJRT C API vX.Y), N devices"; for the pure-Go backend (and any backend not created here)
// its Name(), e.g. "SimpleGo (go)".
func Describe(backend backends.Backend) string {
	if d, ok := described.Load(backend); ok {
		return d.(string)
	}
	return backend.Name()
}

// announce prints the backend line once per configuration.
func announce(backend backends.Backend, config, source string) {
	what := backend.Name()
	if d := describeXLA(backend, config); d != "" {
		what = d
	}
	described.Store(backend, what)
	line := fmt.Sprintf("gradreg: backend %s (%q, %s)", what, config, source)
	if grgrad.Installed() {
		line += "; " + grgrad.Describe()
	}
	if _, seen := announced.LoadOrStore(line, true); !seen {
		fmt.Fprintln(os.Stderr, line)
	}
}

// GradientsEnvVar is the environment variable New reads to choose the gradients of matrix products.
const GradientsEnvVar = "GRADREG_GRADIENTS"

// ErrGradientsChoice is the error of SetGradients for a value other than "grgrad" and "gomlx".
var ErrGradientsChoice = errors.New(`valid values are grgrad (optimizers/grgrad's gradients of matrix ` +
	`products) and gomlx (GoMLX's own)`)

// SetGradients chooses, for every graph built afterwards in the process, the gradients of matrix
// products: "grgrad" installs optimizers/grgrad's, "gomlx" puts GoMLX's own back. Another value is an error
// wrapping ErrGradientsChoice.
func SetGradients(choice string) error {
	switch choice {
	case "grgrad":
		return grgrad.Install()
	case "gomlx":
		grgrad.Uninstall()
		return nil
	}
	return fmt.Errorf("%q: %w", choice, ErrGradientsChoice)
}

// dotGradient applies $GRADREG_GRADIENTS, when set (see New).
func dotGradient() error {
	v := os.Getenv(GradientsEnvVar)
	if v == "" {
		return nil
	}
	if err := SetGradients(v); err != nil {
		return fmt.Errorf("gradreg: $%s=%w", GradientsEnvVar, err)
	}
	return nil
}

// MustNew is New that panics on error.
func MustNew() backends.Backend {
	backend, err := New()
	if err != nil {
		panic(err)
	}
	return backend
}
