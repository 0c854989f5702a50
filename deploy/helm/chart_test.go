// Package helm_test checks the vodpipe Helm chart offline: it builds Helm from the Go
// module proxy at a pinned version, runs `helm lint` and `helm template`, and decodes
// every rendered manifest strictly into the k8s.io/api types (or, for the KEDA and
// prometheus-operator CRDs, into small structs of the fields the chart uses).
package helm_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// helmVersion is the Helm the chart is checked with (also in deploy/helm/Makefile).
const helmVersion = "v3.22.0"

const (
	chartDir    = "vodpipe"
	allOnValues = "vodpipe/ci/all-on-values.yaml"
	// natsUsersValues gives each service its own NATS user: the chart renders
	// nothing without NATS credentials.
	natsUsersValues = "vodpipe/ci/nats-users-values.yaml"
)

// helmDir holds the Helm binary and Helm's home directories for this test run.
var helmDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if helmDir != "" {
		_ = os.RemoveAll(helmDir)
	}
	os.Exit(code)
}

// buildHelm installs Helm into a temporary GOBIN once per test run. The first build
// compiles Helm (minutes on a small machine); later runs come from the Go build cache.
var buildHelm = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vodpipe-helm-")
	if err != nil {
		return "", err
	}
	helmDir = dir
	cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+helmVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(dir, "bin"), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install helm.sh/helm/v3/cmd/helm@%s: %w\n%s", helmVersion, err, out)
	}
	return filepath.Join(dir, "bin", "helm"), nil
})

// helm runs Helm with its own config, cache and data directories; it returns stdout
// and an error carrying stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := buildHelm()
	if err != nil {
		t.Fatalf("cannot build Helm from the Go module proxy (needed to check the chart; this test never skips): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(helmDir, "config"),
		"HELM_CACHE_HOME="+filepath.Join(helmDir, "cache"),
		"HELM_DATA_HOME="+filepath.Join(helmDir, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func TestChartLint(t *testing.T) {
	for _, values := range [][]string{{"-f", natsUsersValues}, {"-f", allOnValues}} {
		args := append([]string{"lint", "--strict", chartDir}, values...)
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm lint %v: %v", values, err)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint %v:\n%s", values, out)
		}
	}
}

// release is what one `helm template` produced, decoded.
type release struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	pods            map[string]*corev1.Pod
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	netpols         map[string]*networkingv1.NetworkPolicy
	scaledObjects   map[string]*scaledObject
	serviceMonitors map[string]*serviceMonitor
	rules           map[string]*prometheusRule
	ingresses       map[string]*networkingv1.Ingress
	httpRoutes      map[string]*httpRoute
}

// httpRoute is the part of the Gateway API's gateway.networking.k8s.io/v1
// HTTPRoute the chart sets.
type httpRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ParentRefs []map[string]string `json:"parentRefs"`
		Hostnames  []string            `json:"hostnames"`
		Rules      []struct {
			Matches []struct {
				Path struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"path"`
			} `json:"matches"`
			BackendRefs []struct {
				Name string `json:"name"`
				Port int32  `json:"port"`
			} `json:"backendRefs"`
		} `json:"rules"`
	} `json:"spec"`
}

// scaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject the chart sets.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the chart sets.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the chart sets.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// render runs helm template and decodes every document strictly.
func render(t *testing.T, args ...string) *release {
	t.Helper()
	out, err := helm(t, append([]string{"template", "vodpipe", chartDir}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &release{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{}, pods: map[string]*corev1.Pod{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, scaledObjects: map[string]*scaledObject{},
		serviceMonitors: map[string]*serviceMonitor{}, rules: map[string]*prometheusRule{},
		ingresses: map[string]*networkingv1.Ingress{}, httpRoutes: map[string]*httpRoute{},
	}
	for _, doc := range docSeparator.Split(out, -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if tm.Kind == "" && tm.APIVersion == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Fatalf("document without apiVersion/kind:\n%s", doc)
			}
			continue
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		var err error
		switch gvk {
		case "apps/v1/Deployment":
			err = decodeInto(doc, r.deployments)
		case "v1/Service":
			err = decodeInto(doc, r.services)
		case "v1/ConfigMap":
			err = decodeInto(doc, r.configMaps)
		case "v1/Secret":
			err = decodeInto(doc, r.secrets)
		case "v1/ServiceAccount":
			err = decodeInto(doc, r.serviceAccounts)
		case "v1/Pod":
			err = decodeInto(doc, r.pods)
		case "policy/v1/PodDisruptionBudget":
			err = decodeInto(doc, r.pdbs)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			err = decodeInto(doc, r.hpas)
		case "networking.k8s.io/v1/NetworkPolicy":
			err = decodeInto(doc, r.netpols)
		case "keda.sh/v1alpha1/ScaledObject":
			err = decodeInto(doc, r.scaledObjects)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			err = decodeInto(doc, r.serviceMonitors)
		case "monitoring.coreos.com/v1/PrometheusRule":
			err = decodeInto(doc, r.rules)
		case "networking.k8s.io/v1/Ingress":
			err = decodeInto(doc, r.ingresses)
		case "gateway.networking.k8s.io/v1/HTTPRoute":
			err = decodeInto(doc, r.httpRoutes)
		default:
			t.Fatalf("the chart renders %s, which this test does not know: add it here", gvk)
		}
		if err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", gvk, err, doc)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// named is any decoded object with metadata.
type named interface{ GetName() string }

// decodeInto decodes doc strictly (unknown or duplicate fields are errors) into a new T
// and files it by name; a repeated name is an error.
func decodeInto[T any, PT interface {
	*T
	named
}](doc string, into map[string]PT) error {
	obj := PT(new(T))
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		return err
	}
	if obj.GetName() == "" {
		return errors.New("no metadata.name")
	}
	if _, dup := into[obj.GetName()]; dup {
		return fmt.Errorf("%s rendered twice", obj.GetName())
	}
	into[obj.GetName()] = obj
	return nil
}

// renderCase is one set of values and what it must produce.
type renderCase struct {
	name        string
	args        []string
	prefix      string   // resource name prefix (fullname)
	deployments []string // components with a Deployment
	services    []string // Services by name suffix
	hpas        []string // components with an HPA
	keda        bool     // worker scaled by KEDA instead of an HPA
	netpols     int
	monitors    int
	tencent     string // name of the Secret ingest gets the Tencent key from ("" = none)
	vodsim      bool
	check       func(t *testing.T, r *release)
}

var renderCases = []renderCase{
	{
		// The defaults plus what they require: each service's NATS user.
		name: "default", prefix: "vodpipe", args: []string{"-f", natsUsersValues},
		deployments: []string{"ingest", "worker", "notify"},
		services:    []string{"ingest", "notify"},
		hpas:        []string{"ingest", "worker", "notify"},
		check: func(t *testing.T, r *release) {
			w := r.configMaps["vodpipe-worker"].Data
			if got, ok := w["VODPIPE_COS_DIAL_ADDR"]; !ok || got != "" {
				t.Errorf("worker VODPIPE_COS_DIAL_ADDR = %q (set: %v), want empty in production", got, ok)
			}
			wantEnv(t, w, "VODPIPE_VOD_ENDPOINT", "https://vod2.qcloud.com")
			wantEnv(t, w, "VODPIPE_COS_SCHEME", "https")
			wantEnv(t, w, "VODPIPE_REDIS_ADDRS", "redis-master:6379")
			wantEnv(t, w, "VODPIPE_NATS_URL", "nats://nats:4222")
			wantEnv(t, r.configMaps["vodpipe-notify"].Data, "VODPIPE_NOTIFY_HTTP_ADDR", ":8081")
			if _, ok := r.secrets["vodpipe-api-keys"].Data["api-keys"]; !ok {
				t.Error("no generated API key")
			}
			// Secure by default: the signing policy is closed (no allow-list
			// set), the upload page off, and the upload-token keys come from a
			// generated secret that every ingest replica mounts.
			ing := r.configMaps["vodpipe-ingest"].Data
			for _, v := range []string{"VODPIPE_SIGN_PROCEDURES", "VODPIPE_SIGN_STORAGE_REGIONS", "VODPIPE_SIGN_CLASS_IDS", "VODPIPE_SIGN_SUB_APP_IDS"} {
				if got, ok := ing[v]; ok {
					t.Errorf("%s = %q by default, want unset (closed)", v, got)
				}
			}
			wantEnv(t, ing, "VODPIPE_UPLOAD_PAGE", "false")
			d := r.deployments["vodpipe-ingest"]
			c := container(t, d, "ingest")
			if e := findEnv(c.Env, "VODPIPE_UPLOAD_TOKEN_KEYS_FILE"); e == nil ||
				!mountedFileFrom(&d.Spec.Template.Spec, c, e.Value, "vodpipe-upload-tokens") {
				t.Errorf("upload-token keys not mounted from their secret: %+v", e)
			}
			if k := r.secrets["vodpipe-upload-tokens"].Data["keys"]; len(k) < 32 {
				t.Errorf("generated upload-token key is %d bytes, want at least 32", len(k))
			}
			// Losing either key breaks what holds it (sealed webhook secrets,
			// tokens in flight): helm uninstall keeps them.
			for _, n := range []string{"vodpipe-upload-tokens", "vodpipe-webhook-secret-keys"} {
				if got := r.secrets[n].Annotations["helm.sh/resource-policy"]; got != "keep" {
					t.Errorf("Secret %s resource-policy %q, want keep", n, got)
				}
			}
			// The VOD callback is authenticated by default: a generated token, from a Secret.
			wantEnv(t, r.configMaps["vodpipe-notify"].Data, "VODPIPE_CALLBACK_AUTH", "token")
			n := container(t, r.deployments["vodpipe-notify"], "notify")
			if e := findEnv(n.Env, "VODPIPE_CALLBACK_TOKEN"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
				e.ValueFrom.SecretKeyRef.Name != "vodpipe-notify" {
				t.Errorf("notify callback token not from the generated secret: %+v", e)
			}
			if tok := r.secrets["vodpipe-notify"].Data["callback-token"]; len(tok) < 32 {
				t.Errorf("generated callback token %d bytes, want 32 or more", len(tok))
			}
			// Webhook signing secrets are sealed with a generated key notify mounts as a file.
			checkWebhookSecretKeys(t, r.deployments["vodpipe-notify"], "vodpipe-webhook-secret-keys")
			if k, err := base64.StdEncoding.DecodeString(string(r.secrets["vodpipe-webhook-secret-keys"].Data["keys"])); err != nil || len(k) != 32 {
				t.Errorf("generated webhook secret key is not 32 bytes in base64 (%d bytes, %v)", len(k), err)
			}
			// Each service connects as its own NATS user, its password a file
			// of its own secret; no pod sees another service's.
			checkOwnNATSUsers(t, r, map[string]map[string]string{
				"vodpipe-ingest": {"VODPIPE_NATS_PASSWORD_FILE": "vodpipe-nats-ingest"},
				"vodpipe-worker": {"VODPIPE_NATS_PASSWORD_FILE": "vodpipe-nats-worker"},
				"vodpipe-notify": {"VODPIPE_NATS_PASSWORD_FILE": "vodpipe-nats-notify"},
			})
			for _, c := range []string{"ingest", "worker", "notify"} {
				if e := findEnv(container(t, r.deployments["vodpipe-"+c], c).Env, "VODPIPE_NATS_USER"); e == nil || e.Value != c {
					t.Errorf("%s VODPIPE_NATS_USER = %+v, want %s", c, e, c)
				}
			}
		},
	},
	{
		name: "all-on", args: []string{"-f", allOnValues}, prefix: "vp",
		deployments: []string{"ingest", "worker", "notify", "vodsim"},
		services:    []string{"ingest", "notify", "vodsim", "worker-metrics"},
		hpas:        []string{"ingest", "notify"},
		keda:        true, netpols: 4, monitors: 1, tencent: "vp-tencent", vodsim: true,
		check: func(t *testing.T, r *release) {
			wantEnv(t, r.configMaps["vp-notify"].Data, "VODPIPE_PULL_DIAL_ADDR", "vp-vodsim:8190")
			if pr := r.rules["vp"]; pr == nil || pr.Labels["release"] != "prometheus" {
				t.Errorf("PrometheusRule vp missing or without its extra label: %+v", pr)
			} else {
				exprs := map[string]string{}
				for _, g := range pr.Spec.Groups {
					for _, rule := range g.Rules {
						exprs[rule.Alert] = rule.Expr
					}
				}
				if !strings.HasSuffix(exprs["VodpipeQueueBacklog"], "> 5000") || !strings.HasSuffix(exprs["VodpipeJobsFailing"], "> 0.05") {
					t.Errorf("alert thresholds not taken from the values: %q, %q", exprs["VodpipeQueueBacklog"], exprs["VodpipeJobsFailing"])
				}
			}
			wantEnv(t, r.configMaps["vp-worker"].Data, "VODPIPE_REDIS_MASTER_NAME", "mymaster")
			wantEnv(t, r.configMaps["vp-worker"].Data, "VODPIPE_NATS_URL",
				"tls://nats-0.nats-headless:4222,tls://nats-1.nats-headless:4222,tls://nats-2.nats-headless:4222")
			wantEnv(t, r.configMaps["vp-ingest"].Data, "VODPIPE_SIGN_CLASS_IDS", "0,3")
			wantEnv(t, r.configMaps["vp-ingest"].Data, "VODPIPE_SIGN_SUB_APP_IDS", "*")
			wantEnv(t, r.configMaps["vp-ingest"].Data, "VODPIPE_UPLOAD_PAGE", "true")
			n := container(t, r.deployments["vp-notify"], "notify")
			if e := findEnv(n.Env, "VODPIPE_PULL_API_KEY_FILE"); e == nil || !mountedFile(n, e.Value) {
				t.Errorf("notify pull key file not mounted: %+v", e)
			}
			if e := findEnv(n.Env, "VODPIPE_CALLBACK_TOKEN"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("notify callback token not from a secret: %+v", e)
			}
			w := container(t, r.deployments["vp-worker"], "worker")
			for _, name := range []string{"VODPIPE_REDIS_PASSWORD", "SSL_CERT_DIR", "GOMEMLIMIT"} {
				if findEnv(w.Env, name) == nil {
					t.Errorf("worker has no %s", name)
				}
			}
			// ingest and worker have NATS users of their own (a credentials
			// file; an nkey seed with a client certificate), notify falls back
			// to the shared credentials file.
			checkOwnNATSUsers(t, r, map[string]map[string]string{
				"vp-ingest": {"VODPIPE_NATS_CREDS": "vodpipe-nats-ingest"},
				"vp-worker": {"VODPIPE_NATS_NKEY_SEED_FILE": "vodpipe-nats-worker", "VODPIPE_NATS_TLS_CERT": "vodpipe-nats-worker-tls",
					"VODPIPE_NATS_TLS_KEY": "vodpipe-nats-worker-tls", "VODPIPE_NATS_TLS_CA": "vodpipe-nats-worker-tls"},
				"vp-notify": {"VODPIPE_NATS_CREDS": "vodpipe-nats-creds"},
			})
			if !slices.ContainsFunc(w.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/media/in" && m.ReadOnly }) {
				t.Error("worker sources volume not mounted read-only at /media/in")
			}
		},
	},
	{
		// Existing secrets everywhere; Redis from a URL secret.
		name: "existing-secrets", prefix: "vodpipe",
		args: []string{"-f", natsUsersValues, "--set", "tencent.existingSecret=corp-tencent", "--set", "apiKeys.existingSecret=corp-api-keys",
			"--set", "redis.addrs=null", "--set", "redis.urlSecret.name=corp-redis",
			"--set", "notify.pull.enabled=true", "--set", "notify.pull.existingSecret=corp-vod-pull",
			"--set", "worker.autoscaling.enabled=false", "--set", "ingest.uploadTokens.existingSecret=corp-upload-tokens",
			"--set", "notify.webhookSecretKeys.existingSecret=corp-webhook-keys"},
		deployments: []string{"ingest", "worker", "notify"},
		services:    []string{"ingest", "notify"},
		hpas:        []string{"ingest", "notify"},
		tencent:     "corp-tencent",
		check: func(t *testing.T, r *release) {
			if len(r.secrets) != 0 {
				t.Errorf("secrets created although every one exists: %v", keys(r.secrets))
			}
			checkWebhookSecretKeys(t, r.deployments["vodpipe-notify"], "corp-webhook-keys")
			if d := r.deployments["vodpipe-worker"]; d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("worker without autoscaler: replicas %v, want 2", d.Spec.Replicas)
			}
			w := container(t, r.deployments["vodpipe-worker"], "worker")
			if e := findEnv(w.Env, "VODPIPE_REDIS_URL"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "corp-redis" {
				t.Errorf("worker VODPIPE_REDIS_URL not from corp-redis: %+v", e)
			}
		},
	},
	{
		// The older single credentials file, for every service without a user of its own.
		name: "shared-nats-creds", prefix: "vodpipe",
		args:        []string{"--set", "nats.credsSecret.name=corp-nats", "--set", "nats.auth.worker.tokenSecret.name=corp-nats-worker"},
		deployments: []string{"ingest", "worker", "notify"},
		services:    []string{"ingest", "notify"},
		hpas:        []string{"ingest", "worker", "notify"},
		check: func(t *testing.T, r *release) {
			checkOwnNATSUsers(t, r, map[string]map[string]string{
				"vodpipe-ingest": {"VODPIPE_NATS_CREDS": "corp-nats"},
				"vodpipe-worker": {"VODPIPE_NATS_TOKEN_FILE": "corp-nats-worker"},
				"vodpipe-notify": {"VODPIPE_NATS_CREDS": "corp-nats"},
			})
		},
	},
	{
		// vodsim calling notify back (no pull mode): the callback URL carries the token.
		name: "vodsim-callback", prefix: "vp",
		args:        []string{"-f", allOnValues, "--set", "notify.pull.enabled=false"},
		deployments: []string{"ingest", "worker", "notify", "vodsim"},
		services:    []string{"ingest", "notify", "vodsim", "worker-metrics"},
		hpas:        []string{"ingest", "notify"},
		keda:        true, netpols: 4, monitors: 1, tencent: "vp-tencent", vodsim: true,
		check: func(t *testing.T, r *release) {
			v := container(t, r.deployments["vp-vodsim"], "vodsim")
			cb := findEnv(v.Env, "VODPIPE_VODSIM_CALLBACK_URL")
			if cb == nil || cb.Value != "http://vp-notify:8081/v1/vod/callback?token=$(VODSIM_CALLBACK_TOKEN)" {
				t.Fatalf("vodsim callback URL: %+v", cb)
			}
			tok := slices.IndexFunc(v.Env, func(e corev1.EnvVar) bool { return e.Name == "VODSIM_CALLBACK_TOKEN" })
			if tok < 0 || tok > slices.IndexFunc(v.Env, func(e corev1.EnvVar) bool { return e.Name == cb.Name }) {
				t.Error("VODSIM_CALLBACK_TOKEN must be defined before the URL that expands it")
			}
			if _, ok := r.configMaps["vp-notify"].Data["VODPIPE_PULL_DIAL_ADDR"]; ok {
				t.Error("pull mode settings without pull mode")
			}
		},
	},
}

func TestChartRenders(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			name := func(c string) string { return tc.prefix + "-" + c }

			var wantDeps []string
			for _, c := range tc.deployments {
				wantDeps = append(wantDeps, name(c))
			}
			if got := keys(r.deployments); !sameSet(got, wantDeps) {
				t.Errorf("Deployments %v, want %v", got, wantDeps)
			}
			var wantSvcs []string
			for _, c := range tc.services {
				wantSvcs = append(wantSvcs, name(c))
			}
			if got := keys(r.services); !sameSet(got, wantSvcs) {
				t.Errorf("Services %v, want %v", got, wantSvcs)
			}
			if len(r.serviceAccounts) != 1 {
				t.Errorf("ServiceAccounts %v, want one", keys(r.serviceAccounts))
			}
			if len(r.netpols) != tc.netpols {
				t.Errorf("%d NetworkPolicies, want %d", len(r.netpols), tc.netpols)
			}
			if len(r.serviceMonitors) != tc.monitors {
				t.Errorf("%d ServiceMonitors, want %d", len(r.serviceMonitors), tc.monitors)
			}
			if len(r.rules) != tc.monitors {
				t.Errorf("%d PrometheusRules, want %d (one with the ServiceMonitor)", len(r.rules), tc.monitors)
			}
			checkAlerts(t, r)

			checkPods(t, r)
			checkWiring(t, r)
			checkTencentIsolation(t, r, name, tc.tencent)
			checkScaling(t, r, name, tc.hpas, tc.keda)
			checkVodsimMode(t, r, name, tc.vodsim)
			checkHelmTest(t, r, name)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// podSpecs are every pod template and pod of the release, by a readable name.
func (r *release) podSpecs() map[string]*corev1.PodSpec {
	specs := map[string]*corev1.PodSpec{}
	for n, d := range r.deployments {
		specs["Deployment "+n] = &d.Spec.Template.Spec
	}
	for n, p := range r.pods {
		specs["Pod "+n] = &p.Spec
	}
	return specs
}

// checkPods: every container runs as non-root on a read-only root filesystem with no
// capabilities, no privilege escalation and the runtime's seccomp profile; services
// have liveness and readiness probes on their http port.
func checkPods(t *testing.T, r *release) {
	t.Helper()
	for where, spec := range r.podSpecs() {
		if len(spec.InitContainers) != 0 || len(spec.EphemeralContainers) != 0 {
			t.Errorf("%s: unexpected init or ephemeral containers", where)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: service account token mounted", where)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s: shares a host namespace", where)
		}
		psc := spec.SecurityContext
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s/%s: no securityContext", where, c.Name)
				continue
			}
			nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
			uid := sc.RunAsUser
			if uid == nil && psc != nil {
				uid = psc.RunAsUser
			}
			if !nonRoot || (uid != nil && *uid == 0) {
				t.Errorf("%s/%s: may run as root", where, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s: root filesystem writable", where, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: privilege escalation allowed", where, c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s/%s: privileged", where, c.Name)
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and no add", where, c.Name, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil && psc != nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s/%s: seccomp profile %+v, want RuntimeDefault", where, c.Name, seccomp)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: memory request and limit needed", where, c.Name)
			}
			if !strings.HasPrefix(where, "Deployment ") {
				continue
			}
			if len(c.Ports) < 1 || c.Ports[0].Name != "http" || len(c.Ports) > 2 || len(c.Ports) == 2 && c.Ports[1].Name != "metrics" {
				t.Errorf("%s/%s: ports %+v, want one named http (and the admin listener's, metrics)", where, c.Name, c.Ports)
			}
			for _, p := range []struct {
				probe *corev1.Probe
				path  string
			}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}, {c.StartupProbe, "/healthz"}} {
				if probe, path := p.probe, p.path; probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "http" {
					t.Errorf("%s/%s: want an HTTP probe on http %s, got %+v", where, c.Name, path, probe)
				}
			}
		}
	}
}

// checkWiring: selectors select their pods, and every ConfigMap, Secret key, volume
// mount and Service port a pod names exists (Secrets the chart does not create are
// the user's and are only counted).
func checkWiring(t *testing.T, r *release) {
	t.Helper()
	for n, d := range r.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector %v does not match its pods %v", n, d.Spec.Selector, d.Spec.Template.Labels)
		}
	}
	for where, spec := range r.podSpecs() {
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
			if v.Secret != nil {
				checkSecretKeys(t, r, where, v.Secret.SecretName, v.Secret.Items)
			}
		}
		if spec.ServiceAccountName != "" && len(r.serviceAccounts) > 0 && r.serviceAccounts[spec.ServiceAccountName] == nil {
			t.Errorf("%s: ServiceAccount %s not rendered", where, spec.ServiceAccountName)
		}
		for _, c := range spec.Containers {
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s/%s: mounts unknown volume %s", where, c.Name, m.Name)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && r.configMaps[ef.ConfigMapRef.Name] == nil {
					t.Errorf("%s/%s: ConfigMap %s not rendered", where, c.Name, ef.ConfigMapRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					checkSecretKeys(t, r, where, ref.Name, []corev1.KeyToPath{{Key: ref.Key}})
				}
			}
		}
	}
	// No ConfigMap carries a secret.
	notSecret := []string{"VODPIPE_UPLOAD_TOKEN_MAX_TTL", "VODPIPE_UPLOAD_TOKEN_SIGN_RATE", "VODPIPE_UPLOAD_TOKEN_SIGN_BURST"}
	for n, cm := range r.configMaps {
		for k := range cm.Data {
			if slices.Contains(notSecret, k) {
				continue
			}
			if strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "API_KEYS") || strings.Contains(k, "TOKEN") || k == "VODPIPE_VODSIM_APPS" {
				t.Errorf("ConfigMap %s holds %s: secrets belong in Secrets", n, k)
			}
		}
	}
	for n, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		matched := false
		for _, d := range r.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = true
				if !servicePortsOK(s, d) {
					t.Errorf("Service %s: ports %+v, want http targeting http (an API) and metrics targeting where the pods serve /metrics", n, s.Spec.Ports)
				}
			}
		}
		if !matched || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects no Deployment's pods", n)
		}
	}
	for n, p := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || countMatching(r, sel) != 1 {
			t.Errorf("PodDisruptionBudget %s must select exactly one Deployment's pods", n)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget %s: want one of minAvailable and maxUnavailable", n)
		}
	}
	for n, np := range r.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || countMatching(r, sel) != 1 {
			t.Errorf("NetworkPolicy %s must select exactly one Deployment's pods", n)
		}
	}
	for n, sm := range r.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for _, s := range r.services {
			if sel.Matches(labels.Set(s.Labels)) {
				count++
			}
		}
		if count != len(r.services) {
			t.Errorf("ServiceMonitor %s selects %d of %d Services", n, count, len(r.services))
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor %s endpoints %+v", n, sm.Spec.Endpoints)
		}
	}
}

// servicePortsOK: a Service names the port /metrics is on "metrics", and
// targets there the container port that serves it (the admin listener's when
// the pods have one); a Service of an API also has "http", targeting http.
func servicePortsOK(s *corev1.Service, d *appsv1.Deployment) bool {
	byName := map[string]corev1.ServicePort{}
	for _, p := range s.Spec.Ports {
		byName[p.Name] = p
	}
	m, ok := byName["metrics"]
	if !ok {
		return false
	}
	want := "http"
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "metrics" {
			want = "metrics"
		}
	}
	if m.TargetPort.String() != want {
		return false
	}
	h, api := byName["http"]
	return len(s.Spec.Ports) == 1 || api && h.TargetPort.String() == "http" && len(s.Spec.Ports) == 2
}

// codeWords is every lower-case string literal of the services' code
// (metric names, label values).
var codeWords = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{}
	re := regexp.MustCompile(`"([a-z][a-z0-9_]*)"`)
	for _, dir := range []string{"../../pkg", "../../internal"} {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				names[m[1]] = true
			}
			return nil
		})
	}
	return names
})

// checkAlerts: every alert names metrics the services export (a renamed
// metric would silently never fire), is scoped to the release's namespace,
// has a severity and a summary, and its expression is balanced and free of
// template leftovers.
func checkAlerts(t *testing.T, r *release) {
	t.Helper()
	metricRe := regexp.MustCompile(`\bvodpipe_[a-z0-9_]+`)
	labelValueRe := regexp.MustCompile(`\b(outcome|state|source)=~?"([^"]+)"`)
	for n, pr := range r.rules {
		alerts := 0
		for _, g := range pr.Spec.Groups {
			for _, rule := range g.Rules {
				alerts++
				where := n + " " + rule.Alert
				if rule.Alert == "" || rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
					t.Errorf("%s: needs a name, a severity, a summary and a description: %+v", where, rule)
				}
				if strings.Contains(rule.Expr, "{{") || strings.Count(rule.Expr, "(") != strings.Count(rule.Expr, ")") ||
					strings.Count(rule.Expr, "{") != strings.Count(rule.Expr, "}") || strings.Count(rule.Expr, "[") != strings.Count(rule.Expr, "]") {
					t.Errorf("%s: malformed expression %q", where, rule.Expr)
				}
				names := metricRe.FindAllString(rule.Expr, -1)
				if len(names) == 0 {
					t.Errorf("%s: names no vodpipe metric: %q", where, rule.Expr)
				}
				for _, m := range names {
					if !codeWords()[m] {
						t.Errorf("%s: metric %s is not exported by any service", where, m)
					}
				}
				for _, lv := range labelValueRe.FindAllStringSubmatch(rule.Expr, -1) {
					for v := range strings.SplitSeq(lv[2], "|") {
						if !codeWords()[v] {
							t.Errorf("%s: label value %s=%q is not one the services set", where, lv[1], v)
						}
					}
				}
				if c := strings.Count(rule.Expr, `namespace="default"`); c != len(names) {
					t.Errorf("%s: %d of %d metric selectors scoped to the release's namespace: %q", where, c, len(names), rule.Expr)
				}
			}
		}
		if alerts == 0 {
			t.Errorf("PrometheusRule %s has no alerts", n)
		}
	}
}

func checkSecretKeys(t *testing.T, r *release, where, name string, items []corev1.KeyToPath) {
	t.Helper()
	s := r.secrets[name]
	if s == nil {
		return // an existing secret the user provides
	}
	for _, it := range items {
		if _, ok := s.Data[it.Key]; !ok {
			t.Errorf("%s: Secret %s has no key %s", where, name, it.Key)
		}
	}
}

func countMatching(r *release, sel labels.Selector) int {
	n := 0
	for _, d := range r.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			n++
		}
	}
	return n
}

// checkTencentIsolation: only ingest sees the Tencent signing key, as VODPIPE_SECRET_ID
// from the secret and the SecretKey as a mounted file; no other pod references the
// secret in any way or carries a VODPIPE_SECRET_* variable.
func checkTencentIsolation(t *testing.T, r *release, name func(string) string, tencent string) {
	t.Helper()
	ingest := r.deployments[name("ingest")]
	if ingest == nil {
		t.Fatal("no ingest Deployment")
	}
	c := container(t, ingest, "ingest")
	id := findEnv(c.Env, "VODPIPE_SECRET_ID")
	keyFile := findEnv(c.Env, "VODPIPE_SECRET_KEY_FILE")
	if findEnv(c.Env, "VODPIPE_SECRET_KEY") != nil {
		t.Error("ingest gets VODPIPE_SECRET_KEY as a variable; it must be a file")
	}
	if tencent == "" {
		if id != nil || keyFile != nil {
			t.Errorf("ingest gets a Tencent key although none is configured")
		}
	} else {
		if id == nil || id.ValueFrom == nil || id.ValueFrom.SecretKeyRef == nil || id.ValueFrom.SecretKeyRef.Name != tencent {
			t.Errorf("ingest VODPIPE_SECRET_ID = %+v, want it from Secret %s", id, tencent)
		}
		if keyFile == nil || !mountedFileFrom(&ingest.Spec.Template.Spec, c, keyFile.Value, tencent) {
			t.Errorf("ingest VODPIPE_SECRET_KEY_FILE = %+v is not a file of Secret %s", keyFile, tencent)
		}
	}
	for where, spec := range r.podSpecs() {
		if where == "Deployment "+name("ingest") {
			continue
		}
		refs := secretRefs(spec)
		if tencent != "" && refs[tencent] {
			t.Errorf("%s references the Tencent secret %s", where, tencent)
		}
		for s := range refs {
			if strings.Contains(s, "tencent") {
				t.Errorf("%s references secret %s", where, s)
			}
		}
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "VODPIPE_SECRET_") {
					t.Errorf("%s/%s has %s", where, c.Name, e.Name)
				}
			}
		}
	}
	for n, cm := range r.configMaps {
		if n == name("ingest") {
			continue
		}
		for k := range cm.Data {
			if strings.HasPrefix(k, "VODPIPE_SECRET_") {
				t.Errorf("ConfigMap %s has %s", n, k)
			}
		}
	}
}

// secretRefs are the names of every Secret a pod spec references.
func secretRefs(spec *corev1.PodSpec) map[string]bool {
	refs := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			refs[v.Secret.SecretName] = true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					refs[s.Secret.Name] = true
				}
			}
		}
	}
	for _, c := range spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				refs[ef.SecretRef.Name] = true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs[e.ValueFrom.SecretKeyRef.Name] = true
			}
		}
	}
	for _, s := range spec.ImagePullSecrets {
		refs[s.Name] = true
	}
	return refs
}

// checkScaling: HPAs for the listed components, and for the worker either an HPA or a
// KEDA ScaledObject on the JetStream consumer "workers" of stream VODPIPE_JOBS.
func checkScaling(t *testing.T, r *release, name func(string) string, hpas []string, keda bool) {
	t.Helper()
	var want []string
	for _, c := range hpas {
		want = append(want, name(c))
	}
	if got := keys(r.hpas); !sameSet(got, want) {
		t.Errorf("HPAs %v, want %v", got, want)
	}
	for n, h := range r.hpas {
		ref := h.Spec.ScaleTargetRef
		d := r.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
			t.Errorf("HPA %s targets %+v, which is not rendered", n, ref)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas although HPA %s manages it", ref.Name, n)
		}
		if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("HPA %s: want a CPU metric first", n)
		}
	}
	if !keda {
		if len(r.scaledObjects) != 0 {
			t.Errorf("ScaledObjects rendered with KEDA off: %v", keys(r.scaledObjects))
		}
		return
	}
	so := r.scaledObjects[name("worker")]
	if len(r.scaledObjects) != 1 || so == nil {
		t.Fatalf("ScaledObjects %v, want one for the worker", keys(r.scaledObjects))
	}
	if r.hpas[name("worker")] != nil {
		t.Error("both an HPA and a KEDA ScaledObject scale the worker")
	}
	if ref := so.Spec.ScaleTargetRef; ref.Name != name("worker") || ref.Kind != "Deployment" || r.deployments[ref.Name] == nil {
		t.Errorf("ScaledObject targets %+v", ref)
	}
	if d := r.deployments[name("worker")]; d.Spec.Replicas != nil {
		t.Error("worker Deployment sets replicas although KEDA manages it")
	}
	if len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject triggers %+v, want one", so.Spec.Triggers)
	}
	tr := so.Spec.Triggers[0]
	if tr.Type != "nats-jetstream" {
		t.Errorf("trigger type %q, want nats-jetstream", tr.Type)
	}
	for k, v := range map[string]string{"stream": "VODPIPE_JOBS", "consumer": "workers"} {
		if tr.Metadata[k] != v {
			t.Errorf("trigger %s = %q, want %q", k, tr.Metadata[k], v)
		}
	}
	for _, k := range []string{"natsServerMonitoringEndpoint", "account", "lagThreshold"} {
		if tr.Metadata[k] == "" {
			t.Errorf("trigger has no %s", k)
		}
	}
}

// checkVodsimMode: with vodsim the worker talks to its Service (VOD endpoint and COS
// dial address, COS over http); without it no vodsim appears anywhere.
func checkVodsimMode(t *testing.T, r *release, name func(string) string, vodsim bool) {
	t.Helper()
	w := r.configMaps[name("worker")]
	if w == nil {
		t.Fatal("no worker ConfigMap")
	}
	if !vodsim {
		for k, v := range w.Data {
			if strings.Contains(v, "vodsim") {
				t.Errorf("worker %s=%s without vodsim", k, v)
			}
		}
		return
	}
	svc := r.services[name("vodsim")]
	if svc == nil {
		t.Fatal("no vodsim Service")
	}
	addr := fmt.Sprintf("%s:%d", svc.Name, svc.Spec.Ports[0].Port)
	wantEnv(t, w.Data, "VODPIPE_VOD_ENDPOINT", "http://"+addr)
	wantEnv(t, w.Data, "VODPIPE_COS_DIAL_ADDR", addr)
	wantEnv(t, w.Data, "VODPIPE_COS_SCHEME", "http")
	d := r.deployments[name("vodsim")]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("vodsim must run exactly one replica, recreated on upgrade")
	}
}

// checkHelmTest: the helm test hook is a pod that fetches ingest's /readyz.
func checkHelmTest(t *testing.T, r *release, name func(string) string) {
	t.Helper()
	if len(r.pods) != 1 {
		t.Fatalf("Pods %v, want the helm test pod only", keys(r.pods))
	}
	for n, p := range r.pods {
		if p.Annotations["helm.sh/hook"] != "test" {
			t.Errorf("Pod %s is not a helm test hook", n)
		}
		if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("Pod %s restartPolicy %s", n, p.Spec.RestartPolicy)
		}
		svc := r.services[name("ingest")]
		url := fmt.Sprintf("http://%s:%d/readyz", svc.Name, svc.Spec.Ports[0].Port)
		if cmd := p.Spec.Containers[0].Command; !slices.Contains(cmd, url) {
			t.Errorf("Pod %s command %v does not fetch %s", n, cmd, url)
		}
	}
}

// TestSchemaRejectsBadValues: values.schema.json refuses wrong types, unknown keys,
// missing required values and bad enums, in helm lint and helm template alike.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := []struct{ name, values, want string }{
		{"replicas as a word", "ingest:\n  replicaCount: three\n", "/ingest/replicaCount"},
		{"unknown top-level key", "ingset:\n  replicaCount: 2\n", "additional properties 'ingset' not allowed"},
		{"unknown nested key", "worker:\n  keda:\n    stream: OTHER\n", "additional properties 'stream' not allowed"},
		{"no image repository", "image:\n  repository: \"\"\n", "/image/repository"},
		{"no NATS URL", "nats:\n  url: \"\"\n", "/nats/url"},
		{"NATS URL scheme", "nats:\n  url: http://nats:4222\n", "/nats/url"},
		{"pull policy enum", "image:\n  pullPolicy: Sometimes\n", "/image/pullPolicy"},
		{"COS scheme enum", "worker:\n  cosScheme: ftp\n", "/worker/cosScheme"},
		{"duration", "jetstream:\n  ackWait: thirty seconds\n", "/jetstream/ackWait"},
		{"part size below 1 MiB", "worker:\n  partSize: 1024\n", "/worker/partSize"},
		{"env value not a string", "notify:\n  env:\n    VODPIPE_WEBHOOK_DISABLE_AFTER: 5\n", "/notify/env/VODPIPE_WEBHOOK_DISABLE_AFTER"},
		{"API key scope", "apiKeys:\n  keys: [\"ops:0123456789abcdef:admin\"]\n", "/apiKeys/keys/0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad-values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{{"lint", chartDir, "-f", file}, {"template", "vodpipe", chartDir, "-f", file}} {
				_, err := helm(t, cmd...)
				if err == nil {
					t.Errorf("helm %s accepted:\n%s", cmd[0], tc.values)
				} else if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("helm %s failed without naming %q:\n%v", cmd[0], tc.want, err)
				}
			}
		})
	}
}

// TestTemplateRefusesInconsistentValues: combinations the schema cannot express fail
// the render with a message that says what to change.
func TestTemplateRefusesInconsistentValues(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no Redis", []string{"--set", "redis.addrs=null"}, "redis: set redis.url"},
		{"two Redis settings", []string{"--set", "redis.url=redis://r:6379/0"}, "set only one of redis.url"},
		{"Sentinel without addresses", []string{"--set", "redis.addrs=null", "--set", "redis.url=redis://r:6379", "--set", "redis.masterName=m"}, "redis.masterName needs redis.addrs"},
		{"pull mode without a key", []string{"--set", "notify.pull.enabled=true"}, "notify.pull.enabled needs"},
		{"signing key unknown to vodsim", []string{"--set", "vodsim.enabled=true", "--set", "tencent.secretId=AKIDreal", "--set", "tencent.secretKey=real"}, "must be one of vodsim.apps"},
		{"sources volume without root", []string{"--set", "worker.sources.volume.emptyDir.medium=Memory"}, "worker.sources.volume needs worker.sources.root"},
		{"exposed without a host", []string{"--set", "expose.ingress.enabled=true"}, "expose.host is required"},
		{"exposing metrics", []string{"--set", "expose.httpRoute.enabled=true", "--set", "expose.host=v.example.com", "--set", "expose.ingestPaths={/v1/,/metrics}"}, "would route /metrics from outside"},
		{"exposing everything", []string{"--set", "expose.ingress.enabled=true", "--set", "expose.host=v.example.com", "--set", "expose.ingestPaths={/}"}, "would route everything from outside"},
		// Until 0.10 these rendered, and the pods crash-looped or were killed
		// mid-drain or out of memory.
		{"a status retention the services refuse", []string{"--set", "jetstream.statusRetention=12h"}, "jetstream.statusRetention 12h"},
		{"a status retention in minutes", []string{"--set", "jetstream.statusRetention=1439m59s"}, "under 24h"},
		{"a shutdown grace the kubelet cuts", []string{"--set", "worker.shutdownGrace=1m30s"}, "worker.shutdownGrace 1m30s needs worker.terminationGracePeriodSeconds"},
		{"a worker memory limit under its parts in flight", []string{"--set", "worker.jobs=4", "--set", "worker.partConcurrency=8", "--set", "worker.partSize=33554432"},
			"worker.resources.limits.memory 1Gi is under what a worker holds: 4 jobs × 8 parts in flight × 33554432 bytes + 64 MiB = 1088 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "vodpipe", chartDir, "-f", natsUsersValues}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want a failure naming %q, got %v", tc.want, err)
			}
		})
	}
}

// TestChartNeedsNATSCredentials: the chart is secure with its defaults. Without
// NATS credentials for a service it renders nothing and says what to set,
// unless nats.allowNoAuth asks for an open NATS; an entry with two ways to
// authenticate, or half of user + password, is refused as the service would.
func TestChartNeedsNATSCredentials(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // "" renders
	}{
		{"defaults", nil, "nats.auth.worker: no NATS credentials for worker"},
		{"one service without", []string{"-f", natsUsersValues, "--set", "nats.auth.notify.user=", "--set", "nats.auth.notify.passwordSecret.name="},
			"nats.auth.notify: no NATS credentials for notify"},
		{"notify disabled needs none", []string{"-f", natsUsersValues, "--set", "nats.auth.notify.user=", "--set", "nats.auth.notify.passwordSecret.name=",
			"--set", "notify.enabled=false"}, ""},
		{"two ways", []string{"-f", natsUsersValues, "--set", "nats.auth.ingest.credsSecret.name=c"}, "nats.auth.ingest: set only one of"},
		{"user without password", []string{"-f", natsUsersValues, "--set", "nats.auth.worker.passwordSecret.name="}, "nats.auth.worker: user and passwordSecret.name go together"},
		{"open NATS on request", []string{"--set", "nats.allowNoAuth=true"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "vodpipe", chartDir}, tc.args...)...)
			if tc.want == "" && err != nil {
				t.Fatalf("want it rendered: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("want a failure naming %q, got %v", tc.want, err)
			}
		})
	}
}

// checkOwnNATSUsers: each Deployment reads its NATS credentials from files of
// the secrets named (variable → secret), and references none of the secrets
// named for another Deployment only.
func checkOwnNATSUsers(t *testing.T, r *release, want map[string]map[string]string) {
	t.Helper()
	for dep, files := range want {
		d := r.deployments[dep]
		c := container(t, d, dep[strings.LastIndex(dep, "-")+1:])
		own := map[string]bool{}
		for env, secret := range files {
			own[secret] = true
			if e := findEnv(c.Env, env); e == nil || !mountedFileFrom(&d.Spec.Template.Spec, c, e.Value, secret) {
				t.Errorf("%s: %s = %+v is not a file of Secret %s", dep, env, e, secret)
			}
		}
		refs := secretRefs(&d.Spec.Template.Spec)
		for other, files := range want {
			for _, secret := range files {
				if other != dep && !own[secret] && refs[secret] {
					t.Errorf("%s references %s's NATS secret %s", dep, other, secret)
				}
			}
		}
	}
}

func container(t *testing.T, d *appsv1.Deployment, name string) *corev1.Container {
	t.Helper()
	if d == nil {
		t.Fatalf("no Deployment for container %s", name)
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return nil
}

func findEnv(env []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

// mountedFile reports whether path lies under one of c's volume mounts.
func mountedFile(c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// mountedFileFrom reports whether path is a file of Secret secret mounted into c.
func mountedFileFrom(spec *corev1.PodSpec, c *corev1.Container, path, secret string) bool {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != secret {
				continue
			}
			if len(v.Secret.Items) == 0 {
				return true
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

// checkWebhookSecretKeys: notify reads the keys sealing webhook secrets from
// a file of the secret, never from a variable or its ConfigMap.
func checkWebhookSecretKeys(t *testing.T, d *appsv1.Deployment, secret string) {
	t.Helper()
	c := container(t, d, "notify")
	if findEnv(c.Env, "VODPIPE_WEBHOOK_SECRET_KEYS") != nil {
		t.Error("notify gets VODPIPE_WEBHOOK_SECRET_KEYS as a variable; it must be a file")
	}
	if e := findEnv(c.Env, "VODPIPE_WEBHOOK_SECRET_KEYS_FILE"); e == nil || !mountedFileFrom(&d.Spec.Template.Spec, c, e.Value, secret) {
		t.Errorf("notify webhook secret keys not mounted from secret %s: %+v", secret, e)
	}
}

func wantEnv(t *testing.T, data map[string]string, key, want string) {
	t.Helper()
	if got, ok := data[key]; !ok || got != want {
		t.Errorf("%s = %q (set: %v), want %q", key, got, ok, want)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestChartExposesTheAPIAndTheCallback: with expose.host and an Ingress and an
// HTTPRoute on, the outside reaches ingest's API and upload page and notify's
// VOD callback, on their Services' ports, with TLS from the named secret; the
// probes and /metrics are not routed. Off by default.
func TestChartExposesTheAPIAndTheCallback(t *testing.T) {
	if r := render(t, "-f", natsUsersValues); len(r.ingresses)+len(r.httpRoutes) != 0 {
		t.Fatalf("exposed by default: %v %v", keys(r.ingresses), keys(r.httpRoutes))
	}
	r := render(t, "-f", natsUsersValues, "--set", "expose.host=vod.example.com", "--set", "expose.ingress.enabled=true",
		"--set", "expose.ingress.className=nginx", "--set", "expose.ingress.tlsSecretName=vod-tls",
		"--set", "expose.httpRoute.enabled=true", "--set", "expose.httpRoute.parentRefs[0].name=public")
	want := map[string]string{"/v1/": "vodpipe-ingest:8080", "/upload": "vodpipe-ingest:8080", "/v1/vod/callback": "vodpipe-notify:8081"}
	ing := r.ingresses["vodpipe"]
	if ing == nil || len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "vod.example.com" || *ing.Spec.IngressClassName != "nginx" ||
		len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "vod-tls" {
		t.Fatalf("Ingress = %+v", ing)
	}
	got := map[string]string{}
	for _, p := range ing.Spec.Rules[0].HTTP.Paths {
		got[p.Path] = fmt.Sprintf("%s:%d", p.Backend.Service.Name, p.Backend.Service.Port.Number)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Ingress routes %v, want %v", got, want)
	}
	hr := r.httpRoutes["vodpipe"]
	if hr == nil || !slices.Equal(hr.Spec.Hostnames, []string{"vod.example.com"}) || len(hr.Spec.ParentRefs) != 1 || hr.Spec.ParentRefs[0]["name"] != "public" {
		t.Fatalf("HTTPRoute = %+v", hr)
	}
	got = map[string]string{}
	for _, rule := range hr.Spec.Rules {
		got[rule.Matches[0].Path.Value] = fmt.Sprintf("%s:%d", rule.BackendRefs[0].Name, rule.BackendRefs[0].Port)
	}
	if !maps.Equal(got, want) {
		t.Errorf("HTTPRoute routes %v, want %v", got, want)
	}
	for _, svc := range []string{"vodpipe-ingest", "vodpipe-notify"} {
		if r.services[svc] == nil {
			t.Errorf("a route points at %s, which the chart does not render", svc)
		}
	}
}

// TestChartAdminListener: with metrics.adminPort, ingest and notify get the
// admin listener's address, a container port and a Service port named
// metrics on it, the ServiceMonitor scrapes that, and the NetworkPolicies let
// metricsFrom reach it; without it, metrics is the http port.
func TestChartAdminListener(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "metrics.adminPort=9090", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "networkPolicy.enabled=true")
	for _, c := range []string{"ingest", "notify"} {
		cm := r.configMaps["vodpipe-"+c]
		if cm == nil || cm.Data["VODPIPE_"+strings.ToUpper(c)+"_ADMIN_ADDR"] != ":9090" {
			t.Errorf("%s: admin address not set: %v", c, cm)
		}
		svc := r.services["vodpipe-"+c]
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Name == "metrics" && p.Port == 9090 && p.TargetPort.String() == "metrics" {
				found = true
			}
		}
		if !found {
			t.Errorf("Service vodpipe-%s ports %+v: no metrics port 9090", c, svc.Spec.Ports)
		}
		np := r.netpols["vodpipe-"+c]
		allowed := false
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.String() == "metrics" {
					allowed = true
				}
			}
		}
		if !allowed {
			t.Errorf("NetworkPolicy vodpipe-%s does not let the metrics port in", c)
		}
	}
	if cm := r.configMaps["vodpipe-ingest"]; cm != nil {
		if _, ok := render(t, "-f", natsUsersValues).configMaps["vodpipe-ingest"].Data["VODPIPE_INGEST_ADMIN_ADDR"]; ok {
			t.Error("an admin address without metrics.adminPort")
		}
	}
}

// TestChartShipsTheDashboard: metrics.dashboard renders the Grafana dashboard
// in a ConfigMap the sidecar loader picks up, and every series a panel
// queries is one a service exports (a histogram's _bucket, _count and _sum
// of one it defines), with label values the services set. Off by default.
func TestChartShipsTheDashboard(t *testing.T) {
	if cm := render(t, "-f", natsUsersValues).configMaps["vodpipe-dashboard"]; cm != nil {
		t.Fatal("a dashboard by default")
	}
	r := render(t, "-f", natsUsersValues, "--set", "metrics.dashboard.enabled=true")
	cm := r.configMaps["vodpipe-dashboard"]
	if cm == nil || cm.Labels["grafana_dashboard"] != "1" {
		t.Fatalf("dashboard ConfigMap = %+v", cm)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["vodpipe.json"]), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard uid %q with %d panels", dash.UID, len(dash.Panels))
	}
	metricRe := regexp.MustCompile(`\bvodpipe_[a-z0-9_]+`)
	labelValueRe := regexp.MustCompile(`\b(outcome|state)=~?"([^"]+)"`)
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `namespace="$namespace"`) {
				t.Errorf("panel %q: %q is not scoped to the chosen namespace", p.Title, tg.Expr)
			}
			for _, m := range metricRe.FindAllString(tg.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && codeWords()[b] {
						base = b
					}
				}
				if !codeWords()[base] {
					t.Errorf("panel %q: metric %s is not exported by any service", p.Title, m)
				}
				queried[base] = true
			}
			for _, lv := range labelValueRe.FindAllStringSubmatch(tg.Expr, -1) {
				if !codeWords()[lv[2]] {
					t.Errorf("panel %q: label value %s=%q is not one the services set", p.Title, lv[1], lv[2])
				}
			}
		}
	}
	for _, m := range []string{"vodpipe_jobs_stored", "vodpipe_worker_job_duration_seconds", "vodpipe_worker_vod_request_duration_seconds",
		"vodpipe_worker_cos_request_duration_seconds", "vodpipe_notify_deliveries_total", "vodpipe_build_info"} {
		if !queried[m] {
			t.Errorf("the dashboard shows no %s", m)
		}
	}
}

// TestChartRendersExtraObjects: extraObjects are rendered with the release,
// their strings through tpl.
func TestChartRendersExtraObjects(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set-json",
		`extraObjects=[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"{{ .Release.Name }}-extra"},"data":{"k":"v"}}]`)
	if cm := r.configMaps["vodpipe-extra"]; cm == nil || cm.Data["k"] != "v" {
		t.Fatalf("extra ConfigMap = %+v", cm)
	}
}

// TestChartConsoleReachesNotify: ingest's console is on by default and is
// given notify's Service URL; with the API's peers restricted, notify's
// NetworkPolicy still lets ingest's pods in (the console's webhook pages).
func TestChartConsoleReachesNotify(t *testing.T) {
	r := render(t, "-f", natsUsersValues, "--set", "networkPolicy.enabled=true",
		"--set-json", `networkPolicy.apiFrom=[{"namespaceSelector":{"matchLabels":{"team":"media"}}}]`)
	cm := r.configMaps["vodpipe-ingest"]
	if cm == nil || cm.Data["VODPIPE_CONSOLE"] != "true" || cm.Data["VODPIPE_NOTIFY_URL"] != "http://vodpipe-notify:8081" {
		t.Fatalf("ingest's console configuration: %v", cm)
	}
	np := r.netpols["vodpipe-notify"]
	ingestIn := false
	for _, rule := range np.Spec.Ingress {
		for _, from := range rule.From {
			if from.PodSelector != nil && from.PodSelector.MatchLabels["app.kubernetes.io/component"] == "ingest" {
				ingestIn = true
			}
		}
	}
	if !ingestIn {
		t.Errorf("notify's NetworkPolicy does not let ingest in: %+v", np.Spec.Ingress)
	}
	off := render(t, "-f", natsUsersValues, "--set", "ingest.console.enabled=false")
	if v := off.configMaps["vodpipe-ingest"].Data["VODPIPE_CONSOLE"]; v != "false" {
		t.Errorf("console off: VODPIPE_CONSOLE=%q", v)
	}
}
