package testharness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/netfault"
)

// NATSCluster is three in-process NATS servers with JetStream, routed to
// each other on loopback through netfault proxies, so a test can cut one
// node off from its peers while its own clients stay connected to it.
type NATSCluster struct {
	Nodes []*NATS
	// routes[i][j] carries node i's routes to node j.
	routes [][]*netfault.Proxy
}

// StartNATSCluster starts a three-node cluster, every node's store in a
// fresh temporary directory, and waits until JetStream has a meta leader.
// Everything is stopped at cleanup.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	const size = 3
	dir := t.TempDir()
	cports := make([]int, size)
	for i := range cports {
		p, err := child.FreePort()
		if err != nil {
			t.Fatalf("testharness: cluster port: %v", err)
		}
		cports[i] = p
	}
	c := &NATSCluster{routes: make([][]*netfault.Proxy, size)}
	for i := range size {
		c.routes[i] = make([]*netfault.Proxy, size)
		for j := range size {
			if i == j {
				continue
			}
			p, err := netfault.Listen(fmt.Sprintf("route-n%d-n%d", i+1, j+1), child.Loopback(cports[j]))
			if err != nil {
				t.Fatalf("testharness: route proxy: %v", err)
			}
			t.Cleanup(func() { _ = p.Close() })
			c.routes[i][j] = p
		}
	}
	for i := range size {
		var routes []string
		for j := range size {
			if j != i {
				routes = append(routes, "nats://"+c.routes[i][j].Addr())
			}
		}
		store := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		s, err := natsembed.Start(store, "127.0.0.1", natsserver.RANDOM_PORT, natsembed.WithOptions(func(o *natsserver.Options) {
			o.ServerName = fmt.Sprintf("n%d", i+1)
			// The nodes reach each other through the proxies only. A node
			// tells its peers its route address, and a peer that learns it
			// before its proxied route is up connects there too (an
			// implicit route, part of a pool): the address told is one
			// nothing listens on, so that connection fails and every
			// route goes through a proxy (Routez shows them).
			o.Cluster = natsserver.ClusterOpts{Name: "vodpipe-test", Host: "127.0.0.1", Port: cports[i], NoAdvertise: true, Advertise: netfault.Nowhere}
			o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		}))
		if err != nil {
			t.Fatalf("testharness: cluster node n%d: %v", i+1, err)
		}
		n := &NATS{Server: s, StoreDir: store}
		t.Cleanup(n.Shutdown)
		n.URL = s.ClientURL()
		c.Nodes = append(c.Nodes, n)
	}
	WaitFor(t, 30*time.Second, "a JetStream meta leader with both peers current", func() bool {
		for _, n := range c.Nodes {
			if !n.Server.JetStreamIsLeader() {
				continue
			}
			jsz, err := n.Server.Jsz(nil)
			if err != nil || jsz.Meta == nil || len(jsz.Meta.Replicas) != size-1 {
				return false
			}
			for _, r := range jsz.Meta.Replicas {
				if !r.Current || r.Offline {
					return false
				}
			}
			return true
		}
		return false
	})
	return c
}

// Isolate holds (stalls) every byte between node i and its peers, both
// ways; the connections stay open and the node's clients stay connected
// to it. Rejoin ends it: the bytes held are then delivered.
func (c *NATSCluster) Isolate(i int) { c.setRoutes(i, netfault.Faults{Stall: true}) }

// Rejoin ends Isolate(i).
func (c *NATSCluster) Rejoin(i int) { c.setRoutes(i, netfault.Faults{}) }

func (c *NATSCluster) setRoutes(i int, f netfault.Faults) {
	for j := range c.Nodes {
		if j != i {
			c.routes[i][j].Set(f)
			c.routes[j][i].Set(f)
		}
	}
}

// Held is how many chunks of route traffic waited out an Isolate: evidence
// that the isolation met traffic.
func (c *NATSCluster) Held() int64 {
	var n int64
	for i := range c.routes {
		for j, p := range c.routes[i] {
			if j != i {
				n += p.Held.Load()
			}
		}
	}
	return n
}
