//go:build !linux

package bench

import (
	"syscall"
	"time"
)

// childAttr has nothing to add outside Linux: worker processes are killed at cleanup.
func childAttr() *syscall.SysProcAttr { return nil }

// cpuTime is unknown outside Linux.
func cpuTime() time.Duration { return 0 }
