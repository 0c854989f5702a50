package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Outcomes of a VOD event, the label values of vodpipe_notify_vod_events_total.
const (
	vodPublished    = "published"              // published with its job id
	vodByMediaURL   = "published_by_media_url" // published with its job id, found by the file's storage path
	vodUncorrelated = "uncorrelated"           // published without: no job is known for the FileId
	vodDuplicate    = "duplicate"              // a repeat of an event already published
	vodIgnored      = "ignored"                // an EventType vodpipe does not publish
	vodInvalid      = "invalid"
	vodError        = "error" // not published; VOD delivers it again
)

// VODResult is the answer to a VOD event: what was published.
type VODResult struct {
	EventID   string `json:"eventId,omitempty"`
	Type      string `json:"type,omitempty"`
	JobID     string `json:"jobId,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Ignored is set for event types vodpipe does not publish; they are
	// acknowledged so VOD stops sending them.
	Ignored   bool   `json:"ignored,omitempty"`
	EventType string `json:"vodEventType,omitempty"`
}

// errVODEventInvalid marks an event that will never be publishable.
var errVODEventInvalid = errors.New("notify: VOD event invalid")

// HandleCallback serves POST /v1/vod/callback, VOD's normal callback. VOD
// does not sign these requests: the configured callback URL must carry
// CallbackToken as ?token=, unless CallbackAuth is none. A call without it
// is refused before its body is read, so a forged event is never recorded
// (and VOD's real one is not taken for its repeat). The answer is 200 once the event
// is durably on the EVENTS stream (or known to be a repeat), 400 for a body
// that is not a VOD event (VOD's retries would not fix it), and 503 when
// publishing failed, so that VOD delivers again.
func (in *Intake) HandleCallback(w http.ResponseWriter, r *http.Request) {
	if in.cfg.CallbackAuth != CallbackAuthNone && (in.cfg.CallbackToken == "" || !tokenEqual(r.URL.Query().Get("token"), in.cfg.CallbackToken)) {
		httpapi.Write(w, &httpapi.Error{Status: http.StatusUnauthorized, Code: httpapi.CodeBadToken, Message: "the callback token is missing or wrong"})
		return
	}
	body, e := httpapi.ReadBody(w, r, vod.MaxEventSize)
	if e != nil {
		if e.Code == httpapi.CodeBodyTooLarge {
			in.metrics.vodEvents.WithLabelValues("callback", vodInvalid).Inc()
		}
		httpapi.Write(w, e)
		return
	}
	ev, err := vod.ParseEvent(body)
	if err != nil {
		in.metrics.vodEvents.WithLabelValues("callback", vodInvalid).Inc()
		httpapi.Write(w, &httpapi.Error{Status: http.StatusBadRequest, Code: httpapi.CodeBadEvent, Message: err.Error()})
		return
	}
	// VOD hanging up does not stop the publication: its retry then finds it done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), in.cfg.CorrelationWait+15*time.Second)
	defer cancel()
	res, err := in.ingestVODEvent(ctx, ev, "callback")
	switch {
	case errors.Is(err, errVODEventInvalid):
		httpapi.Write(w, &httpapi.Error{Status: http.StatusBadRequest, Code: httpapi.CodeBadEvent, Message: err.Error()})
	case err != nil:
		httpapi.Write(w, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable, Message: "the event could not be recorded; deliver it again"})
	default:
		httpapi.WriteJSON(w, http.StatusOK, res)
	}
}

func tokenEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// fileIDPattern is what a FileId may be: VOD's are decimal numbers.
var fileIDPattern = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

// procedureEvent is the part of VOD's ProcedureStateChangeEvent vodpipe lifts out.
type procedureEvent struct {
	TaskID         string `json:"TaskId"`
	Status         string `json:"Status"`
	ErrCode        int64  `json:"ErrCode"`
	Message        string `json:"Message"`
	FileID         string `json:"FileId"`
	SessionContext string `json:"SessionContext"`
}

// ingestVODEvent publishes one VOD event once.
//
// De-duplication: the event's id is derived from what identifies it (for
// NewFileUpload, EventType and FileId; for ProcedureStateChanged, the task
// id and the event's content), so every delivery of one VOD event becomes
// the same vodpipe event id. A marker in the VODEventsBucket (kept
// VODDedupeTTL) answers VOD's repeats without publishing; two deliveries
// racing past the marker publish with the same Nats-Msg-Id, which the EVENTS
// stream's duplicate window drops. Should the marker be lost after a
// publication, a later repeat is published again with the same event id,
// which subscribers de-duplicate by webhook-id.
//
// Correlation: the job is looked up by FileId. The worker records FileId →
// job right after CommitUploadUGC answers, and VOD may call back before
// that, so a NewFileUpload whose FileId is not mapped yet waits for the
// mapping (a key watch, not a poll) up to CorrelationWait. If none appears
// (the worker died or lost NATS after its commit), the event's MediaUrl is
// looked up by its storage path, which the worker recorded before the
// commit (see correlate). Only when that finds nothing either is the event
// published without a job id: an upload vodpipe did not make, such as a
// browser upload, or one whose path record could not be written or has
// expired.
func (in *Intake) ingestVODEvent(ctx context.Context, ev *vod.Event, source string) (VODResult, error) {
	var (
		typ, fileID string
		mediaURL    string // NewFileUpload: the file's URL, the fallback to find its job
		data        any
		identity    []string
		wait        bool
	)
	switch ev.EventType {
	case vod.EventTypeNewFileUpload:
		f, ok := ev.FileUpload()
		if !ok || f.FileID == "" {
			in.metrics.vodEvents.WithLabelValues(source, vodInvalid).Inc()
			return VODResult{}, fmt.Errorf("%w: FileUploadEvent.FileId missing", errVODEventInvalid)
		}
		typ, fileID, mediaURL, wait = job.EventVODFileUpload, f.FileID, f.MediaURL, true
		data = job.FileUploadedData{FileID: f.FileID, MediaURL: f.MediaURL, CoverURL: f.CoverURL,
			SourceContext: f.SourceContext, ProcedureTaskID: f.ProcedureTaskID}
		identity = []string{ev.EventType, f.FileID}
	case vod.EventTypeProcedureStateChanged:
		var p procedureEvent
		var raw bytes.Buffer
		if len(ev.ProcedureStateChangeEvent) == 0 || json.Unmarshal(ev.ProcedureStateChangeEvent, &p) != nil ||
			json.Compact(&raw, ev.ProcedureStateChangeEvent) != nil {
			in.metrics.vodEvents.WithLabelValues(source, vodInvalid).Inc()
			return VODResult{}, fmt.Errorf("%w: ProcedureStateChangeEvent missing or not an object", errVODEventInvalid)
		}
		if p.TaskID == "" {
			in.metrics.vodEvents.WithLabelValues(source, vodInvalid).Inc()
			return VODResult{}, fmt.Errorf("%w: ProcedureStateChangeEvent.TaskId missing", errVODEventInvalid)
		}
		// Correlated as a NewFileUpload is, waiting for the worker's FileId
		// record (a change may come a moment before it), with no media URL
		// to fall back on.
		typ, fileID, wait = job.EventVODProcedure, p.FileID, true
		data = ProcedureChangedData{TaskID: p.TaskID, Status: p.Status, FileID: p.FileID, ErrCode: p.ErrCode,
			Message: p.Message, SessionContext: p.SessionContext, Event: raw.Bytes()}
		sum := sha256.Sum256(raw.Bytes())
		identity = []string{ev.EventType, p.TaskID, hex.EncodeToString(sum[:])}
	default:
		in.metrics.vodEvents.WithLabelValues(source, vodIgnored).Inc()
		return VODResult{Ignored: true, EventType: ev.EventType}, nil
	}
	if fileID != "" && !fileIDPattern.MatchString(fileID) {
		// It becomes a key of the files bucket: one that is none (a space,
		// a wildcard, kilobytes) could never be looked up.
		in.metrics.vodEvents.WithLabelValues(source, vodInvalid).Inc()
		return VODResult{}, fmt.Errorf("%w: FileId %.40q is not a file id (at most 64 letters, digits, '_' or '-')", errVODEventInvalid, fileID)
	}

	key := vodEventKey(identity)
	eventID := "vod-" + key[:24]
	if e, err := in.seen.Get(ctx, key); err == nil {
		var seen VODResult
		_ = json.Unmarshal(e.Value(), &seen)
		seen.Duplicate = true
		in.metrics.vodEvents.WithLabelValues(source, vodDuplicate).Inc()
		return seen, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		in.metrics.vodEvents.WithLabelValues(source, vodError).Inc()
		return VODResult{}, fmt.Errorf("notify: dedupe lookup: %w", err)
	}

	jobID, byURL, err := in.correlate(ctx, fileID, mediaURL, wait)
	if err != nil {
		in.metrics.vodEvents.WithLabelValues(source, vodError).Inc()
		return VODResult{}, err
	}
	b, err := json.Marshal(data)
	if err != nil {
		return VODResult{}, err
	}
	e := &job.Event{ID: eventID, Type: typ, Time: time.Now().UTC(), JobID: jobID, Data: b}
	dup, err := in.events.PublishOnce(ctx, e)
	if err != nil {
		in.metrics.vodEvents.WithLabelValues(source, vodError).Inc()
		in.log.Error("publish VOD event", "type", typ, "file_id", fileID, "err", err)
		return VODResult{}, err
	}
	res := VODResult{EventID: eventID, Type: typ, JobID: jobID}
	marker, _ := json.Marshal(res)
	if _, err := in.seen.Put(ctx, key, marker); err != nil {
		// Published already; a repeat is dropped by the stream or re-sent with the same id.
		in.log.Warn("record VOD event marker", "event", eventID, "err", err)
	}
	res.Duplicate = dup
	outcome := vodPublished
	switch {
	case dup:
		outcome = vodDuplicate
	case jobID == "":
		outcome = vodUncorrelated
	case byURL:
		outcome = vodByMediaURL
	}
	in.metrics.vodEvents.WithLabelValues(source, outcome).Inc()
	in.log.Info("VOD event", "source", source, "type", typ, "file_id", fileID, "job_id", jobID, "event", eventID, "outcome", outcome)
	return res, nil
}

// vodEventKey is the hex SHA-256 of an event's identity, a valid KV key.
func vodEventKey(identity []string) string {
	h := sha256.New()
	for _, p := range identity {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// correlate finds the job of a FileId, waiting up to CorrelationWait when
// wait is set. Should no mapping appear, a media URL is looked up by its
// storage path, which the worker records before each commit: that finds the
// job of a worker that died between its commit and recording the FileId
// (the mapping is then recorded here, for the file's later events). No job
// is "" without error; a store failure is an error, so the event is
// delivered again rather than published uncorrelated. byURL says the job
// was found by the media URL.
func (in *Intake) correlate(ctx context.Context, fileID, mediaURL string, wait bool) (id string, byURL bool, err error) {
	if fileID == "" {
		return "", false, nil
	}
	if wait && in.cfg.CorrelationWait > 0 {
		wctx, cancel := context.WithTimeout(ctx, in.cfg.CorrelationWait)
		id, err = in.watch.Wait(wctx, fileID)
		cancel()
	} else {
		id, err = in.files.JobFor(ctx, fileID)
	}
	if errors.Is(err, queue.ErrNotFound) && mediaURL != "" {
		if id, err = in.files.JobForMediaURL(ctx, mediaURL); err == nil {
			byURL = true
			if rerr := in.files.Record(ctx, fileID, id); rerr != nil {
				in.log.Warn("record FileId of a job found by its media URL", "file_id", fileID, "job_id", id, "err", rerr)
			}
			in.log.Info("VOD event correlated by its media URL: the worker has not recorded the FileId", "file_id", fileID, "job_id", id)
		}
	}
	if errors.Is(err, queue.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("notify: correlate %s: %w", fileID, err)
	}
	return id, byURL, nil
}
