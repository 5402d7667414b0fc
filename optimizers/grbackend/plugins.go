package grbackend

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// pluginPatterns are the file names go-xla takes for PJRT plugins in its search folders.
var pluginPatterns = []string{"pjrt-plugin-*.so", "pjrt_plugin_*.so", "pjrt_c_api_*_plugin.so"}

// pluginSearchDirs are the folders go-xla searches for PJRT plugins: $PJRT_PLUGIN_LIBRARY_PATH (a
// ':'-separated list) when set, else /usr/local/lib/go-xla and ~/.local/lib/go-xla (the folders this
// package's doc names; go-xla adds the system's library folders, not checked here).
func pluginSearchDirs() []string {
	if paths := os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"); paths != "" {
		var dirs []string
		for _, d := range strings.Split(paths, ":") {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
		return dirs
	}
	dirs := []string{"/usr/local/lib/go-xla"}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".local", "lib", "go-xla"))
	}
	return dirs
}

// checkPluginFiles returns an error naming a file of the plugin folders that is named like a PJRT plugin
// but is not one (a shared library without the GetPjrtApi symbol, or not a shared library): go-xla fails
// on such a file with a nil pointer dereference while it lists the plugins (go-xla v0.1.4), whatever
// plugin is asked for. Linux only (ELF); nil elsewhere.
func checkPluginFiles() error {
	if runtime.GOOS != "linux" {
		return nil
	}
	for _, dir := range pluginSearchDirs() {
		for _, pattern := range pluginPatterns {
			files, _ := filepath.Glob(filepath.Join(dir, pattern))
			for _, f := range files {
				if err := isPlugin(f); err != nil {
					return fmt.Errorf("gradreg: %s is named like a PJRT plugin but is not one (%v): GoMLX's XLA "+
						"backend cannot start while it is in a plugin folder ($PJRT_PLUGIN_LIBRARY_PATH=%q): remove "+
						"it, or install XLA's CPU plugin with `.ci/install-xla-cpu DIR`", f, err,
						os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"))
				}
			}
		}
	}
	return nil
}

// isPlugin checks that path is an ELF shared library exporting GetPjrtApi.
func isPlugin(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("a folder")
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("not a shared library: %v", err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return fmt.Errorf("no dynamic symbols: %v", err)
	}
	for _, s := range syms {
		if s.Name == "GetPjrtApi" && s.Section != elf.SHN_UNDEF {
			return nil
		}
	}
	return fmt.Errorf("no GetPjrtApi symbol")
}
