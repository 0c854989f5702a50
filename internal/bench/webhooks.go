package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// webhooks is an application's webhook endpoint on loopback, subscribed at
// notify to job.completed and job.failed. It does what a receiver must (reads
// the body, verifies the Standard Webhooks signature) and records when each
// job's job.completed was delivered, and the time on the event (when the
// worker published it, right after the commit). A job.failed ends the wait.
type webhooks struct {
	*arrivalLog
	srv       *http.Server
	committed *arrivalLog // job id → the time on its first job.completed
	secret    atomic.Pointer[string]
	bad       atomic.Int64
}

// subscribeWebhooks starts the endpoint and creates its subscription through
// notify's API; stop it when done.
func subscribeWebhooks(ctx context.Context, notifyURL, apiKey string) (*webhooks, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &webhooks{arrivalLog: newArrivalLog(), committed: newArrivalLog()}
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.srv.Serve(ln) }()
	body, _ := json.Marshal(map[string]any{"url": "http://" + ln.Addr().String() + "/webhook",
		"eventTypes": []string{job.EventCompleted, job.EventFailed}, "description": "vodpipe bench P3"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, notifyURL+"/v1/subscriptions", bytes.NewReader(body))
	if err != nil {
		w.stop()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.stop()
		return nil, fmt.Errorf("subscribe at notify: %w", err)
	}
	defer resp.Body.Close()
	var sub fanout.Subscription
	if err := json.NewDecoder(resp.Body).Decode(&sub); err != nil || resp.StatusCode != http.StatusCreated || sub.Secret == "" {
		w.stop()
		return nil, fmt.Errorf("subscribe at notify: %s (%v)", resp.Status, err)
	}
	w.secret.Store(&sub.Secret)
	return w, nil
}

func (w *webhooks) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	at := time.Now()
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	secret := w.secret.Load()
	if secret == nil {
		http.Error(rw, "not subscribed yet", http.StatusServiceUnavailable)
		return
	}
	if _, err := webhook.Verify(*secret, r.Header, b, at, 0); err != nil {
		w.bad.Add(1)
		http.Error(rw, err.Error(), http.StatusUnauthorized)
		return
	}
	e, err := job.DecodeEvent(b)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	switch e.Type {
	case job.EventCompleted:
		w.committed.arrived(e.JobID, e.Time)
		w.arrived(e.JobID, at)
	case job.EventFailed:
		w.failed(e.JobID, string(e.Data))
	}
	rw.WriteHeader(http.StatusNoContent)
}

// committedAt is the time on each job's job.completed, for jobs delivered.
func (w *webhooks) committedAt(ids []string) map[string]time.Time { return w.committed.times(ids) }

// invalid counts deliveries whose signature did not verify.
func (w *webhooks) invalid() int64 { return w.bad.Load() }

func (w *webhooks) stop() { _ = w.srv.Close() }
