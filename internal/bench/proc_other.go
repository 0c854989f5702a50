//go:build !linux

package bench

import "time"

// cpuTime is unknown outside Linux.
func cpuTime() time.Duration { return 0 }

// processCPU is unknown outside Linux.
func processCPU(int) time.Duration { return 0 }
