package chaos

// Redis in a chaos run: with Sentinel (a primary and a replica, three
// sentinels; the fault SIGKILLs the primary) or a Cluster (three
// primaries; the fault moves the jobs' slots to other nodes while they
// run). The data nodes are known by their proxies' addresses, so workers,
// replicas and sentinels reach them through the network's faults.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/netfault"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// The Redis modes of Options.Redis.
const (
	RedisSentinel = "sentinel"
	RedisCluster  = "cluster"
)

// redisDownAfter is how long the sentinels wait on a silent Redis primary
// before they fail it over: shorter than the network's 4 s Redis stall, so
// that fault is a failover too.
const redisDownAfter = 2 * time.Second

// redisSetup is the run's Redis: what workers are given, the fault the
// fault loop strikes it with, and how to stop it.
type redisSetup struct {
	addrs  []string // VODPIPE_REDIS_ADDRS
	master string   // VODPIPE_REDIS_MASTER_NAME (Sentinel)
	fault  func(ctx context.Context, rep *Report, logf func(string, ...any)) error
	// heal starts again the nodes that are down (a failover the run's end
	// cut short): the checks, and the last jobs' commits, meet a whole group.
	heal func(ctx context.Context) error
	stop func()
}

// startRedis starts Redis in mode with a proxy in n for every data node.
func startRedis(ctx context.Context, mode, dir string, jobs []*job.Job, n *network, logf func(string, ...any)) (*redisSetup, error) {
	announce := func(i int, addr string) (string, error) {
		p, err := netfault.Listen(fmt.Sprintf("redis-%d", i), addr)
		if err != nil {
			return "", err
		}
		n.redis = append(n.redis, p)
		return p.Addr(), nil
	}
	// Append-only with every write synced, as production runs it.
	aof := []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}
	switch mode {
	case RedisSentinel:
		rg, err := child.StartSentinel(ctx, dir, child.SentinelOptions{DownAfter: redisDownAfter, Extra: aof, Announce: announce})
		if err != nil {
			return nil, err
		}
		n.redisTarget = func(ctx context.Context) (int, error) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return rg.WaitPrimary(ctx, -1) // not in the middle of a failover
		}
		n.redisStall = "Redis primary silent (half-open) to workers, replica and sentinels"
		logf("redis: primary %s, replica %s (append-only, through proxies), sentinels %s", rg.Announced[0], rg.Announced[1], strings.Join(rg.Addrs(), ","))
		return &redisSetup{addrs: rg.Addrs(), master: child.SentinelMaster, stop: rg.Stop,
			fault: func(ctx context.Context, rep *Report, logf func(string, ...any)) error {
				return redisFailover(ctx, rg, rep, logf)
			},
			heal: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				n, err := rg.Heal(ctx)
				if n > 0 {
					logf("redis: %d node(s) down at the end started again as replicas", n)
				}
				return err
			}}, nil
	case RedisCluster:
		rc, err := child.StartCluster(ctx, dir, child.ClusterOptions{Extra: aof, Announce: announce})
		if err != nil {
			return nil, err
		}
		n.redisTarget = func(context.Context) (int, error) { return 0, nil }
		n.redisStall = "Redis Cluster node 0 silent (half-open) to workers"
		logf("redis: cluster of %s (append-only, through proxies)", strings.Join(rc.Addrs(), ","))
		return &redisSetup{addrs: rc.Addrs(), stop: rc.Stop, heal: func(context.Context) error { return nil },
			fault: func(ctx context.Context, rep *Report, logf func(string, ...any)) error {
				return redisReshard(ctx, rc, jobs, rep, logf)
			}}, nil
	}
	return nil, fmt.Errorf("chaos: Redis mode %q: want %s or %s", mode, RedisSentinel, RedisCluster)
}

// redisFailover SIGKILLs the Redis primary, waits until the sentinels have
// promoted the replica (that one answers as primary) and starts the old
// primary again as its replica.
func redisFailover(ctx context.Context, rg *child.Sentinel, rep *Report, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	old, err := rg.KillPrimary(ctx)
	if err != nil {
		return fmt.Errorf("redis failover: %w", err)
	}
	logf("SIGKILL Redis primary %s", rg.Announced[old])
	now, err := rg.WaitPrimary(ctx, old)
	if err != nil {
		return fmt.Errorf("redis failover: %w", err)
	}
	took := time.Since(start)
	if err := rg.Rejoin(ctx, old); err != nil {
		return fmt.Errorf("redis failover: %w", err)
	}
	rep.RedisFaults++
	rep.RedisFault = fmt.Sprintf("primary %s SIGKILLed, replica %s promoted by the sentinels in %s, the old primary back as its replica",
		rg.Announced[old], rg.Announced[now], took.Round(100*time.Millisecond))
	logf("redis: %s", rep.RedisFault)
	return nil
}

// redisReshard moves the slot of every job (its keys share the job id as
// hash tag) to the next node, one slot after the other, while jobs run.
func redisReshard(ctx context.Context, rc *child.Cluster, jobs []*job.Job, rep *Report, logf func(string, ...any)) error {
	start := time.Now()
	seen := map[int]bool{}
	keys := 0
	for _, j := range jobs {
		slot, err := rc.SlotOf(ctx, "{"+j.ID+"}")
		if err != nil {
			return fmt.Errorf("redis reshard: %w", err)
		}
		if seen[slot] {
			continue
		}
		seen[slot] = true
		from, err := rc.Owner(ctx, slot)
		if err != nil {
			return fmt.Errorf("redis reshard: %w", err)
		}
		n, err := rc.MoveSlot(ctx, slot, from, (from+1)%len(rc.Nodes))
		if err != nil {
			return fmt.Errorf("redis reshard: slot %d: %w", slot, err)
		}
		keys += n
	}
	rep.RedisFaults++
	rep.RedisFault = fmt.Sprintf("the slots of all %d jobs (%d slots, %d keys) moved to the next node in %s while jobs ran",
		len(jobs), len(seen), keys, time.Since(start).Round(100*time.Millisecond))
	logf("redis: %s", rep.RedisFault)
	return nil
}
