//go:build !(((linux && amd64) || darwin) && !noxla)

package main

import "github.com/gomlx/gomlx/backends"

// newGrowingXLABackend returns nil: this build has no XLA backend.
func newGrowingXLABackend() (backends.Backend, error) { return nil, nil }
