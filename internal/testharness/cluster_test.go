package testharness

import (
	"strconv"
	"testing"
	"time"
)

// Every route between the cluster's nodes goes through a proxy, so that
// Isolate cuts a node off whole: none is a direct connection to a node's
// route port (an implicit route to the address a peer told).
func TestClusterRoutesGoThroughTheProxies(t *testing.T) {
	t.Parallel()
	c := StartNATSCluster(t)
	direct := map[string]bool{}
	for _, n := range c.Nodes {
		direct[strconv.Itoa(n.Server.ClusterAddr().Port)] = true
	}
	// Each node's pools to both peers are up (3 connections a peer by
	// default); an implicit route would come with them.
	const pool = 3
	WaitFor(t, 30*time.Second, "every pool of routes up", func() bool {
		for _, n := range c.Nodes {
			if rz, err := n.Server.Routez(nil); err != nil || len(rz.Routes) < 2*pool {
				return false
			}
		}
		return true
	})
	for i, n := range c.Nodes {
		rz, err := n.Server.Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(rz.Routes) == 0 {
			t.Fatalf("node %d has no routes", i+1)
		}
		for _, r := range rz.Routes {
			if direct[strconv.Itoa(r.Port)] {
				t.Errorf("node %d has a route to %s's own route port %d, not through a proxy", i+1, r.RemoteName, r.Port)
			}
		}
	}
}
