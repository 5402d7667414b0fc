package grbackend_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// .ci/install-xla-cpu DIR prints a line for eval that sets PJRT_PLUGIN_LIBRARY_PATH to DIR exactly, also when
// DIR holds a space, a quote or a $. The plugin is faked as already installed (the script then only checks
// its SHA-256 against its stamp: no download).
func TestInstallScriptQuotesDir(t *testing.T) {
	script, err := filepath.Abs("../../.ci/install-xla-cpu")
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the script installs a Linux x86_64 plugin only")
	}
	for _, tool := range []string{"bash", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	wheel := func(name string) string { // readonly NAME=value in the script
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "readonly "+name+"="); ok {
				return strings.Fields(v)[0]
			}
		}
		t.Fatalf("no %s in the script", name)
		return ""
	}
	source := wheel("WHEEL") + "==" + wheel("VERSION") + ":" + wheel("WHEEL_SHA256")
	for _, name := range []string{"a b", "it's", "$HOME and `x`"} {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		plugin := []byte("a fake plugin")
		sum := sha256.Sum256(plugin)
		if err := os.WriteFile(filepath.Join(dir, "pjrt_c_api_cpu_plugin.so"), plugin, 0o755); err != nil {
			t.Fatal(err)
		}
		stamp := hex.EncodeToString(sum[:]) + " " + source + "\n"
		if err := os.WriteFile(filepath.Join(dir, "pjrt_c_api_cpu_plugin.so.sha256"), []byte(stamp), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "-c", `eval "$("$0" "$1")" && printf '%s' "$PJRT_PLUGIN_LIBRARY_PATH"`, script, dir)
		out, err := cmd.Output()
		if err != nil || string(out) != dir {
			t.Errorf("DIR %q: PJRT_PLUGIN_LIBRARY_PATH=%q (%v), want DIR", dir, out, err)
		}
	}
	if out, err := exec.Command("bash", script, filepath.Join(t.TempDir(), "a:b")).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "':'") {
		t.Errorf("a DIR with ':': %v, %s; want a refusal", err, out)
	}
}
