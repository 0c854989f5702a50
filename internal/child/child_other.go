//go:build !linux

package child

import (
	"errors"
	"syscall"
)

// SysProcAttr puts the child in a process group of its own; outside Linux children
// are stopped by their parent at cleanup.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// PeakRSS needs Linux's /proc.
func (p *Process) PeakRSS() (int64, error) { return 0, errors.New("peak RSS needs Linux's /proc") }

// RSS needs Linux's /proc.
func (p *Process) RSS() (now, peak int64, err error) {
	return 0, 0, errors.New("RSS needs Linux's /proc")
}
