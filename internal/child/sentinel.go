package child

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// startAnnounced starts data node i of a group in dir/redis-<i> with args
// and makes it announce its address (announce's, or its own): settings
// gives the settings that say so, set at once and kept in its arguments so
// that a restart announces the same. The node is returned with the error
// of a later step, for the caller to stop.
func startAnnounced(ctx context.Context, dir string, i int, args []string, announce func(int, string) (string, error),
	settings func(host, port string) []string) (*Redis, string, error) {
	ndir := filepath.Join(dir, fmt.Sprintf("redis-%d", i))
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, "", err
	}
	r, err := StartRedis(ctx, ndir, args...)
	if err != nil {
		return nil, "", err
	}
	addr := r.Addr
	if announce != nil {
		if addr, err = announce(i, r.Addr); err != nil {
			return r, "", err
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return r, "", err
	}
	set := []any{"CONFIG", "SET"}
	for k, v := range settings(host, port) {
		if k%2 == 0 {
			r.args = append(r.args, "--"+v)
		} else {
			r.args = append(r.args, v)
		}
		set = append(set, v)
	}
	return r, addr, r.do(ctx, set...)
}

// SentinelMaster is the name the sentinels of StartSentinel watch the
// primary under (VODPIPE_REDIS_MASTER_NAME).
const SentinelMaster = "vodpipe"

// SentinelOptions shape a Sentinel group.
type SentinelOptions struct {
	// Replicas is the number of replicas of the primary (1); Sentinels the
	// number of redis-sentinel processes (3, a quorum of 2).
	Replicas, Sentinels int
	// DownAfter is how long the sentinels wait on a silent primary before
	// they fail it over (1 s).
	DownAfter time.Duration
	// Announce gives the address data node i is known by (to the
	// sentinels, its replicas and the clients), e.g. a proxy in front of
	// it; nil: its own.
	Announce func(i int, addr string) (string, error)
	// Extra are more redis-server arguments for the data nodes.
	Extra []string
}

// Sentinel is a Redis group that fails over: a primary, its replicas and
// the sentinels watching them, each a child process. Nodes[0] starts as the
// primary.
type Sentinel struct {
	Nodes     []*Redis
	Sentinels []*Redis
	// Announced is the address each node is known by (Announce's).
	Announced []string
}

// StartSentinel starts the group in dir (a folder per process; the
// sentinels are redis-server in its sentinel mode) and waits
// until every sentinel watches the primary and knows every replica and
// every other sentinel. The caller stops it.
func StartSentinel(ctx context.Context, dir string, o SentinelOptions) (_ *Sentinel, err error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	g := &Sentinel{}
	defer func() {
		if err != nil {
			g.Stop()
		}
	}()
	for i := range 1 + o.Replicas {
		// A replica syncs at once, not after the primary's 5 s wait for more of them.
		r, addr, err := startAnnounced(ctx, dir, i, append([]string{"--repl-diskless-sync-delay", "0"}, o.Extra...), o.Announce,
			func(host, port string) []string {
				return []string{"replica-announce-ip", host, "replica-announce-port", port}
			})
		if r != nil {
			g.Nodes = append(g.Nodes, r)
		}
		if err != nil {
			return nil, err
		}
		g.Announced = append(g.Announced, addr)
		if i > 0 {
			if err := g.follow(ctx, i, 0); err != nil {
				return nil, err
			}
		}
	}
	host, port, _ := net.SplitHostPort(g.Announced[0])
	for i := range o.Sentinels {
		sdir := filepath.Join(dir, fmt.Sprintf("sentinel-%d", i))
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(sdir, "sentinel.conf")
		// The sentinel rewrites its file as it learns the group.
		text := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s %[4]d\n"+
			"sentinel down-after-milliseconds %[1]s %[5]d\n"+
			"sentinel failover-timeout %[1]s %[6]d\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			SentinelMaster, host, port, o.Sentinels/2+1, o.DownAfter.Milliseconds(), max(3*o.DownAfter, 3*time.Second).Milliseconds())
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		s, err := startRedis(ctx, sdir, []string{conf, "--sentinel"}, "sentinel.log")
		if err != nil {
			return nil, err
		}
		g.Sentinels = append(g.Sentinels, s)
	}
	return g, g.waitKnown(ctx, o.Replicas, o.Sentinels-1)
}

// Addrs are the sentinels' addresses (VODPIPE_REDIS_ADDRS with
// VODPIPE_REDIS_MASTER_NAME).
func (g *Sentinel) Addrs() []string {
	var as []string
	for _, s := range g.Sentinels {
		as = append(as, s.Addr)
	}
	return as
}

// Primary is the node the sentinels name as primary: every sentinel that
// answers names the same one, or an error says what they named.
func (g *Sentinel) Primary(ctx context.Context) (int, error) {
	named := map[string]int{}
	for _, s := range g.Sentinels {
		if s.proc.Exited() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		addr, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		c.Close()
		if err == nil && len(addr) == 2 {
			named[net.JoinHostPort(addr[0], addr[1])]++
		}
	}
	if len(named) != 1 {
		return -1, fmt.Errorf("sentinels name %d primaries: %v", len(named), named)
	}
	for addr := range named {
		for i, a := range g.Announced {
			if a == addr {
				return i, nil
			}
		}
		return -1, fmt.Errorf("sentinels name %s, not a node of the group", addr)
	}
	return -1, errors.New("unreachable")
}

// WaitPrimary waits until the sentinels agree on a primary other than node
// not (-1: any) and that node answers as a primary; it returns its index.
func (g *Sentinel) WaitPrimary(ctx context.Context, not int) (int, error) {
	var last error
	for {
		i, err := g.Primary(ctx)
		if err == nil && i != not {
			role, rerr := g.Nodes[i].role(ctx)
			if rerr == nil && role == "master" {
				return i, nil
			}
			err = fmt.Errorf("node %d is named primary but answers role %q (%v)", i, role, rerr)
		} else if err == nil {
			err = fmt.Errorf("sentinels still name node %d", i)
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no new primary: %w (%w)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KillPrimary SIGKILLs the primary, as a crash would, and returns its index.
func (g *Sentinel) KillPrimary(ctx context.Context) (int, error) {
	i, err := g.Primary(ctx)
	if err != nil {
		return -1, err
	}
	g.Nodes[i].Kill()
	return i, nil
}

// Rejoin starts node i again (after a kill) as a replica of the current
// primary, on its port and files.
func (g *Sentinel) Rejoin(ctx context.Context, i int) error {
	p, err := g.WaitPrimary(ctx, i)
	if err != nil {
		return err
	}
	n := g.Nodes[i]
	if !n.proc.Exited() {
		n.proc.Stop(5 * time.Second)
	}
	host, port, _ := net.SplitHostPort(g.Announced[p])
	args := n.args
	if k := slices.Index(args, "--replicaof"); k >= 0 {
		args = append(args[:k:k], args[k+3:]...)
	}
	n.args = append(args, "--replicaof", host, port)
	return n.start(ctx)
}

// Heal starts again, as replicas of the current primary, the nodes that
// are down; it returns how many it started.
func (g *Sentinel) Heal(ctx context.Context) (int, error) {
	n := 0
	for i, node := range g.Nodes {
		if node.proc != nil && node.proc.Exited() {
			if err := g.Rejoin(ctx, i); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// follow makes node i a replica of node p.
func (g *Sentinel) follow(ctx context.Context, i, p int) error {
	host, port, _ := net.SplitHostPort(g.Announced[p])
	return g.Nodes[i].do(ctx, "REPLICAOF", host, port)
}

// waitKnown waits until every sentinel knows the replicas and the other
// sentinels, and every replica is in sync.
func (g *Sentinel) waitKnown(ctx context.Context, replicas, peers int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := g.known(ctx, replicas, peers)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis sentinel group not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *Sentinel) known(ctx context.Context, replicas, peers int) error {
	for _, s := range g.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		rs, err := c.Replicas(ctx, SentinelMaster).Result()
		var ps []map[string]string
		if err == nil {
			ps, err = c.Sentinels(ctx, SentinelMaster).Result()
		}
		c.Close()
		if err != nil {
			return err
		}
		up := 0
		for _, r := range rs {
			if !strings.Contains(r["flags"], "down") && r["master-link-status"] == "ok" {
				up++
			}
		}
		if up < replicas || len(ps) < peers {
			return fmt.Errorf("sentinel %s knows %d replicas up and %d peers", s.Addr, up, len(ps))
		}
	}
	return nil
}

// Stop stops every process of the group.
func (g *Sentinel) Stop() {
	for _, r := range append(g.Sentinels, g.Nodes...) {
		if r.proc != nil && !r.proc.Exited() {
			_ = r.Stop()
		}
	}
}

// do runs one command on r.
func (r *Redis) do(ctx context.Context, args ...any) error {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	return c.Do(ctx, args...).Err()
}

// role is what ROLE answers first: master, slave or sentinel.
func (r *Redis) role(ctx context.Context) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE answer")
	}
	s, _ := v[0].(string)
	return s, nil
}
