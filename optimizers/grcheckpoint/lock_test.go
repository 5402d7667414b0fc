package grcheckpoint

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/ml/context"
)

// A second Handler of a folder is refused, naming the holder's PID, until the first is closed.
func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	h, err := Build(context.New()).Dir(dir).Done()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.New()).Dir(dir).Done()
	if err == nil || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second handler of a held folder: %v, want an error naming process %d", err, os.Getpid())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2, err := Build(context.New()).Dir(dir).Done()
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	_ = h2.Close()
	_ = h2.Close() // Twice: no error, nothing released twice.
}

const lockChildEnv = "GRCHECKPOINT_TEST_LOCK_CHILD"

// Another process holding the folder: refused with its PID; once that process is killed (SIGKILL, its lock
// file left behind with its PID in it), the folder opens.
func TestLockAcrossProcesses(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		if _, err := Build(context.New()).Dir(dir).Done(); err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockAcrossProcesses$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("child: %q", line)
	}
	pid := cmd.Process.Pid
	_, err = Build(context.New()).Dir(dir).Done()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by process %d", pid)) ||
		!strings.Contains(err.Error(), dir) {
		t.Fatalf("folder held by process %d: %v, want an error naming it and the folder", pid, err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if data, err := os.ReadFile(filepath.Join(dir, LockFile)); err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		t.Fatalf("the killed process's lock file: %q, %v: want its PID %d left behind", data, err, pid)
	}
	h, err := Build(context.New()).Dir(dir).Done()
	if err != nil {
		t.Fatalf("a stale lock of a killed process blocks: %v", err)
	}
	defer func() { _ = h.Close() }()
	if data, _ := os.ReadFile(filepath.Join(dir, LockFile)); strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this process's PID %d", data, os.Getpid())
	}
}
