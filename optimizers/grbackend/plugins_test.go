package grbackend_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"

	"github.com/gradreg/gradreg/optimizers/grbackend"
)

// A file named like a PJRT plugin that is not one (an ELF without GetPjrtApi, a text file) in the plugin
// folder: New answers with an error naming the file, not go-xla's nil pointer; the pure-Go backend, asked
// for by name, still starts.
func TestNotAPlugin(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the check reads ELF files: linux only")
	}
	self, err := os.ReadFile(os.Args[0]) // An ELF executable: no GetPjrtApi.
	if err != nil {
		t.Fatal(err)
	}
	for _, content := range [][]byte{self, []byte("not a library\n")} {
		dir := t.TempDir()
		fake := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
		if err := os.WriteFile(fake, content, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
		for _, config := range []string{"", "xla:cpu", "xla"} {
			t.Setenv(backends.ConfigEnvVar, config)
			b, err := grbackend.New()
			if err == nil || !strings.Contains(err.Error(), fake) || !strings.Contains(err.Error(), "not one") {
				t.Errorf("GOMLX_BACKEND=%q with %s: backend %v, error %v; want an error naming the file", config,
					fake, b, err)
			}
		}
		if _, err := grbackend.NewCPUDevices(2); err == nil || !strings.Contains(err.Error(), fake) {
			t.Errorf("NewCPUDevices with %s: %v, want an error naming the file", fake, err)
		}
		t.Setenv(backends.ConfigEnvVar, "go")
		if b, err := grbackend.New(); err != nil {
			t.Errorf("GOMLX_BACKEND=go with a bad plugin file around: %v", err)
		} else {
			b.Finalize()
		}
	}
}
