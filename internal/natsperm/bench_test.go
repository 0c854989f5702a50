//go:build unix

package natsperm_test

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsperm"
)

// BenchmarkAccountIsolation is what the accounts of natsperm cost: a
// status-sized key-value put and get from ingest's user, in the shared
// account, and from a worker's, whose requests cross into it through
// service imports (the server adds the requester's identity to each and
// maps each answer back). The server runs in this process, so the CPU time
// per operation (cpu-µs/op) holds the client's and the server's.
func BenchmarkAccountIsolation(b *testing.B) {
	g := startGuarded(b)
	val := make([]byte, 600) // about a status's JSON
	for i := range val {
		val[i] = 'x'
	}
	for _, role := range []natsperm.Role{natsperm.Ingest, natsperm.Worker} {
		nc, _ := g.connect(b, role)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		kv, err := js.KeyValue(b.Context(), "vodpipe_status")
		if err != nil {
			b.Fatal(err)
		}
		prefix := "bench-" + string(role) + "-"
		// The keys the gets read, whatever ran before them.
		for i := range benchKeys {
			if _, err := kv.Put(b.Context(), prefix+strconv.Itoa(i), val); err != nil {
				b.Fatal(err)
			}
		}
		var next atomic.Int64
		b.Run(string(role)+"/put", func(b *testing.B) {
			cpuPerOp(b, func() error {
				_, err := kv.Put(b.Context(), prefix+strconv.FormatInt(next.Add(1)%benchKeys, 10), val)
				return err
			})
		})
		b.Run(string(role)+"/get", func(b *testing.B) {
			cpuPerOp(b, func() error {
				_, err := kv.Get(b.Context(), prefix+strconv.FormatInt(next.Add(1)%benchKeys, 10))
				return err
			})
		})
	}
}

// benchKeys is how many keys each role's operations go over.
const benchKeys = 10000

// cpuPerOp runs op from 32 goroutines per CPU (64 on 2 cores: a worker's
// jobs in flight) and reports the process's CPU time per operation.
func cpuPerOp(b *testing.B, op func() error) {
	b.SetParallelism(32)
	start := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
