// Package testbackend gives the examples' tests one backend per test binary.
package testbackend

import (
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"

	"github.com/gradreg/gradreg/optimizers/grbackend"
)

var (
	once    sync.Once
	backend backends.Backend
	err     error
)

// Get returns the backend of grbackend.New, created on the first call; it fails the test when there is none.
func Get(t testing.TB) backends.Backend {
	once.Do(func() { backend, err = grbackend.New() })
	if err != nil {
		t.Fatalf("no backend: %v", err)
	}
	return backend
}
