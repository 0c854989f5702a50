package chaos

// The faults of a chaos run, injected on a schedule while jobs run.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// runFaults kills a random worker every KillEvery and restarts it; with
// the first kill it also SIGKILLs one NATS node and restarts it on its
// store KillEvery later, with the second it strikes Redis (redisSetup's
// fault: a failover or a reshard), with the next
// ones it SIGKILLs and restarts notify and then ingest (crashedServices),
// and then it closes scheduled. Like a process supervisor it also restarts a worker
// that ended by itself. It runs until ctx ends, and restarts the NATS node
// on its way out if it is still down, so the checks meet a whole cluster.
func runFaults(ctx context.Context, rng *rand.Rand, o Options, cl *cluster, rd *redisSetup, sys *services, ws *workerSetup,
	workers []*child.WorkerProcess, rep *Report, scheduled chan<- struct{}, logf func(string, ...any)) (err error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	nextKill := time.Now().Add(o.KillEvery)
	var natsBack time.Time // when the killed NATS node is restarted
	down := -1             // the killed NATS node
	step := 0
	defer func() {
		if herr := rd.heal(context.WithoutCancel(ctx)); herr != nil && err == nil {
			err = fmt.Errorf("redis: start again what is down: %w", herr)
		}
		if down >= 0 && err == nil {
			if err = cl.start(down); err == nil {
				rep.NATSRestarts++
				logf("NATS node %s restarted on its store", cl.nodes[down].spec.Name)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for i, w := range workers {
			if !w.Exited() {
				continue
			}
			rep.WorkerExits++
			logf("worker %s ended by itself (%v): %s; restarted", w.ID, w.Cmd.ProcessState, lastLine(w.LogTail(512)))
			nw, err := ws.startWorker(w.ID)
			if err != nil {
				return err
			}
			workers[i] = nw
		}
		if down >= 0 && time.Now().After(natsBack) {
			if err := cl.start(down); err != nil {
				return err
			}
			rep.NATSRestarts++
			logf("NATS node %s restarted on its store", cl.nodes[down].spec.Name)
			down = -1
		}
		if step >= len(crashedServices())+3 && down < 0 && scheduled != nil {
			close(scheduled) // the NATS node, Redis and the services went down and came back
			scheduled = nil
		}
		if time.Now().Before(nextKill) {
			continue
		}
		nextKill = time.Now().Add(o.KillEvery)
		step++
		i := rng.IntN(len(workers))
		if o.Soak > 0 && len(workers) > 1 {
			i = 1 + rng.IntN(len(workers)-1) // w1 lives all along: its series are whole
		}
		workers[i].Kill()
		rep.WorkerKills++
		w, err := ws.startWorker(workers[i].ID)
		if err != nil {
			return err
		}
		workers[i] = w
		logf("SIGKILL worker %s, restarted", w.ID)

		switch faultAt(step, o) {
		case 1:
			down = rng.IntN(len(cl.nodes))
			cl.kill(down)
			natsBack = time.Now().Add(o.KillEvery)
			logf("SIGKILL NATS node %s", cl.nodes[down].spec.Name)
		case 2:
			if err := rd.fault(context.WithoutCancel(ctx), rep, logf); err != nil {
				return err
			}
		case 0:
		default:
			k := faultAt(step, o) - 3
			if crash := crashedServices(); k < len(crash) {
				if err := sys.crash(crash[k]); err != nil {
					return err
				}
				rep.ServiceCrashes = append(rep.ServiceCrashes, crash[k])
				logf("SIGKILL %s, restarted", crash[k])
			} else if k == len(crash) {
				if err := storageFull(ctx, sys, rep, logf); err != nil {
					return err
				}
			}
		}
	}
}

// faultAt is the fault that goes with the step-th worker kill: 1 a NATS
// node, 2 Redis, 3 and 4 notify and ingest crashed, 5 the store full, then
// nothing (0). A soak repeats the NATS node, Redis and the full store every
// ten kills and crashes no service (their series are sampled whole).
func faultAt(step int, o Options) int {
	if o.Soak == 0 {
		return step
	}
	switch step % 10 {
	case 1:
		return 1
	case 4:
		return 2
	case 7:
		return 3 + len(crashedServices())
	}
	return 0
}

// storageFullHold is how long vodsim's store is out of space, at least;
// storageFullMaxHold at most, while no body is refused.
const (
	storageFullHold    = 4 * time.Second
	storageFullMaxHold = 30 * time.Second
)

// storageFull makes vodsim's store out of space for storageFullHold (held
// up to storageFullMaxHold until a body is refused), then gives the space
// back. Jobs refused wait, their runs not used up, and resume.
func storageFull(ctx context.Context, sys *services, rep *Report, logf func(string, ...any)) error {
	before, err := sys.simStorageRefusals()
	if err != nil {
		return err
	}
	if err := sys.simFaults(func(f *vodsim.FaultConfig) { f.StorageFull = true }); err != nil {
		return err
	}
	logf("vodsim storage full, for %s", storageFullHold)
	start := time.Now()
	refused := 0
	for {
		if !retry.Sleep(ctx, 100*time.Millisecond) {
			break
		}
		n, err := sys.simStorageRefusals()
		if err == nil {
			refused = n - before
		}
		// Held until a body is refused: the vodsim link may be silent meanwhile (the network's faults).
		if held := time.Since(start); held >= storageFullMaxHold || held >= storageFullHold && refused > 0 {
			break
		}
	}
	if err := sys.simFaults(func(f *vodsim.FaultConfig) { f.StorageFull = false }); err != nil {
		return err
	}
	held := time.Since(start).Round(100 * time.Millisecond)
	rep.StorageRefused += refused // a soak fills the store again and again
	rep.StorageFulls++
	rep.StorageFull = fmt.Sprintf("vodsim's store out of space for %s: %d bodies refused (507), their jobs waited and resumed", held, refused)
	if rep.StorageFulls > 1 {
		rep.StorageFull = fmt.Sprintf("vodsim's store out of space %d times, the last for %s; %d bodies refused (507) in all, their jobs waited and resumed",
			rep.StorageFulls, held, rep.StorageRefused)
	}
	logf("vodsim storage back after %s (%d bodies refused)", held, refused)
	return nil
}

// crashedServices are the services the fault loop SIGKILLs and restarts,
// one at each kill after the NATS node's and Redis's.
func crashedServices() []string { return []string{"notify", "ingest"} }

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
