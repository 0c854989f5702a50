package child

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// SysProcAttr makes the kernel kill a child when its parent dies, and puts it in a
// process group of its own, so a terminal's Ctrl-C reaches only the parent,
// which stops its children in order.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// PeakRSS is the process's peak resident set size so far (VmHWM in /proc).
func (p *Process) PeakRSS() (int64, error) {
	_, peak, err := p.RSS()
	return peak, err
}

// RSS is the process's resident set size now and at its peak so far
// (VmRSS and VmHWM in /proc), in bytes.
func (p *Process) RSS() (now, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("RSS needs Linux's /proc: %w", err)
	}
	found := 0
	for line := range strings.Lines(string(b)) {
		for name, dst := range map[string]*int64{"VmRSS:": &now, "VmHWM:": &peak} {
			if v, ok := strings.CutPrefix(line, name); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return 0, 0, err
				}
				*dst, found = kb<<10, found+1
			}
		}
	}
	if found < 2 {
		return 0, 0, errors.New("no VmRSS and VmHWM in /proc status")
	}
	return now, peak, nil
}
