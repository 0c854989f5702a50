package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

// TestStatusRetentionShorterThanAnIdempotencyKeyIsRefused: an
// Idempotency-Key's record is kept 24 h, and a retry with the key is
// answered with the job's status. With a shorter status retention, a retry
// after a finished job's status expired was taken as a new job of the same
// id (201, and a second upload of a completed job). Ingest refuses such a
// retention at start, naming the variable and the minimum; forever (-1s)
// stays allowed.
func TestStatusRetentionShorterThanAnIdempotencyKeyIsRefused(t *testing.T) {
	n := testharness.StartNATS(t)
	cfg := ingest.Config{
		NATS: natsconf.NATS{URL: n.URL}, QueueConfig: ingest.QueueConfig{StatusRetention: 2 * time.Second},
		Credentials: config.Credentials{SecretID: testharness.VodsimSecretID, SecretKey: testharness.VodsimSecretKey},
		Policy:      signer.Policy{Procedures: []string{"LongVideoPreset"}, StorageRegions: []string{"ap-guangzhou"}, MaxValidity: time.Hour},
	}
	s, err := ingest.New(t.Context(), cfg, nil)
	if err == nil {
		s.Close()
		t.Fatal("ingest took a status retention of 2s: an Idempotency-Key retry after the status expired runs the job again")
	}
	if !strings.Contains(err.Error(), "VODPIPE_STATUS_RETENTION") || !strings.Contains(err.Error(), "at least 24h") {
		t.Fatalf("refusal %q names neither VODPIPE_STATUS_RETENTION nor its minimum (24h)", err)
	}
	a := startIngest(t, func(c *ingest.Config) { c.StatusRetention = -time.Second })
	k1 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"source":"file:///in/k.mp4"}`, "Idempotency-Key", "retry-me")
	k2 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"source":"file:///in/k.mp4"}`, "Idempotency-Key", "retry-me")
	if k1.status != 201 || k2.status != 200 || k1.body["id"] != k2.body["id"] {
		t.Fatalf("with statuses kept forever, a retry by Idempotency-Key: %d %v / %d %v", k1.status, k1.body["id"], k2.status, k2.body["id"])
	}
}
