package child

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterOptions shape a Redis Cluster.
type ClusterOptions struct {
	// Primaries is the number of nodes, each owning an equal share of the
	// 16384 slots (3).
	Primaries int
	// Announce gives the address node i is known by (to the other nodes'
	// redirections and to clients), e.g. a proxy in front of it; nil: its
	// own. The cluster bus between nodes is not proxied.
	Announce func(i int, addr string) (string, error)
	// Extra are more redis-server arguments.
	Extra []string
}

// Cluster is a Redis Cluster of child processes, primaries only.
type Cluster struct {
	Nodes []*Redis
	// Announced is the address each node is known by; IDs their node ids.
	Announced, IDs []string
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// StartCluster starts the nodes in dir (a folder each), gives each an equal
// range of slots, introduces them and waits until every node sees the
// cluster whole. The caller stops it.
func StartCluster(ctx context.Context, dir string, o ClusterOptions) (_ *Cluster, err error) {
	if o.Primaries == 0 {
		o.Primaries = 3
	}
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for i := range o.Primaries {
		bus, err := FreePort()
		if err != nil {
			return nil, err
		}
		// The announced port is known only once the node has one: it is set
		// at runtime, and kept in the arguments for a restart.
		r, addr, err := startAnnounced(ctx, dir, i, append([]string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(bus), "--cluster-announce-ip", "127.0.0.1", "--cluster-announce-bus-port", strconv.Itoa(bus)},
			o.Extra...), o.Announce,
			func(_, port string) []string { return []string{"cluster-announce-port", port} })
		if r != nil {
			c.Nodes = append(c.Nodes, r)
		}
		if err != nil {
			return nil, err
		}
		c.Announced = append(c.Announced, addr)
		id, err := r.str(ctx, "CLUSTER", "MYID")
		if err != nil {
			return nil, err
		}
		c.IDs = append(c.IDs, id)
		lo, hi := i*clusterSlots/o.Primaries, (i+1)*clusterSlots/o.Primaries-1
		if err := r.do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return nil, err
		}
	}
	for i := 1; i < len(c.Nodes); i++ {
		host, port, _ := net.SplitHostPort(c.Nodes[0].Addr)
		if err := c.Nodes[i].do(ctx, "CLUSTER", "MEET", host, port, busPort(c.Nodes[0])); err != nil {
			return nil, err
		}
	}
	return c, c.waitWhole(ctx)
}

// busPort is the node's cluster bus port, from its arguments.
func busPort(r *Redis) string {
	for i, a := range r.args {
		if a == "--cluster-port" && i+1 < len(r.args) {
			return r.args[i+1]
		}
	}
	return ""
}

// waitWhole waits until every node answers cluster_state:ok and knows
// every other node and every slot's owner as the others do.
func (c *Cluster) waitWhole(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := c.whole(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not whole: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) whole(ctx context.Context) error {
	var first string
	for i, n := range c.Nodes {
		info, err := n.str(ctx, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r\n", len(c.Nodes))) {
			return fmt.Errorf("node %d: not ok or not every node known yet", i)
		}
		owners, err := c.owners(ctx, i)
		if err != nil {
			return err
		}
		if i == 0 {
			first = owners
		} else if owners != first {
			return fmt.Errorf("node %d sees other slot owners than node 0", i)
		}
	}
	return nil
}

// owners is node i's view of the slot ranges and their owners.
func (c *Cluster) owners(ctx context.Context, i int) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[i].Addr, MaxRetries: -1})
	defer cl.Close()
	shards, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		return "", err
	}
	var parts []string
	for _, sh := range shards {
		for _, r := range sh.Slots {
			parts = append(parts, fmt.Sprintf("%d-%d:%s", r.Start, r.End, primaryOf(sh)))
		}
	}
	slices.Sort(parts) // shards come in no set order
	return strings.Join(parts, ";"), nil
}

// primaryOf is the id of the shard's primary.
func primaryOf(sh redis.ClusterShard) string {
	for _, n := range sh.Nodes {
		if n.Role == "master" {
			return n.ID
		}
	}
	return ""
}

// Addrs are the nodes' announced addresses (VODPIPE_REDIS_ADDRS).
func (c *Cluster) Addrs() []string { return c.Announced }

// SlotOf is the hash slot of key, asked of node 0.
func (c *Cluster) SlotOf(ctx context.Context, key string) (int, error) {
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr, MaxRetries: -1})
	defer cl.Close()
	n, err := cl.ClusterKeySlot(ctx, key).Result()
	return int(n), err
}

// Owner is the node that owns slot, as node 0 sees it.
func (c *Cluster) Owner(ctx context.Context, slot int) (int, error) {
	id, err := c.ownerSeenBy(ctx, 0, slot)
	if err != nil {
		return -1, err
	}
	if i := slices.Index(c.IDs, id); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("slot %d has no known owner", slot)
}

// MoveSlot moves slot from node from to node to while clients use it, as
// `redis-cli --cluster reshard` does: the target imports, the source
// migrates, the keys go over in batches with MIGRATE (clients meanwhile
// get ASK for keys already moved, TRYAGAIN for a command whose keys are
// split), then every node learns the new owner. It returns the number of
// keys moved.
func (c *Cluster) MoveSlot(ctx context.Context, slot, from, to int) (int, error) {
	src, dst := c.Nodes[from], c.Nodes[to]
	if err := dst.do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.IDs[from]); err != nil {
		return 0, fmt.Errorf("importing: %w", err)
	}
	if err := src.do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.IDs[to]); err != nil {
		return 0, fmt.Errorf("migrating: %w", err)
	}
	cl := redis.NewClient(&redis.Options{Addr: src.Addr, MaxRetries: -1})
	defer cl.Close()
	host, port, _ := net.SplitHostPort(dst.Addr)
	moved := 0
	for {
		keys, err := cl.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return moved, err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := cl.Do(ctx, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return moved, fmt.Errorf("migrate: %w", err)
		}
		moved += len(keys)
	}
	// The target's config epoch first becomes the cluster's greatest, so
	// that its claim wins over a gossip message the source sent before it
	// let the slot go (with an older epoch winning, the target handed the
	// slot back to a source that redirected to the target: MOVED both ways
	// for good, as one chaos-cluster run found).
	if err := dst.do(ctx, "CLUSTER", "BUMPEPOCH"); err != nil {
		return moved, fmt.Errorf("bumpepoch: %w", err)
	}
	// The target first, so that it answers for the slot before the source
	// starts redirecting there (the order redis-cli uses).
	for _, i := range append([]int{to, from}, c.others(from, to)...) {
		if err := c.Nodes[i].do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", c.IDs[to]); err != nil {
			return moved, fmt.Errorf("setslot node on %d: %w", i, err)
		}
	}
	return moved, c.settle(ctx, slot, to)
}

// settle waits until every node sees node to own slot, telling a node that
// does not again (as `redis-cli --cluster fix` would).
func (c *Cluster) settle(ctx context.Context, slot, to int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		agreed := true
		for i := range c.Nodes {
			owner, err := c.ownerSeenBy(ctx, i, slot)
			if err != nil {
				return fmt.Errorf("slot %d: %w", slot, err)
			}
			if owner != c.IDs[to] {
				agreed = false
				_ = c.Nodes[i].do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", c.IDs[to])
			}
		}
		if agreed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("slot %d: the nodes do not agree on its owner: %w", slot, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ownerSeenBy is the id of the node that node i sees own slot.
func (c *Cluster) ownerSeenBy(ctx context.Context, i, slot int) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: c.Nodes[i].Addr, MaxRetries: -1})
	defer cl.Close()
	shards, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if int(r.Start) <= slot && slot <= int(r.End) {
				return primaryOf(sh), nil
			}
		}
	}
	return "", nil
}

func (c *Cluster) others(a, b int) []int {
	var o []int
	for i := range c.Nodes {
		if i != a && i != b {
			o = append(o, i)
		}
	}
	return o
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, r := range c.Nodes {
		if r.proc != nil && !r.proc.Exited() {
			_ = r.Stop()
		}
	}
}

// str runs one command on r and returns its answer as a string.
func (r *Redis) str(ctx context.Context, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	return c.Do(ctx, args...).Text()
}
