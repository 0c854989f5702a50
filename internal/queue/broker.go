package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The layout broker. notify needs consumers of the events stream (one per
// webhook subscription, per replay, per client of its event stream) and
// streams of its own (its subscriptions, its VOD dedupe, its attempt log).
// But a NATS user that may create a consumer can have the server deliver
// it on any subject of the account (a push consumer's deliver subject is
// not checked, nats-io/nats-server#8274), and one that may create or
// update a stream can make it capture or source any subject. So notify
// asks ingest, which checks each request and carries it out with its own
// rights: pull consumers of the events stream only, and notify's own
// streams only with their fixed subjects, no mirror, sources, republish or
// subject transform. notify's NATS user may create neither.

// SubscriptionsRePublish is the one RePublish the broker makes: the
// subscriptions bucket's writes onto SubscriptionChanges.
func SubscriptionsRePublish() *jetstream.RePublish {
	return &jetstream.RePublish{Source: "$KV." + SubscriptionsBucket + ".>", Destination: SubscriptionChanges + ".>"}
}

// Names of notify's own streams, which the broker creates for it.
const (
	SubscriptionsBucket = "vodpipe_subscriptions"
	VODEventsBucket     = "vodpipe_vod_events"
	AttemptsStream      = "VODPIPE_NOTIFY_ATTEMPTS"
	AttemptsPrefix      = "vodpipe.notify.attempts"

	// SubscriptionChanges is where JetStream publishes again each stored
	// write of the subscriptions bucket, in stream order: notify's
	// dispatchers follow it (see FollowRepublished).
	SubscriptionChanges = "vodpipe.subscriptions"

	// LayoutSubject is the broker's request subject.
	LayoutSubject = "vodpipe.layout"
	layoutQueue   = "vodpipe-layout"
)

// layoutRequest asks for one consumer, stream or bucket, created or updated.
type layoutRequest struct {
	Consumer *jetstream.ConsumerConfig `json:"consumer,omitempty"`
	Stream   *jetstream.StreamConfig   `json:"stream,omitempty"`
	Bucket   *jetstream.KeyValueConfig `json:"bucket,omitempty"`
}

type layoutResponse struct {
	// Name is the consumer's, when one was asked for.
	Name  string `json:"name,omitempty"`
	Error string `json:"error,omitempty"`
	// NotReady says the error is JetStream's "not yet" (a timeout, no
	// leader, no quorum): asking again later may succeed.
	NotReady bool `json:"notReady,omitempty"`
}

// ErrLayoutNotReady is the broker's answer when JetStream could not carry
// out the request yet (NotReady holds for it: a service starting waits).
var ErrLayoutNotReady = errors.New("queue: JetStream not ready for the layout request")

// ErrLayoutRefused is a request the broker does not carry out.
var ErrLayoutRefused = errors.New("queue: layout request refused")

// checkLayout tells why the broker refuses r, or nil.
// maxLayoutFilters and maxLayoutFilterLen bound the filter subjects of a
// consumer asked for: an event type and a job id (job.MaxIDLen) take far
// fewer.
const (
	maxLayoutFilters   = 64
	maxLayoutFilterLen = 512
)

func checkLayout(r *layoutRequest) error {
	n := 0
	for _, set := range []bool{r.Consumer != nil, r.Stream != nil, r.Bucket != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("ask for one consumer, stream or bucket")
	}
	switch {
	case r.Consumer != nil:
		c := r.Consumer
		if c.DeliverSubject != "" || c.DeliverGroup != "" {
			return errors.New("only pull consumers (no deliver subject)")
		}
		filters := slices.Clone(c.FilterSubjects)
		if c.FilterSubject != "" {
			filters = append(filters, c.FilterSubject)
		}
		if len(filters) == 0 {
			return errors.New("a consumer names the events it takes (a filter subject)")
		}
		if len(filters) > maxLayoutFilters {
			return fmt.Errorf("%d filter subjects, at most %d", len(filters), maxLayoutFilters)
		}
		for _, f := range filters {
			if !strings.HasPrefix(f, EventsPrefix+".") {
				return fmt.Errorf("filter subject %q is not an event's", f)
			}
			// A consumer of one filter is created on a subject that holds
			// it, and a request's subject past the server's control line
			// (4 KiB) closes the broker's own connection.
			if len(f) > maxLayoutFilterLen {
				return fmt.Errorf("a filter subject of %d bytes, at most %d", len(f), maxLayoutFilterLen)
			}
		}
	case r.Stream != nil:
		s := r.Stream
		if s.Name != AttemptsStream || !slices.Equal(s.Subjects, []string{AttemptsPrefix + ".>"}) {
			return fmt.Errorf("stream %q with subjects %v is not notify's attempt log", s.Name, s.Subjects)
		}
		if s.Mirror != nil || len(s.Sources) > 0 || s.RePublish != nil || s.SubjectTransform != nil {
			return errors.New("no mirror, sources, republish or subject transform")
		}
	case r.Bucket != nil:
		b := r.Bucket
		if b.Bucket != SubscriptionsBucket && b.Bucket != VODEventsBucket {
			return fmt.Errorf("bucket %q is not one of notify's", b.Bucket)
		}
		if b.Mirror != nil || len(b.Sources) > 0 {
			return errors.New("no mirror or sources")
		}
		// One RePublish only: the subscriptions bucket's, onto its own
		// subjects (SubscriptionChanges), which notify follows.
		if rp := b.RePublish; rp != nil && (b.Bucket != SubscriptionsBucket || *rp != *SubscriptionsRePublish()) {
			return errors.New("no republish but the subscriptions bucket's onto " + SubscriptionChanges + ".>")
		}
	}
	return nil
}

// ServeLayout answers layout requests on nc (a queue group: every ingest
// replica serves) until the returned subscription is drained. The requests
// come from notify's account, their reply subjects mapped by the server.
func ServeLayout(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(LayoutSubject, layoutQueue, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		var r layoutRequest
		resp := layoutResponse{}
		err := json.Unmarshal(m.Data, &r)
		if err == nil {
			err = checkLayout(&r)
			if err != nil {
				log.Warn("layout request refused", "reason", err.Error())
				err = fmt.Errorf("%w: %w", ErrLayoutRefused, err)
			}
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp.Name, err = applyLayout(ctx, js, &r)
			cancel()
			if err != nil {
				log.Warn("layout request failed", "err", err)
			}
		}
		if err != nil {
			resp.Error, resp.NotReady = err.Error(), NotReady(err)
		}
		b, _ := json.Marshal(resp)
		_ = m.Respond(b)
	})
	if err != nil {
		return nil, fmt.Errorf("queue: serve layout: %w", err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("queue: serve layout: %w", err)
	}
	return sub, nil
}

func applyLayout(ctx context.Context, js jetstream.JetStream, r *layoutRequest) (string, error) {
	switch {
	case r.Consumer != nil:
		c, err := js.CreateOrUpdateConsumer(ctx, EventsStream, *r.Consumer)
		if err != nil {
			return "", err
		}
		return c.CachedInfo().Name, nil
	case r.Stream != nil:
		_, err := js.CreateOrUpdateStream(ctx, *r.Stream)
		return "", err
	default:
		_, err := js.CreateOrUpdateKeyValue(ctx, *r.Bucket)
		return "", err
	}
}

// Layout asks ingest's broker for notify's consumers and streams, and
// looks up what it made with the caller's own (read) rights.
type Layout struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewLayout returns the broker's client on js's connection.
func NewLayout(js jetstream.JetStream) *Layout { return &Layout{nc: js.Conn(), js: js} }

func (l *Layout) ask(ctx context.Context, r layoutRequest) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	m, err := l.nc.RequestWithContext(ctx, LayoutSubject, b)
	if err != nil {
		return "", fmt.Errorf("queue: ask ingest for the layout: %w", err)
	}
	var resp layoutResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return "", fmt.Errorf("queue: ingest's layout answer: %w", err)
	}
	if resp.Error != "" && resp.NotReady {
		return "", fmt.Errorf("queue: ingest's layout broker: %w: %s", ErrLayoutNotReady, resp.Error)
	}
	if resp.Error != "" {
		return "", fmt.Errorf("queue: ingest's layout broker: %s", resp.Error)
	}
	return resp.Name, nil
}

// Consumer creates or updates a pull consumer of the events stream.
func (l *Layout) Consumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	name, err := l.ask(ctx, layoutRequest{Consumer: &cfg})
	if err != nil {
		return nil, err
	}
	return l.js.Consumer(ctx, EventsStream, name)
}

// Stream creates or updates notify's attempt log.
func (l *Layout) Stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if _, err := l.ask(ctx, layoutRequest{Stream: &cfg}); err != nil {
		return nil, err
	}
	return l.js.Stream(ctx, cfg.Name)
}

// Bucket creates or updates one of notify's buckets.
func (l *Layout) Bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if _, err := l.ask(ctx, layoutRequest{Bucket: &cfg}); err != nil {
		return nil, err
	}
	return l.js.KeyValue(ctx, cfg.Bucket)
}
