//go:build !unix

package main

import "time"

// processCPU is not measured on this system (the CPU columns read 0).
func processCPU() time.Duration { return 0 }
