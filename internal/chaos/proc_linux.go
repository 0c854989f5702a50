package chaos

import "syscall"

// childAttr makes the kernel kill a child when the chaos run dies, so an
// interrupted run leaves no NATS node, worker or Redis behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
