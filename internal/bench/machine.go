package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a run happened, for BENCHMARKS.md.
type Machine struct {
	CPU    string // model name
	CPUs   int
	Memory int64 // bytes
	Kernel string
	Go     string
	OSArch string
}

// String is the machine in one line.
func (m Machine) String() string {
	mem := "memory unknown"
	if m.Memory > 0 {
		mem = fmt.Sprintf("%.1f GiB RAM", float64(m.Memory)/(1<<30))
	}
	return fmt.Sprintf("%s, %d CPUs, %s, %s %s, %s", m.CPU, m.CPUs, mem, m.OSArch, m.Kernel, m.Go)
}

// ReadMachine reads the CPU model and memory from /proc (Linux; unknown elsewhere).
func ReadMachine() Machine {
	m := Machine{CPU: "unknown CPU", CPUs: runtime.NumCPU(), Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		kb, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		m.Memory = kb << 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField is the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
