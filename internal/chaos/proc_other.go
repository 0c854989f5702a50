//go:build !linux

package chaos

import "syscall"

// childAttr has nothing to add outside Linux: children are killed at cleanup.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
