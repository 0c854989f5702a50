package chaos

// The network faults of a chaos run: a netfault proxy on every path between
// the services and what they use, and a schedule of faults on them while
// jobs run.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/netfault"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// network holds the proxies outside the NATS cluster (the cluster's own,
// on its client and route paths, are in cluster).
type network struct {
	vodsim, receiver *netfault.Proxy
	// redis has a proxy per Redis data node; redisTarget names the one
	// the Redis stall silences (with Sentinel, the primary of the moment).
	redis       []*netfault.Proxy
	redisTarget func(context.Context) (int, error)
	redisStall  string // the stall's name
}

func (n *network) close() {
	for _, p := range append([]*netfault.Proxy{n.vodsim, n.receiver}, n.redis...) {
		if p != nil {
			_ = p.Close()
		}
	}
}

// netPhase is one network fault of the schedule, held for a while on some
// proxies.
type netPhase struct {
	name    string
	proxies []*netfault.Proxy
	faults  netfault.Faults
	hold    time.Duration
	// flowing waits, before the fault, until traffic crosses the proxies
	// (deliveries to the receiver come in bursts as jobs complete).
	flowing bool
	// patience, when set, is how long the fault is held on at most while it
	// meets no traffic (else three times hold).
	patience time.Duration
	// pick, when set, chooses the proxies as the phase begins.
	pick func(context.Context) ([]*netfault.Proxy, error)
	// kind names the fault whatever its target (a soak wants each kind to
	// have met traffic at least once); the name when empty.
	kind string
}

// partitionHold is how long a NATS node is cut off: longer than the
// JetStream election timeout (a few seconds), so its peers elect new
// leaders for what it led, and longer than the clients' write deadline,
// so the server drops the routes and clients that fill up meanwhile.
const partitionHold = 12 * time.Second

// netSchedule is the run's network faults: latency with jitter on every
// path first, then two tracks side by side: a NATS node cut off from its
// peers and its clients, then silent (half-open) connections to the
// webhook receiver; silent connections to Redis, then to vodsim, then a
// slow link to vodsim. So every fault lands early, while many jobs run.
//
// The slow link is a quarter of vodsim's own limit (at most 4 MiB/s), so
// that it is the link that holds the uploads back.
func netSchedule(rng *rand.Rand, o Options, cl *cluster, n *network) (first netPhase, tracks [][]netPhase) {
	all := append(append([]*netfault.Proxy{n.vodsim, n.receiver}, n.redis...), cl.proxies()...)
	k := rng.IntN(len(cl.nodes))
	slow := int64(4 << 20)
	if o.Bandwidth > 0 {
		slow = min(slow, o.Bandwidth/4)
	}
	first = netPhase{name: "latency 30 ms ± 20 ms on every path", proxies: all, faults: netfault.Faults{Latency: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}, hold: 5 * time.Second}
	redisTarget := func(ctx context.Context) ([]*netfault.Proxy, error) {
		// With Sentinel the primary of the moment: after the fault loop's failover, the promoted replica.
		i, err := n.redisTarget(ctx)
		if err != nil {
			return nil, err
		}
		return n.redis[i : i+1], nil
	}
	tracks = [][]netPhase{
		{
			{name: fmt.Sprintf("NATS node %s partitioned from its peers and clients", cl.nodes[k].spec.Name), proxies: cl.nodeProxies(k),
				faults: netfault.Faults{Stall: true}, hold: partitionHold, kind: "NATS node partitioned"},
			// After the partition: deliveries come as jobs complete, which takes a while
			// (after a partition and an ingest kill the jobs may all wait out their
			// retries' backoff for a dozen seconds), hence its patience.
			{name: "webhook receiver silent (half-open)", proxies: []*netfault.Proxy{n.receiver}, faults: netfault.Faults{Stall: true},
				hold: 4 * time.Second, flowing: true, patience: 30 * time.Second},
		},
		{
			// With Sentinel, longer than the sentinels' patience: they fail the silent primary over.
			{name: n.redisStall, pick: redisTarget, faults: netfault.Faults{Stall: true}, hold: 4 * time.Second},
			{name: "vodsim connections silent (half-open)", proxies: []*netfault.Proxy{n.vodsim}, faults: netfault.Faults{Stall: true}, hold: 4 * time.Second},
			{name: fmt.Sprintf("vodsim link limited to %s/s", mib(slow)), proxies: []*netfault.Proxy{n.vodsim}, faults: netfault.Faults{Bandwidth: slow}, hold: 4 * time.Second},
		},
	}
	return first, tracks
}

// longest is how long a phase is held on at most while it waits for
// traffic: its patience when set, else three times its hold.
func (ph netPhase) longest() time.Duration {
	if ph.patience > 0 {
		return ph.patience
	}
	return 3 * ph.hold
}

// runNetwork runs the first phase, then the tracks side by side, each a
// phase after the other with a pause between. Each phase must start with
// jobs running and hold, delay or slow traffic on its proxies (it is held
// on, up to three times as long or its patience, until it does), else it
// tested nothing: a violation.
//
// In a soak (soak set) every phase waits for traffic before it begins
// (jobs come and go, a few at a time), and the soak's end cutting a phase
// short is no violation.
//
// met, when not nil (a soak), takes the kinds of fault that met traffic: a
// soak's phase that meets none (jobs come in bursts there) is no violation
// by itself; the soak wants every kind met at least once.
func runNetwork(ctx context.Context, first netPhase, tracks [][]netPhase, met *metKinds, api *client.Client, rep *Report, logf func(string, ...any)) {
	var mu sync.Mutex
	soak := met != nil
	record := func(violation, held string) {
		mu.Lock()
		defer mu.Unlock()
		if violation != "" && !(soak && (ctx.Err() != nil || strings.Contains(violation, " met no traffic"))) {
			rep.Violations = append(rep.Violations, violation)
		}
		if held != "" {
			rep.NetworkFaults = append(rep.NetworkFaults, held)
		}
	}
	if soak {
		first.flowing = true
		for _, tr := range tracks {
			for i := range tr {
				tr[i].flowing = true
			}
		}
	}
	if !runPhase(ctx, first, api, record, met, logf) {
		return
	}
	var wg sync.WaitGroup
	for _, track := range tracks {
		wg.Go(func() {
			for _, ph := range track {
				if !runPhase(ctx, ph, api, record, met, logf) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// runPhase holds one phase and records it; false when the run ended.
func runPhase(ctx context.Context, ph netPhase, api *client.Client, record func(violation, held string), kinds *metKinds, logf func(string, ...any)) bool {
	if ph.pick != nil {
		ps, err := ph.pick(ctx)
		if err != nil {
			record(fmt.Sprintf("network fault %q: %v", ph.name, err), "")
			return false
		}
		ph.proxies = ps
	}
	if ph.flowing {
		seen, until := forwarded(ph.proxies), time.Now().Add(30*time.Second)
		for forwarded(ph.proxies) == seen && time.Now().Before(until) && retry.Sleep(ctx, 50*time.Millisecond) {
		}
	}
	active, err := activeJobs(ctx, api)
	if err != nil {
		record(fmt.Sprintf("network fault %q: could not count running jobs: %v", ph.name, err), "")
		return false
	}
	met := func() int64 { return traffic(ph.proxies) }
	if ph.faults.Bandwidth > 0 && !ph.faults.Stall {
		// A slow link is in force for whatever crosses it, slowed or not.
		met = func() int64 { return traffic(ph.proxies) + forwarded(ph.proxies) }
	}
	before := met()
	for _, p := range ph.proxies {
		p.Set(ph.faults)
	}
	logf("network: %s, for %s", ph.name, ph.hold)
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		held := time.Since(start)
		if ctx.Err() != nil || held >= ph.longest() || held >= ph.hold && met() > before {
			break
		}
	}
	got, held := met()-before, time.Since(start).Round(100*time.Millisecond)
	for _, p := range ph.proxies {
		p.Set(netfault.Faults{})
	}
	var violation string
	switch {
	case ctx.Err() != nil:
		record(fmt.Sprintf("network fault %q cut short: the run ended", ph.name), "")
		return false
	case active == 0:
		violation = fmt.Sprintf("network fault %q began with no job running: it tested nothing", ph.name)
	case got == 0:
		violation = fmt.Sprintf("network fault %q met no traffic in %s", ph.name, held)
	}
	if got > 0 && active > 0 {
		kinds.add(ph)
	}
	record(violation, fmt.Sprintf("%s (%s, %d chunks held, delayed or slowed, %d jobs running at its start)", ph.name, held, got, active))
	logf("network: %s healed after %s (%d chunks held, delayed or slowed, %d jobs running at its start)", ph.name, held, got, active)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Second):
		return true
	}
}

// metKinds are the kinds of fault that met traffic with jobs running.
type metKinds struct {
	mu    sync.Mutex
	kinds map[string]bool
}

func (m *metKinds) add(ph netPhase) {
	if m == nil {
		return
	}
	k := ph.kind
	if k == "" {
		k = ph.name
	}
	m.mu.Lock()
	m.kinds[k] = true
	m.mu.Unlock()
}

// missing are the kinds of the schedule that never met traffic.
func (m *metKinds) missing(first netPhase, tracks [][]netPhase) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, ph := range append([]netPhase{first}, slices.Concat(tracks...)...) {
		k := ph.kind
		if k == "" {
			k = ph.name
		}
		if !m.kinds[k] && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// traffic is the chunks the proxies held, delayed or slowed so far.
func traffic(ps []*netfault.Proxy) int64 {
	var n int64
	for _, p := range ps {
		n += p.Held.Load() + p.Delayed.Load() + p.Throttled.Load() + p.Refused.Load()
	}
	return n
}

// forwarded is the chunks the proxies forwarded so far.
func forwarded(ps []*netfault.Proxy) int64 {
	var n int64
	for _, p := range ps {
		n += p.Chunks.Load()
	}
	return n
}

// activeJobs counts the jobs not yet finished, through ingest's API (the
// driver reaches ingest directly, never through a proxy), trying again for
// a while: the fault loop may have just SIGKILLed ingest.
func activeJobs(ctx context.Context, api *client.Client) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := api.Counts(ctx)
		if err == nil {
			return c.States[job.StateQueued] + c.States[job.StateRunning] + c.States[job.StatePaused], nil
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// proxiedURL is a URL list with each host:port replaced by its proxy's.
func proxiedURL(ps []*netfault.Proxy) string {
	var us []string
	for _, p := range ps {
		us = append(us, "nats://"+p.Addr())
	}
	return strings.Join(us, ",")
}
