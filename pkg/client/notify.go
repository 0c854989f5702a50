package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// The notify API (docs/notify-openapi.json): a Client made with notify's
// URL manages webhook subscriptions; its Events reads the event stream.

// Subscription is a webhook subscription as notify shows it.
type Subscription struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	EventTypes  []string `json:"eventTypes"`
	JobID       string   `json:"jobId,omitempty"`
	Description string   `json:"description,omitempty"`
	// Secret is the signing secret (whsec_…), in the answer that created it only.
	Secret              string     `json:"secret,omitempty"`
	Status              string     `json:"status"`
	DisabledReason      string     `json:"disabledReason,omitempty"`
	DisabledAt          *time.Time `json:"disabledAt,omitempty"`
	CreatedAt           time.Time  `json:"createdAt"`
	ConsecutiveFailures int        `json:"consecutiveFailures"`
	Replays             []Replay   `json:"replays,omitempty"`
	// Backlog is what waits for delivery, as of its last refresh
	// (VODPIPE_NOTIFY_BACKLOG_INTERVAL); absent until the first.
	Backlog *Backlog `json:"backlog,omitempty"`
}

// Backlog is a subscription's delivery backlog.
type Backlog struct {
	// Pending events are stored and not yet sent.
	Pending uint64 `json:"pending"`
	// InFlight events are being sent or wait for a retry.
	InFlight uint64 `json:"inFlight"`
	// At is when it was read.
	At time.Time `json:"at"`
}

// SubscriptionRequest creates a subscription.
type SubscriptionRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"eventTypes,omitempty"`
	JobID       string   `json:"jobId,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Replay is a re-send of a subscription's stored events.
type Replay struct {
	ID        string    `json:"id"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	UpToSeq   uint64    `json:"upToSeq"`
	CreatedAt time.Time `json:"createdAt"`
	// Pending bounds the events it will send (in the answer that started it).
	Pending uint64 `json:"pending,omitempty"`
	// EventSeq, EventType and JobID are set on a replay of one event: its
	// sequence in the events stream (an attempt's eventSeq), its type and job.
	EventSeq  uint64 `json:"eventSeq,omitempty"`
	EventType string `json:"eventType,omitempty"`
	JobID     string `json:"jobId,omitempty"`
}

// Attempt is one delivery attempt of an event to a subscription.
type Attempt struct {
	SubscriptionID string `json:"subscriptionId"`
	EventID        string `json:"eventId"`
	EventType      string `json:"eventType"`
	// EventSeq is the event's sequence in the events stream: replay it
	// alone with ReplayEvent.
	EventSeq      uint64     `json:"eventSeq,omitempty"`
	JobID         string     `json:"jobId,omitempty"`
	ReplayID      string     `json:"replayId,omitempty"`
	Attempt       int        `json:"attempt"`
	Outcome       string     `json:"outcome"`
	Status        int        `json:"status,omitempty"`
	Error         string     `json:"error,omitempty"`
	Response      string     `json:"response,omitempty"`
	DurationMS    float64    `json:"durationMs"`
	Time          time.Time  `json:"time"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
}

// Subscriptions lists the subscriptions, oldest first.
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/subscriptions", "", nil, &out)
	return out.Subscriptions, err
}

// CreateSubscription creates one; the answer holds its signing secret.
func (c *Client) CreateSubscription(ctx context.Context, r SubscriptionRequest) (Subscription, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return Subscription{}, err
	}
	var out Subscription
	_, err = c.do(ctx, http.MethodPost, "/v1/subscriptions", "application/json", b, &out)
	return out, err
}

// DeleteSubscription deletes one.
func (c *Client) DeleteSubscription(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/subscriptions/"+url.PathEscape(id), "", nil, nil)
	return err
}

// Attempts lists a subscription's latest delivery attempts, newest first.
func (c *Client) Attempts(ctx context.Context, id string, limit int) ([]Attempt, error) {
	var out struct {
		Attempts []Attempt `json:"attempts"`
	}
	_, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/subscriptions/%s/attempts?limit=%d", url.PathEscape(id), limit), "", nil, &out)
	return out.Attempts, err
}

// ReplaySubscription re-sends the subscription's events stored between
// since and until (zero: now).
func (c *Client) ReplaySubscription(ctx context.Context, id string, since, until time.Time) (Replay, error) {
	body := map[string]any{"since": since.UTC()}
	if !until.IsZero() {
		body["until"] = until.UTC()
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Replay{}, err
	}
	var out Replay
	_, err = c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(id)+"/replay", "application/json", b, &out)
	return out, err
}

// ReplayEvent re-sends one stored event to the subscription: the event at
// seq in the events stream (an Attempt's EventSeq).
func (c *Client) ReplayEvent(ctx context.Context, id string, seq uint64) (Replay, error) {
	b, err := json.Marshal(map[string]any{"eventSeq": seq})
	if err != nil {
		return Replay{}, err
	}
	var out Replay
	_, err = c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(id)+"/replay", "application/json", b, &out)
	return out, err
}

// EnableSubscription re-enables a disabled subscription; delivery resumes
// where it stopped.
func (c *Client) EnableSubscription(ctx context.Context, id string) (Subscription, error) {
	var out Subscription
	_, err := c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(id)+"/enable", "", nil, &out)
	return out, err
}

// DisableSubscription stops a subscription's deliveries until it is
// enabled again; its events wait, stored.
func (c *Client) DisableSubscription(ctx context.Context, id string) (Subscription, error) {
	var out Subscription
	_, err := c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(id)+"/disable", "", nil, &out)
	return out, err
}

// Subscription returns one subscription.
func (c *Client) Subscription(ctx context.Context, id string) (Subscription, error) {
	var out Subscription
	_, err := c.do(ctx, http.MethodGet, "/v1/subscriptions/"+url.PathEscape(id), "", nil, &out)
	return out, err
}
