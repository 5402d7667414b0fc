package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const childEnv = "QUICKSTART_TEST_CHILD"

// The user's mistakes (a bad backend, a bad $GRADREG_GRADIENTS, a NaN or out-of-range flag) end with one
// line naming the input and exit code 2, never a stack trace.
func TestMistakesWithoutStackTrace(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		main()
		return
	}
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"GOMLX_BACKEND=bogus", nil, `"bogus"`},
		{"GRADREG_GRADIENTS=bogus", nil, "GRADREG_GRADIENTS"},
		{"", []string{"-lr=NaN"}, "-lr"},
		{"", []string{"-lr=-1"}, "-lr"},
		{"", []string{"-gamma=Inf"}, "-gamma"},
		{"", []string{"-epsilon=0"}, "-epsilon"},
		{"", []string{"-steps=0"}, "-steps"},
		{"", []string{"-noise=1"}, "-noise"},
		{"", []string{"extra"}, "unexpected arguments"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestMistakesWithoutStackTrace$"}, c.args...)...)
		cmd.Env = append(os.Environ(), childEnv+"=1", "GOMLX_BACKEND=go")
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		out, err := cmd.CombinedOutput()
		code := -1
		if e, ok := err.(*exec.ExitError); ok {
			code = e.ExitCode()
		}
		if code != 2 || !strings.Contains(string(out), "quickstart: ") || !strings.Contains(string(out), c.want) ||
			strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic") {
			t.Errorf("%s %q: exit %d, output:\n%s\nwant exit 2 and one line naming %q", c.env, c.args, code, out,
				c.want)
		}
	}
}
