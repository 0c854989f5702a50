package notify_test

import (
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/netguard"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// errorAnswer is the one error shape of every API.
type errorAnswer = client.ErrorBody

// fieldOf is the field an answer names: the one of its fields, "" for
// none; more than one is reported as such.
func fieldOf(a errorAnswer) string {
	switch len(a.Error.Fields) {
	case 0:
		return ""
	case 1:
		return a.Error.Fields[0].Field
	}
	return fmt.Sprintf("%d fields", len(a.Error.Fields))
}

func TestSubscriptionAPIRefusesBadRequests(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.MaxBody = 1024 })
	in := e.start()
	cases := []struct {
		name      string
		key       string
		method    string
		path      string
		body      any
		status    int
		code      string
		field     string
		inMessage string
	}{
		{name: "no key", method: "GET", path: "/v1/subscriptions", status: 401, code: "unauthenticated"},
		{name: "wrong key", key: "not-a-key-at-all", method: "GET", path: "/v1/subscriptions", status: 401, code: "unauthenticated"},
		{name: "read-only key creates", key: "read-only-key-0000", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x"}, status: 403, code: "forbidden"},
		{name: "unknown field", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "events": []string{"*"}}, status: 400, code: "unknown_field", field: "events"},
		{name: "url missing", method: "POST", path: "/v1/subscriptions", body: map[string]any{}, status: 400, field: "url", inMessage: "required"},
		{name: "url not http", method: "POST", path: "/v1/subscriptions", body: map[string]any{"url": "ftp://h/x"}, status: 400, field: "url"},
		{name: "url with credentials", method: "POST", path: "/v1/subscriptions", body: map[string]any{"url": "http://u:p@127.0.0.1/x"},
			status: 400, field: "url", inMessage: "credentials"},
		{name: "url wrong type", method: "POST", path: "/v1/subscriptions", body: map[string]any{"url": 5}, status: 400, field: "url",
			inMessage: "string"},
		{name: "eventTypes empty", method: "POST", path: "/v1/subscriptions", body: map[string]any{"url": "http://127.0.0.1:1/x", "eventTypes": []string{}},
			status: 400, field: "eventTypes"},
		{name: "eventTypes unknown", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "eventTypes": []string{"job.*", "job.complete"}}, status: 400,
			field: "eventTypes[1]", inMessage: "matches no event type"},
		{name: "eventTypes bad pattern", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "eventTypes": []string{"job.>"}}, status: 400, field: "eventTypes[0]"},
		{name: "eventTypes not strings", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "eventTypes": []int{1}}, status: 400, field: "eventTypes"},
		{name: "jobId with space", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "jobId": "a b"}, status: 400, field: "jobId"},
		{name: "body too large", method: "POST", path: "/v1/subscriptions",
			body: map[string]any{"url": "http://127.0.0.1:1/x", "description": strings.Repeat("x", 2000)}, status: 413, code: "body_too_large"},
		{name: "not JSON", method: "POST", path: "/v1/subscriptions", body: "{url:", status: 400, code: "bad_json"},
		{name: "two objects", method: "POST", path: "/v1/subscriptions", body: `{"url":"http://127.0.0.1:1/x"}{}`, status: 400, code: "bad_json"},
		{name: "unknown subscription", method: "GET", path: "/v1/subscriptions/sub_nothing", status: 404, code: "subscription_not_found"},
		{name: "id with odd characters", method: "DELETE", path: "/v1/subscriptions/..%2Fx", status: 404},
		{name: "replay of unknown", method: "POST", path: "/v1/subscriptions/sub_nothing/replay", body: map[string]any{"since": time.Now()},
			status: 404, code: "subscription_not_found"},
		{name: "events with bad filter", method: "GET", path: "/v1/events?type=jobs.*", status: 400, field: "type"},
		{name: "events with bad Last-Event-ID", method: "GET", path: "/v1/events?lastEventId=x", status: 400, field: "Last-Event-ID"},
		{name: "no route", method: "GET", path: "/v2/nothing", status: 404, code: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := testKey
			if tc.key != "" {
				key = tc.key
			}
			if tc.name == "no key" {
				key = ""
			}
			var a errorAnswer
			code := in.callWith(t, key, tc.method, tc.path, tc.body, &a)
			if code != tc.status || (tc.code != "" && a.Error.Code != tc.code) || fieldOf(a) != tc.field ||
				!strings.Contains(a.Error.Message, tc.inMessage) {
				t.Fatalf("%d %+v; want %d code %q field %q message containing %q", code, a.Error, tc.status, tc.code, tc.field, tc.inMessage)
			}
		})
	}
}

func TestSubscriptionLifecycle(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	created := in.subscribe(t, "http://127.0.0.1:9/hook?x=1", []string{"job.*", "job.completed", "vod.file_uploaded"}, "job-7")
	if !strings.HasPrefix(created.ID, "sub_") || !strings.HasPrefix(created.Secret, webhook.SecretPrefix) || created.Status != fanout.StatusActive {
		t.Fatalf("created = %+v", created)
	}
	// Omitted eventTypes means every event.
	var all fanout.Subscription
	if code := in.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"url": "http://127.0.0.1:9/all"}, &all); code != 201 ||
		!reflect.DeepEqual(all.EventTypes, []string{"*"}) {
		t.Fatalf("default filters: %d %+v", code, all)
	}
	got := in.subscription(t, created.ID)
	if got.Secret != "" || got.URL != created.URL || got.JobID != "job-7" || len(got.EventTypes) != 3 {
		t.Fatalf("get = %+v (the secret is shown only at creation)", got)
	}
	var list struct{ Subscriptions []fanout.Subscription }
	if code := in.callWith(t, "read-only-key-0000", http.MethodGet, "/v1/subscriptions", nil, &list); code != 200 ||
		len(list.Subscriptions) != 2 || list.Subscriptions[0].ID != created.ID || list.Subscriptions[0].Secret != "" {
		t.Fatalf("list: %d %+v", code, list)
	}
	// Another replica sees the same subscriptions.
	other := e.start()
	if s := other.subscription(t, created.ID); s.URL != created.URL {
		t.Fatalf("other replica: %+v", s)
	}
	if code := in.call(t, http.MethodDelete, "/v1/subscriptions/"+created.ID, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code := other.call(t, http.MethodGet, "/v1/subscriptions/"+created.ID, nil, nil); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	if code := in.call(t, http.MethodDelete, "/v1/subscriptions/"+created.ID, nil, nil); code != http.StatusNotFound {
		t.Fatalf("second delete: %d", code)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(in.url + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
}

func TestSubscriptionRefusesPrivateURLUnlessAllowed(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.WebhookAllowPrivate = false })
	in := e.start()
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/", "http://[::1]/", "http://10.0.0.1/"} {
		var a errorAnswer
		if code := in.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"url": u}, &a); code != 400 || fieldOf(a) != "url" {
			t.Errorf("%s: %d %+v", u, code, a)
		}
	}
	// A public literal address is accepted (no DNS needed).
	if code := in.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"url": "https://93.184.216.34/hook"}, nil); code != 201 {
		t.Fatalf("public address refused: %d", code)
	}

	// Allowing loopback opens loopback, never metadata or link-local addresses.
	var loopback netguard.CIDRs
	if err := loopback.Decode("127.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	lax := newEnv(t, func(c *notify.Config) { c.WebhookAllowPrivate, c.WebhookAllowCIDRs = false, loopback }).start()
	if code := lax.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"url": "http://127.0.0.1:8080/hook"}, nil); code != 201 {
		t.Fatalf("allowed loopback refused: %d", code)
	}
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://169.254.0.23/",
		"http://100.100.100.200/", "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://10.0.0.1/"} {
		var a errorAnswer
		if code := lax.call(t, http.MethodPost, "/v1/subscriptions", map[string]any{"url": u}, &a); code != 400 || fieldOf(a) != "url" {
			t.Errorf("%s with loopback allowed: %d %+v", u, code, a)
		}
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("VODPIPE_API_KEYS", "ops:ops-key-123456:read+control, bare-key-abcdef")
	t.Setenv("VODPIPE_WEBHOOK_RETRY_SCHEDULE", "1s, 1m")
	t.Setenv("VODPIPE_PULL_API_ID", "AKIDpull")
	t.Setenv("VODPIPE_PULL_API_KEY_FILE", "/run/secrets/pull")
	var cfg notify.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.APIKeys) != 2 || cfg.APIKeys[0].Name != "ops" || len(cfg.APIKeys[1].Scopes) != 4 {
		t.Fatalf("keys = %+v", cfg.APIKeys)
	}
	if !reflect.DeepEqual(cfg.WebhookSchedule, fanout.Schedule{time.Second, time.Minute}) || cfg.WebhookTimeout != 15*time.Second ||
		cfg.HTTPAddr != ":8081" || cfg.PullEndpoint != "https://vod.tencentcloudapi.com" || cfg.PullAPIID != "AKIDpull" {
		t.Fatalf("config = %+v", cfg)
	}
	var def notify.Config
	_ = os.Unsetenv("VODPIPE_WEBHOOK_RETRY_SCHEDULE") // t.Setenv restores it
	if err := config.Load(&def); err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, d := range def.WebhookSchedule {
		total += d
	}
	if total < 20*time.Hour || total > 30*time.Hour {
		t.Fatalf("default schedule %v spans %s, want about a day", def.WebhookSchedule, total)
	}
	t.Setenv("VODPIPE_WEBHOOK_RETRY_SCHEDULE", "1s,-1s")
	if err := config.Load(&def); err == nil {
		t.Fatal("negative delay accepted")
	}
	// notify never holds the upload key.
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			// Tencent's pair is SECRET_ID and SECRET_KEY(_FILE); WEBHOOK_SECRET_KEYS seal webhook secrets.
			if strings.HasPrefix(f.Name, "Secret") || strings.HasPrefix(f.Tag.Get("envconfig"), "SECRET_") {
				t.Errorf("notify.Config has %s (%s)", f.Name, f.Tag.Get("envconfig"))
			}
		}
	}
	walk(reflect.TypeOf(notify.Config{}))
}
