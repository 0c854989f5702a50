package fanout

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// EventSubscriptionDisabled is published when notify disables a webhook
// subscription (its endpoint answered 410 Gone, or kept failing). It is an
// event of no job.
const EventSubscriptionDisabled = "subscription.disabled"

// EventTypes lists every event type vodpipe publishes, the set subscription
// filters are checked against.
var EventTypes = []string{
	job.EventQueued, job.EventStarted, job.EventProgress, job.EventPaused, job.EventResumed,
	job.EventCanceled, job.EventFailed, job.EventCompleted,
	job.EventVODFileUpload, job.EventVODProcedure,
	EventSubscriptionDisabled,
}

// SubscriptionDisabledData is the data of subscription.disabled. It names
// the subscription but not its URL, which other subscribers need not see.
type SubscriptionDisabledData struct {
	SubscriptionID string    `json:"subscriptionId"`
	Reason         string    `json:"reason"`
	LastStatus     int       `json:"lastStatus,omitempty"`
	DisabledAt     time.Time `json:"disabledAt"`
}

// Reasons a subscription is disabled.
const (
	DisabledGone    = "gone"    // the endpoint answered 410 Gone
	DisabledFailing = "failing" // events kept exhausting every attempt
	// DisabledOperator is an operator's pause (POST .../disable); the
	// subscription's record names the key that paused it, the event does
	// not (it may go to outside receivers).
	DisabledOperator = "operator"
)

// typePattern is one event-type filter: "*", "<namespace>.*" or an exact type.
var typeWord = regexp.MustCompile(`^[a-z][a-z_]*$`)

// checkTypePattern says what is wrong with an event-type filter, or "".
func checkTypePattern(p string) string {
	if p == "*" {
		return ""
	}
	ns, name, ok := strings.Cut(p, ".")
	if !ok || !typeWord.MatchString(ns) || (name != "*" && !typeWord.MatchString(name)) {
		return fmt.Sprintf("%q is not an event type, <namespace>.* or *", p)
	}
	for _, t := range EventTypes {
		if t == p || name == "*" && strings.HasPrefix(t, ns+".") {
			return ""
		}
	}
	return fmt.Sprintf("%q matches no event type (known: %s)", p, strings.Join(EventTypes, ", "))
}

// matchType reports whether an event type matches one filter.
func matchType(pattern, typ string) bool {
	if pattern == "*" || pattern == typ {
		return true
	}
	ns, ok := strings.CutSuffix(pattern, ".*")
	return ok && strings.HasPrefix(typ, ns+".")
}

// matchTypes reports whether an event type matches any filter.
func matchTypes(patterns []string, typ string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matchType(p, typ) })
}

// normalizeTypes drops filters that a broader one already covers and sorts
// the rest: JetStream refuses a consumer whose subject filters overlap.
func normalizeTypes(patterns []string) []string {
	if slices.Contains(patterns, "*") {
		return []string{"*"}
	}
	var out []string
	for _, p := range patterns {
		ns, _, _ := strings.Cut(p, ".")
		if p != ns+".*" && slices.Contains(patterns, ns+".*") {
			continue
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// eventHead is the part of an envelope the fan-out looks at.
type eventHead struct {
	ID    string    `json:"id"`
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	JobID string    `json:"jobId"`
}

func decodeHead(b []byte) (eventHead, error) {
	var h eventHead
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: %v", job.ErrEventMalformed, err)
	}
	if h.ID == "" || h.Type == "" {
		return h, fmt.Errorf("%w: id and type are required", job.ErrEventMalformed)
	}
	return h, nil
}
