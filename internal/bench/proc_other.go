//go:build !linux

package bench

import "time"

// cpuTime is unknown outside Linux.
func cpuTime() time.Duration { return 0 }
