package notify_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/secretbox"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// newSealKey is a fresh key for VODPIPE_WEBHOOK_SECRET_KEYS, in base64.
func newSealKey() string {
	k := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// keyID is the id of a base64 key, as sealed values name it.
func keyID(t *testing.T, key string) string {
	t.Helper()
	k, err := secretbox.ParseKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return secretbox.KeyID(k[0])
}

// subsBucket opens the subscriptions bucket as any NATS client could.
func (e *env) subsBucket() jetstream.KeyValue {
	e.t.Helper()
	kv, err := e.nats.JetStream(e.t).KeyValue(e.t.Context(), fanout.SubscriptionsBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

// rawRecord reads a subscription's stored JSON and its storedSecret field.
func (e *env) rawRecord(id string) (raw []byte, stored string) {
	e.t.Helper()
	entry, err := e.subsBucket().Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var f struct {
		StoredSecret string `json:"storedSecret"`
	}
	if err := json.Unmarshal(entry.Value(), &f); err != nil {
		e.t.Fatal(err)
	}
	return entry.Value(), f.StoredSecret
}

// setStoredSecret rewrites a subscription's storedSecret field in the bucket.
func (e *env) setStoredSecret(id, stored string) {
	e.t.Helper()
	raw, _ := e.rawRecord(id)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		e.t.Fatal(err)
	}
	m["storedSecret"] = stored
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.subsBucket().Put(e.t.Context(), id, b); err != nil {
		e.t.Fatal(err)
	}
}

// assertSealed checks that a subscription's record holds its secret sealed
// under the key of keyID, and nothing of the secret in clear.
func (e *env) assertSealed(t *testing.T, sub fanout.Subscription, keyID string) {
	t.Helper()
	raw, stored := e.rawRecord(sub.ID)
	key := strings.TrimPrefix(sub.Secret, webhook.SecretPrefix)
	if strings.Contains(string(raw), key) {
		t.Fatalf("the bucket holds subscription %s's secret in clear: %s", sub.ID, raw)
	}
	if id, ok := secretbox.SealedKeyID(stored); !ok || id != keyID {
		t.Fatalf("storedSecret %q: want sealed under key id %s", stored, keyID)
	}
}

// assertNoLeak checks that the log holds none of the texts.
func (e *env) assertNoLeak(t *testing.T, texts ...string) {
	t.Helper()
	log := e.log.String()
	for _, s := range texts {
		if strings.Contains(log, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

func TestSecretsAtRestBucketHoldsNoClearSecret(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("sealed")
	sub := in.subscribe(t, h.url(r), []string{job.EventCompleted}, "")
	r.setSecret(sub.Secret)

	e.assertSealed(t, sub, keyID(t, e.cfg.WebhookSecretKeys[0]))
	// Deliveries are signed with the secret the API answered (the hub verifies).
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "the signed delivery", func() bool { return r.receivedIDs()[ev.ID] == 1 })
	// A read of the subscription does not show it, and after the delivery
	// (its bookkeeping rewrites the record) it is still sealed.
	if got := in.subscription(t, sub.ID); got.Secret != "" {
		t.Fatalf("GET shows the secret: %+v", got)
	}
	e.assertSealed(t, sub, keyID(t, e.cfg.WebhookSecretKeys[0]))
	e.assertNoLeak(t, strings.TrimPrefix(sub.Secret, webhook.SecretPrefix), e.cfg.WebhookSecretKeys[0])
}

// TestSecretsAtRestRotation: with keys [new, old], a record sealed under the
// old key opens and is sealed again under the new one at start.
func TestSecretsAtRestRotation(t *testing.T) {
	oldKey, newKey := newSealKey(), newSealKey()
	e := newEnv(t, func(c *notify.Config) { c.WebhookSecretKeys = []string{oldKey} })
	in := e.start()
	h := newHub(t)
	r := h.receiver("rotated")
	sub := in.subscribe(t, h.url(r), []string{job.EventCompleted}, "")
	r.setSecret(sub.Secret)
	e.assertSealed(t, sub, keyID(t, oldKey))
	in.stop()

	e.cfg.WebhookSecretKeys = []string{newKey, oldKey}
	in = e.start()
	e.assertSealed(t, sub, keyID(t, newKey))
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "the delivery after rotation", func() bool { return r.receivedIDs()[ev.ID] == 1 })
	in.stop()

	// Re-sealed: the old key can go.
	e.cfg.WebhookSecretKeys = []string{newKey}
	e.start()
	ev = e.publish(job.EventCompleted, "j2", job.CompletedData{FileID: "f2"})
	testharness.WaitFor(t, 10*time.Second, "the delivery without the old key", func() bool { return r.receivedIDs()[ev.ID] == 1 })
	e.assertNoLeak(t, strings.TrimPrefix(sub.Secret, webhook.SecretPrefix), oldKey, newKey)
}

// TestSecretsAtRestLegacyClearSecretIsMigrated: with the migration switch
// on, a record an older version wrote with its secret in clear is sealed
// at start and still signs.
func TestSecretsAtRestLegacyClearSecretIsMigrated(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("legacy")
	sub := in.subscribe(t, h.url(r), []string{job.EventCompleted}, "")
	r.setSecret(sub.Secret)
	in.stop()
	e.setStoredSecret(sub.ID, sub.Secret) // as versions before sealing stored it

	e.cfg.MigrateClearSecrets = true
	e.start()
	e.assertSealed(t, sub, keyID(t, e.cfg.WebhookSecretKeys[0]))
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "the delivery after migration", func() bool { return r.receivedIDs()[ev.ID] == 1 })
	e.assertNoLeak(t, strings.TrimPrefix(sub.Secret, webhook.SecretPrefix))
}

// TestSecretsAtRestClearSecretRefusedByDefault: a secret in clear planted
// in the subscriptions bucket (by whoever may write it) signs nothing
// unless the migration switch is on: the subscription's events wait, the
// log names the record and the switch, and the record is left as it is.
func TestSecretsAtRestClearSecretRefusedByDefault(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	ra, rb := h.receiver("sealed"), h.receiver("planted")
	a := in.subscribe(t, h.url(ra), []string{job.EventCompleted}, "")
	b := in.subscribe(t, h.url(rb), []string{job.EventCompleted}, "")
	ra.setSecret(a.Secret)
	const planted = webhook.SecretPrefix + "cGxhbnRlZC1ieS1hbi1hdHRhY2tlci0zMmJ5dGVzISE="
	rb.setSecret(planted)
	in.stop()
	e.setStoredSecret(b.ID, planted)

	e.start()
	testharness.WaitFor(t, 5*time.Second, "the log to name the record stored in clear", func() bool {
		l := e.log.String()
		return strings.Contains(l, "stored in clear") && strings.Contains(l, b.ID) && strings.Contains(l, "VODPIPE_WEBHOOK_MIGRATE_CLEAR_SECRETS")
	})
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "the sealed subscription's delivery", func() bool { return ra.receivedIDs()[ev.ID] == 1 })
	if n := rb.requests(ev.ID); n != 0 {
		t.Fatalf("the planted subscription got %d requests signed with the planted secret", n)
	}
	if _, stored := e.rawRecord(b.ID); stored != planted {
		t.Fatalf("the planted record was rewritten: %q", stored)
	}
	e.assertNoLeak(t, strings.TrimPrefix(planted, webhook.SecretPrefix))
}

// TestSecretsAtRestMovedSecretDoesNotOpen: a sealed secret copied into
// another subscription's record does not open there; that subscription's
// events wait (nothing is signed with a wrong secret) until its own sealed
// secret is back.
func TestSecretsAtRestMovedSecretDoesNotOpen(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	ra, rb := h.receiver("a"), h.receiver("b")
	a := in.subscribe(t, h.url(ra), []string{job.EventCompleted}, "")
	b := in.subscribe(t, h.url(rb), []string{job.EventCompleted}, "")
	ra.setSecret(a.Secret)
	rb.setSecret(b.Secret)
	in.stop()
	_, sealedA := e.rawRecord(a.ID)
	_, sealedB := e.rawRecord(b.ID)
	e.setStoredSecret(b.ID, sealedA)

	in = e.start()
	testharness.WaitFor(t, 5*time.Second, "the log to name the record that does not open", func() bool {
		return strings.Contains(e.log.String(), "does not open") && strings.Contains(e.log.String(), b.ID)
	})
	if _, stored := e.rawRecord(b.ID); stored != sealedA {
		t.Fatalf("the moved value was rewritten: %q", stored)
	}
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "a's delivery", func() bool { return ra.receivedIDs()[ev.ID] == 1 })
	if n := rb.requests(ev.ID); n != 0 {
		t.Fatalf("b got %d requests signed with a secret that is not its own", n)
	}
	if got := in.subscription(t, b.ID); got.Status != fanout.StatusActive {
		t.Fatalf("b = %+v, want active", got)
	}

	e.setStoredSecret(b.ID, sealedB)
	testharness.WaitFor(t, 10*time.Second, "b's delivery once its secret is back", func() bool { return rb.receivedIDs()[ev.ID] == 1 })
	// Its one request is that one: none went out, whenever, while the
	// record held a's sealed secret (the check above, made the moment a
	// had its delivery, could miss a late one).
	if n := rb.requests(ev.ID); n != 1 {
		t.Fatalf("b got %d requests for the event, want the one signed with its own secret", n)
	}
}

// TestSecretsAtRestUnknownKey: a record sealed under a key the config lacks
// is named by its key id only; notify starts, and delivers once the key is back.
func TestSecretsAtRestUnknownKey(t *testing.T) {
	k1, k2 := newSealKey(), newSealKey()
	e := newEnv(t, func(c *notify.Config) { c.WebhookSecretKeys = []string{k1} })
	in := e.start()
	h := newHub(t)
	r := h.receiver("unknown")
	sub := in.subscribe(t, h.url(r), []string{job.EventCompleted}, "")
	r.setSecret(sub.Secret)
	in.stop()
	_, before := e.rawRecord(sub.ID)

	e.cfg.WebhookSecretKeys = []string{k2}
	in = e.start()
	testharness.WaitFor(t, 5*time.Second, "the log to name the unknown key id", func() bool {
		return strings.Contains(e.log.String(), "unknown key") && strings.Contains(e.log.String(), keyID(t, k1))
	})
	if _, after := e.rawRecord(sub.ID); after != before {
		t.Fatal("a record that does not open was rewritten")
	}
	if code := in.call(t, http.MethodGet, "/v1/subscriptions/"+sub.ID, nil, nil); code != http.StatusOK {
		t.Fatalf("GET = %d", code)
	}
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	in.stop()

	e.cfg.WebhookSecretKeys = []string{k2, k1}
	e.start()
	testharness.WaitFor(t, 10*time.Second, "the delivery once the key is back", func() bool { return r.receivedIDs()[ev.ID] == 1 })
	e.assertSealed(t, sub, keyID(t, k2))
	e.assertNoLeak(t, strings.TrimPrefix(sub.Secret, webhook.SecretPrefix), k1, k2)
}

// TestSecretsAtRestKeyConfigRefused: notify does not start without a good
// key; the error names the variable, never the value.
func TestSecretsAtRestKeyConfigRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := newSealKey()
	short := hex.EncodeToString([]byte("sixteen-byte-key"))
	for _, tc := range []struct {
		name  string
		keys  []string
		file  string
		want  string
		value string // must not appear in the error
	}{
		{"unset", nil, "", "VODPIPE_WEBHOOK_SECRET_KEYS_FILE is not set", ""},
		{"short", []string{short}, "", "VODPIPE_WEBHOOK_SECRET_KEYS: key 1", short},
		{"passphrase", []string{good, "hunter2-is-my-passphrase"}, "", "VODPIPE_WEBHOOK_SECRET_KEYS: key 2", "hunter2"},
		{"both", []string{good}, write("both", good), "VODPIPE_WEBHOOK_SECRET_KEYS and VODPIPE_WEBHOOK_SECRET_KEYS_FILE", good},
		{"file missing", nil, filepath.Join(dir, "missing"), "VODPIPE_WEBHOOK_SECRET_KEYS_FILE", ""},
		{"file empty", nil, write("empty", "\n"), "VODPIPE_WEBHOOK_SECRET_KEYS_FILE holds no key", ""},
		{"file bad", nil, write("bad", good+"\n"+short+"\n"), "VODPIPE_WEBHOOK_SECRET_KEYS_FILE: key 2", short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := notify.Config{IntakeConfig: intake.Config{CallbackAuth: intake.CallbackAuthNone},
				FanoutConfig: fanout.Config{WebhookConfig: fanout.WebhookConfig{WebhookSecretKeys: tc.keys, WebhookSecretKeysFile: tc.file}}}
			_, err := notify.New(t.Context(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), good) || tc.value != "" && strings.Contains(err.Error(), tc.value) {
				t.Fatalf("error %q holds a key", err)
			}
		})
	}
}
