package grbackend_test

import (
	"os"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/gradreg/gradreg/optimizers/grgrad"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewCPUDevicesErrors: a count below 1, and a backend other than XLA, are errors naming the cause.
func TestNewCPUDevicesErrors(t *testing.T) {
	_, err := grbackend.NewCPUDevices(0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "devices must be ≥ 1")

	t.Setenv(backends.ConfigEnvVar, "go")
	_, err = grbackend.NewCPUDevices(2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not XLA")
}

// TestNewUnknownBackend: an unknown $GOMLX_BACKEND is an error naming it and the backends there are, not a panic.
func TestNewUnknownBackend(t *testing.T) {
	t.Setenv(backends.ConfigEnvVar, "bogus")
	_, err := grbackend.New()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"bogus"`)
	assert.Contains(t, err.Error(), "backends available")
}

// TestNewCPUDevices: on XLA's CPU plugin ($GOMLX_BACKEND=xla:cpu), NewCPUDevices(n) has n devices.
func TestNewCPUDevices(t *testing.T) {
	if !strings.HasPrefix(os.Getenv(backends.ConfigEnvVar), "xla") {
		t.Skipf("needs $%s=xla:cpu (XLA's CPU plugin, e.g. installed by .ci/install-xla-cpu); it is %q",
			backends.ConfigEnvVar, os.Getenv(backends.ConfigEnvVar))
	}
	for _, n := range []int{1, 2, 4} {
		b, err := grbackend.NewCPUDevices(n)
		require.NoError(t, err)
		assert.Equal(t, n, b.NumDevices())
		b.Finalize()
	}
}

// $GRADREG_GRADIENTS chooses the gradients of matrix products; a bad value is an error naming it.
func TestGradientsEnvVar(t *testing.T) {
	defer grgrad.Uninstall()
	t.Setenv(grbackend.GradientsEnvVar, "grgrad")
	if _, err := grbackend.New(); err != nil || !grgrad.Installed() {
		t.Fatalf("%s=grgrad: err %v, grgrad installed %v", grbackend.GradientsEnvVar, err, grgrad.Installed())
	}
	t.Setenv(grbackend.GradientsEnvVar, "gomlx")
	if _, err := grbackend.New(); err != nil || grgrad.Installed() {
		t.Fatalf("%s=gomlx: err %v, grgrad installed %v", grbackend.GradientsEnvVar, err, grgrad.Installed())
	}
	t.Setenv(grbackend.GradientsEnvVar, "fast")
	if _, err := grbackend.New(); err == nil || !strings.Contains(err.Error(), grbackend.GradientsEnvVar) ||
		!strings.Contains(err.Error(), "grgrad") {
		t.Fatalf("%s=fast: error %v, want one naming the variable and its values", grbackend.GradientsEnvVar, err)
	}
}
