package helm_test

// Properties a production install needs, found missing by a review of the
// chart (each failed before 0.10): each renders the chart with given values.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestServicePortsAreUnique: the API server refuses a Service with two
// ports of the same (port, protocol) (ValidateService, pkg/apis/core/validation:
// "Check for duplicate Ports, considering (protocol,port) pairs"). Without
// metrics.adminPort the chart gives ingest, notify and vodsim both http:P and
// metrics:P until 0.10, so the default install failed at the API server; the
// metrics port takes metrics.servicePort now.
func TestServicePortsAreUnique(t *testing.T) {
	for _, args := range [][]string{
		{"-f", natsUsersValues},
		{"-f", natsUsersValues, "--set", "vodsim.enabled=true"},
		{"-f", natsUsersValues, "--set", "metrics.adminPort=9090"},
	} {
		r := render(t, args...)
		for n, s := range r.services {
			seen := map[string]string{}
			for _, p := range s.Spec.Ports {
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				key := fmt.Sprintf("%d/%s", p.Port, proto)
				if other, dup := seen[key]; dup {
					t.Errorf("%v: Service %s: ports %q and %q are both %s: the API server refuses it (spec.ports: Duplicate value)",
						args, n, other, p.Name, key)
				}
				seen[key] = p.Name
			}
		}
	}
}

// TestRedisWaitReplicasZeroIsKept: the schema accepts redis.waitReplicas: 0
// (integer); until 0.10 `with .waitReplicas` dropped a 0, and a Sentinel setup
// got the service's default "auto" = 1 instead of the 0 asked for.
func TestRedisWaitReplicasZeroIsKept(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "redis.addrs={sentinel:26379}", "--set", "redis.masterName=mymaster",
		"--set", "redis.waitReplicas=0")
	got, ok := r.configMaps["vodpipe-worker"].Data["VODPIPE_REDIS_WAIT_REPLICAS"]
	if !ok || got != "0" {
		t.Errorf("redis.waitReplicas=0: worker VODPIPE_REDIS_WAIT_REPLICAS = %q (set: %v), want \"0\" (unset means auto = 1 with Sentinel)", got, ok)
	}
}

// TestKEDAWatchesTheVODPIPEAccount: with the NATS users the chart requires
// (`vodpipe nats-config`), VODPIPE_JOBS lives in account VODPIPE
// (natsperm.SharedAccount), not in $G, the default until 0.10: a trigger on $G
// cannot see the backlog.
func TestKEDAWatchesTheVODPIPEAccount(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "worker.keda.enabled=true")
	so := r.scaledObjects["vodpipe-worker"]
	if so == nil || len(so.Spec.Triggers) != 1 {
		t.Fatalf("no ScaledObject vodpipe-worker with one trigger: %+v", so)
	}
	if got := so.Spec.Triggers[0].Metadata["account"]; got != "VODPIPE" {
		t.Errorf("KEDA trigger account = %q by default, want VODPIPE (the account `vodpipe nats-config` puts VODPIPE_JOBS in)", got)
	}
}

// TestMemoryLimitFollowsTheContainers: the services run with GOGC=400 while
// their live heap is small (internal/gctune): without a memory limit the heap
// may grow to five times what is live before a collection, past the
// container's limit. The chart passes the container's limit
// (VODPIPE_MEMORY_LIMIT, from the downward API), and the service holds its
// heap under nine tenths of it (gctune.LimitMemory); until 0.10 it passed
// none.
func TestMemoryLimitFollowsTheContainers(t *testing.T) {
	r := render(t, "-f", natsUsersValues)
	for _, c := range []string{"ingest", "worker", "notify"} {
		ct := container(t, r.deployments["vodpipe-"+c], c)
		e := findEnv(ct.Env, "VODPIPE_MEMORY_LIMIT")
		if e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			t.Errorf("%s: VODPIPE_MEMORY_LIMIT = %+v, want the container's limits.memory", c, e)
		}
	}
}

// TestScrapersDoNotReachTheAPIWithAnAdminListener: with metrics.adminPort,
// /metrics has a port of its own, and networkPolicy.metricsFrom is no peer of
// the API port of ingest and notify (until 0.10 it was: the monitoring
// namespace could call POST /v1/signatures and the job API).
func TestScrapersDoNotReachTheAPIWithAnAdminListener(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "metrics.adminPort=9090", "--set", "networkPolicy.enabled=true",
		"--set", "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.role=ingress",
		"--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.role=monitoring")
	for _, c := range []string{"ingest", "notify"} {
		np := r.netpols["vodpipe-"+c]
		if np == nil {
			t.Fatalf("no NetworkPolicy vodpipe-%s", c)
		}
		for _, rule := range np.Spec.Ingress {
			if !slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.String() == "http" }) {
				continue
			}
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil && peer.NamespaceSelector.MatchLabels["role"] == "monitoring" {
					t.Errorf("%s: the API port admits networkPolicy.metricsFrom although /metrics is on the admin port", c)
				}
			}
		}
	}
}

// TestEnvOverridesWithAnEmptyValue: "<component>.env ... they override the
// chart's", an empty value too (e.g. VODPIPE_NOTIFY_URL: "", which turns the
// console's webhook pages off); until 0.10 sprig's merge filled it from the
// chart's map.
func TestEnvOverridesWithAnEmptyValue(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set-string", "ingest.env.VODPIPE_NOTIFY_URL=")
	if got := r.configMaps["vodpipe-ingest"].Data["VODPIPE_NOTIFY_URL"]; got != "" {
		t.Errorf("ingest.env.VODPIPE_NOTIFY_URL=\"\": ConfigMap has %q, want \"\" (the override)", got)
	}
}

// TestIngestDrainsBeforeItStopsListening: at SIGTERM, kube-proxy and
// ingress controllers go on sending ingest new connections until the
// endpoint's removal has spread; ingest closed its listener at once, so a
// rollout refused requests (until 0.10). The chart has it go on serving for
// a drain delay (its readiness failing meanwhile), within its grace period
// with the 15 s its server's shutdown takes.
func TestIngestDrainsBeforeItStopsListening(t *testing.T) {
	r := render(t, "-f", natsUsersValues)
	cm := r.configMaps["vodpipe-ingest"]
	if cm == nil || cm.Data["VODPIPE_HTTP_DRAIN_DELAY"] != "5s" {
		t.Fatalf("ingest's config: VODPIPE_HTTP_DRAIN_DELAY = %q, want 5s", cm.Data["VODPIPE_HTTP_DRAIN_DELAY"])
	}
	d := r.deployments["vodpipe-ingest"]
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 5+15 {
		t.Fatalf("ingest's grace period %v does not cover the drain (5 s) and the shutdown (15 s)", g)
	}
}

// TestComponentsUpgradeOneAtATime: docs/operations.md has an upgrade roll
// ingest first, then the workers, then notify; with one image value for
// all (until 0.10) `helm upgrade` rolled all three at once. A component's
// imageTag sets its image alone.
func TestComponentsUpgradeOneAtATime(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "image.tag=0.9.0", "--set", "ingest.imageTag=0.10.0")
	for c, want := range map[string]string{"ingest": "0.10.0", "worker": "0.9.0", "notify": "0.9.0"} {
		if img := container(t, r.deployments["vodpipe-"+c], c).Image; !strings.HasSuffix(img, ":"+want) {
			t.Errorf("%s runs %s, want tag %s", c, img, want)
		}
	}
}
