package grcheckpoint

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pkg/errors"
)

// LockFile is the file inside the checkpoint folder that a Handler holds locked (with the PID of its
// process) from Done until Close or the end of its process.
const LockFile = ".grcheckpoint-lock"

// lock takes the folder's lock for this process: another process that holds it is named by its PID. The
// lock is the operating system's (flock on unix), released when its holder closes it or dies — a lock
// file left by a killed process does not block.
func lock(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, errors.Wrap(err, "grcheckpoint: opening the folder's lock")
	}
	held, err := tryLock(f)
	if err != nil {
		_ = f.Close()
		return nil, errors.Wrapf(err, "grcheckpoint: locking %s", path)
	}
	if !held {
		data, _ := os.ReadFile(path)
		_ = f.Close()
		holder := "another process"
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			holder = "process " + strconv.Itoa(pid)
			if pid == os.Getpid() {
				holder += " (this one: another Handler of the folder, not closed)"
			}
		}
		return nil, errors.Errorf("checkpoint folder %q is in use by %s (it holds %s): two processes must not "+
			"save into one folder; wait for it to end, or give another folder", dir, holder, LockFile)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Close releases the folder's lock (the Handler saves no more). It is also released when the process ends.
func (h *Handler) Close() error {
	if h.lock == nil {
		return nil
	}
	err := h.lock.Close()
	h.lock = nil
	return errors.Wrap(err, "grcheckpoint: releasing the folder's lock")
}
