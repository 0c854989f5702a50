package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/netfault"
)

// nodeEnv carries a NATS node's settings (JSON) to the re-executed binary.
const nodeEnv = "VODPIPE_CHAOS_NATS_NODE"

// nodeSpec is one node of the loopback cluster.
type nodeSpec struct {
	Name        string   `json:"name"`
	Port        int      `json:"port"`
	ClusterPort int      `json:"clusterPort"`
	Routes      []string `json:"routes"`
	StoreDir    string   `json:"storeDir"`
}

// MaybeRunNATSNode turns this process into one node of the chaos run's NATS
// cluster when the chaos run started it as such (it re-executes its own
// binary with a setting in the environment), and never returns then. Any
// binary that runs Run must call it before anything else, because the nodes
// are separate processes the run can SIGKILL: `vodpipe` calls it from an
// init function of internal/cli, which also covers its test binary.
// Without the setting it returns at once.
func MaybeRunNATSNode() {
	v := os.Getenv(nodeEnv)
	if v == "" {
		return
	}
	if err := runNode(v); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: NATS node: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runNode(v string) error {
	var spec nodeSpec
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		return err
	}
	opts := &natsserver.Options{
		ServerName: spec.Name, Host: "127.0.0.1", Port: spec.Port,
		JetStream: true, StoreDir: spec.StoreDir, NoSigs: true, NoLog: false, Logtime: true,
		MaxPayload: 8 << 20, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 8 << 30,
		// Clients keep to the URL list they were given (the proxies):
		// the nodes' own addresses are not advertised to them. Nor do
		// the nodes reach each other but through the route proxies: the
		// route address a node tells its peers is one nothing listens on,
		// else a peer that learns it before its proxied route is up
		// connects there directly (an implicit route), and a partition
		// leaves that path open.
		Cluster: natsserver.ClusterOpts{Name: "vodpipe-chaos", Host: "127.0.0.1", Port: spec.ClusterPort, NoAdvertise: true, Advertise: netfault.Nowhere},
		Routes:  natsserver.RoutesFromStr(strings.Join(spec.Routes, ",")),
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return err
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("not ready for connections")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// natsNode is one node process.
type natsNode struct {
	spec nodeSpec
	log  string
	proc *child.Process
}

// cluster is three NATS node processes routed to each other on loopback,
// each path through a netfault proxy: clients reach node i through
// clients[i], and node i reaches node j's routes through routes[i][j].
type cluster struct {
	exe     string
	nodes   []*natsNode
	clients []*netfault.Proxy
	routes  [][]*netfault.Proxy
}

// proxies are every client and route proxy.
func (c *cluster) proxies() []*netfault.Proxy {
	out := append([]*netfault.Proxy(nil), c.clients...)
	for i := range c.routes {
		for j, p := range c.routes[i] {
			if j != i {
				out = append(out, p)
			}
		}
	}
	return out
}

// nodeProxies are node k's paths: its clients', and its routes both ways.
func (c *cluster) nodeProxies(k int) []*netfault.Proxy {
	out := []*netfault.Proxy{c.clients[k]}
	for j := range c.nodes {
		if j != k {
			out = append(out, c.routes[k][j], c.routes[j][k])
		}
	}
	return out
}

// ServicesURL is the URL list the services use: every node's client proxy.
func (c *cluster) ServicesURL() string { return proxiedURL(c.clients) }

// startCluster starts three nodes with their stores under dir.
func startCluster(exe, dir string) (*cluster, error) {
	c := &cluster{exe: exe}
	var ports, cports []int
	for range 3 {
		p, err := child.FreePort()
		if err != nil {
			return nil, err
		}
		cp, err := child.FreePort()
		if err != nil {
			return nil, err
		}
		ports, cports = append(ports, p), append(cports, cp)
	}
	c.routes = make([][]*netfault.Proxy, 3)
	for i := range 3 {
		p, err := netfault.Listen(fmt.Sprintf("nats-n%d-clients", i+1), child.Loopback(ports[i]))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.clients = append(c.clients, p)
		c.routes[i] = make([]*netfault.Proxy, 3)
	}
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j == i {
				continue
			}
			p, err := netfault.Listen(fmt.Sprintf("nats-route-n%d-n%d", i+1, j+1), child.Loopback(cports[j]))
			if err != nil {
				c.stop()
				return nil, err
			}
			c.routes[i][j] = p
			routes = append(routes, "nats://"+p.Addr())
		}
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &natsNode{
			spec: nodeSpec{Name: name, Port: ports[i], ClusterPort: cports[i], Routes: routes, StoreDir: filepath.Join(dir, "nats-"+name)},
			log:  filepath.Join(dir, "nats-"+name+".log"),
		})
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// URL is the client URL list of every node.
func (c *cluster) URL() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, "nats://127.0.0.1:"+strconv.Itoa(n.spec.Port))
	}
	return strings.Join(us, ",")
}

// start (re)starts node i with its ports and store.
func (c *cluster) start(i int) error {
	n := c.nodes[i]
	b, err := json.Marshal(n.spec)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.exe)
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(b))
	p, err := child.Start(cmd, n.log)
	if err != nil {
		return fmt.Errorf("NATS node %s: %w", n.spec.Name, err)
	}
	n.proc = p
	return nil
}

// kill SIGKILLs node i.
func (c *cluster) kill(i int) { c.nodes[i].proc.Kill() }

func (c *cluster) stop() {
	for _, n := range c.nodes {
		if n.proc != nil {
			n.proc.Stop(5 * time.Second)
		}
	}
	for _, p := range c.proxies() {
		if p != nil {
			_ = p.Close()
		}
	}
}

// waitJetStream waits until the cluster can place a stream on all three
// nodes (a meta leader alone is not enough: with a node missing, every
// stream at 3 replicas is refused "no suitable peers for placement"), by
// creating a probe stream at 3 replicas and deleting it. A node that ended
// meanwhile fails the wait with the end of its log.
func (c *cluster) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	probe := jetstream.StreamConfig{Name: "CHAOS_PROBE", Subjects: []string{"chaos.probe"}, Replicas: 3, Storage: jetstream.MemoryStorage}
	for {
		for _, n := range c.nodes {
			if n.proc.Exited() {
				return fmt.Errorf("NATS node %s ended (%v):\n%s", n.spec.Name, n.proc.Cmd.ProcessState, n.proc.LogTail(2048))
			}
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateOrUpdateStream(actx, probe)
		if err == nil {
			err = js.DeleteStream(actx, probe.Name)
		}
		acancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			var logs strings.Builder
			for _, n := range c.nodes {
				fmt.Fprintf(&logs, "\nNATS node %s log:\n%s", n.spec.Name, n.proc.LogTail(1024))
			}
			return fmt.Errorf("NATS cluster cannot place a stream on 3 nodes: %w%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
