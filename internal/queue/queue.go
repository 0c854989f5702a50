// Package queue holds vodpipe's JetStream layout: the JOBS work queue, the
// EVENTS stream, the dead-letter stream, and the key-value buckets for job
// status, job control and FileId → job lookups. Ingest owns the layout: it
// creates it idempotently with Open, and a changed config updates what
// exists. Worker and notify Attach to it and never change it.
package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Names of the streams, buckets and consumer, and the subjects they hold.
const (
	JobsStream    = "VODPIPE_JOBS"
	EventsStream  = "VODPIPE_EVENTS"
	DLQStream     = "VODPIPE_DLQ"
	StatusBucket  = "vodpipe_status"
	ControlBucket = "vodpipe_control"
	// ResumeBucket holds the workers' resume state and leases when they
	// keep them in NATS (no Redis; internal/resume's KV works on it).
	ResumeBucket = "vodpipe_resume"
	FilesBucket  = "vodpipe_files"
	// FilesChanges is where JetStream publishes again each write of the
	// files bucket (its RePublish): notify's watch of new FileIds
	// subscribes there. The writes themselves (a worker's, through its
	// account's service import) never reach another account's subscription
	// to $KV.vodpipe_files.>: nats-server does not pass a message that came
	// in through a service import on to a stream export. JetStream's own
	// publish does.
	FilesChanges = "vodpipe.files"
	// ControlChanges is where JetStream publishes again each stored write
	// of the control bucket, in stream order: workers follow the controls
	// there (Control.Watch), so a write JetStream refused, or one that
	// reached a worker's server before an earlier one, never takes a
	// pause or cancel out of their views.
	ControlChanges = "vodpipe.control"
	UploadsBucket  = "vodpipe_uploads"
	WorkerConsumer = "workers"

	// JobsSubject is where jobs are published, by ingest or straight by publishers.
	JobsSubject = "vodpipe.jobs.submit"
	// jobsSubjects is what the JOBS stream holds.
	jobsSubjects = "vodpipe.jobs.>"
	// EventsPrefix prefixes event subjects: vodpipe.events.<type>.<job id>.
	EventsPrefix = "vodpipe.events"
	// DLQPrefix prefixes dead-letter subjects: vodpipe.dlq.<job id>.
	DLQPrefix = "vodpipe.dlq"
)

// Config tunes the JetStream layout. Zero values take the defaults.
type Config struct {
	// Replicas of every stream and bucket (3 in a NATS cluster).
	Replicas int `envconfig:"NATS_REPLICAS" default:"1" desc:"replicas of every JetStream stream and bucket"`
	// DuplicateWindow is how long a job id is remembered to drop a repeated publish.
	DuplicateWindow time.Duration `envconfig:"JOBS_DUPLICATE_WINDOW" default:"1h" desc:"how long a repeated job id is dropped by JetStream"`
	// RepublishWindow: a job submitted again this soon after its status
	// was created, still queued and never run, has its message published
	// again (JetStream drops it as a duplicate if it was stored). It mends
	// a submit whose ingest died between writing the status and publishing
	// the job: the client's retry publishes it. Later resubmissions (a
	// library submitted again) cost their reads only. At most half the
	// duplicate window.
	RepublishWindow time.Duration `envconfig:"JOBS_REPUBLISH_WINDOW" default:"5m" desc:"a job submitted again this soon after its first submit, still queued and never run, is published again (deduplicated by JetStream): a retry mends a submit whose ingest died before publishing; at most half of VODPIPE_JOBS_DUPLICATE_WINDOW (-1s: off)"`
	// AckWait is how long a delivered job may go without an ack or in-progress signal.
	AckWait time.Duration `envconfig:"JOBS_ACK_WAIT" default:"30s" desc:"redelivery timeout of a job without progress signals"`
	// MaxDeliver bounds the runs of one job (job.Status.Runs): a worker
	// dead-letters a job that many runs ended without an outcome (the
	// consumer itself has no delivery bound).
	MaxDeliver int `envconfig:"JOBS_MAX_DELIVER" default:"10" desc:"runs of a job (started, then died or failed transiently) before a worker dead-letters it (workers apply it; at least 1)"`
	// MaxAckPending bounds jobs in flight across all workers.
	MaxAckPending int `envconfig:"JOBS_MAX_ACK_PENDING" default:"1000" desc:"jobs in flight across all workers"`
	// EventsMaxAge is how long events are kept for replay.
	EventsMaxAge time.Duration `envconfig:"EVENTS_MAX_AGE" default:"168h" desc:"how long job events are kept"`
	// DLQMaxAge is how long dead letters are kept.
	DLQMaxAge time.Duration `envconfig:"DLQ_MAX_AGE" default:"720h" desc:"how long dead letters are kept"`
	// JobsMaxBytes bounds the jobs stream, which API keys with submit scope
	// fill: when full, new jobs are refused (never an old one dropped).
	JobsMaxBytes int64 `envconfig:"JOBS_MAX_BYTES" default:"1073741824" desc:"bytes the jobs stream may hold; when full, submissions are refused (-1: no limit)"`
	// EventsMaxBytes bounds the events stream, which VOD's callback and
	// every job feed: when full, the oldest events go.
	EventsMaxBytes int64 `envconfig:"EVENTS_MAX_BYTES" default:"2147483648" desc:"bytes the events stream may hold; when full, the oldest events go (-1: no limit)"`
	// StatusRetention is how long a finished job's status is kept (with its
	// FileId mapping and its entries in the job index). It outlasts every
	// window that reads it: the Idempotency-Key (24 h), the jobs' duplicate
	// window, a job message redelivered or copied late (it finds the job
	// finished and does not run it again), the events kept for replay
	// (EventsMaxAge) and VOD's task-flow events for the file. After it, the
	// same job id is a new job.
	//
	// The windows ingest and the workers depend on are held to it when
	// they start (CheckStatusRetention, which ingest.New and worker.New
	// call on the operator's configuration): at least the Idempotency-Key's
	// (IdempotencyKeyTTL), the duplicate window and the ack wait. Open and
	// Attach refuse only what JetStream cannot do, a retention under a
	// second (it takes no per-message TTL shorter), so that tests and tools
	// building a Config by hand may keep finished statuses for seconds.
	StatusRetention time.Duration `envconfig:"STATUS_RETENTION" default:"720h" desc:"how long a finished (completed, failed, canceled) job's status, FileId mapping and index entries are kept; after it, a job with the same id is a new job; at least 24h (an Idempotency-Key's window), VODPIPE_JOBS_DUPLICATE_WINDOW and VODPIPE_JOBS_ACK_WAIT: ingest and workers refuse to start otherwise (-1s: forever)"`
	// DLQMaxBytes bounds the dead letters, which bad submissions fill: when
	// full, the oldest go.
	DLQMaxBytes int64 `envconfig:"DLQ_MAX_BYTES" default:"536870912" desc:"bytes the dead-letter stream may hold; when full, the oldest go (-1: no limit)"`
}

// withDefaults fills c's zero fields from their default tags.
func (c *Config) withDefaults() { defaults.Fill(c) }

// IdempotencyKeyTTL is how long ingest keeps an Idempotency-Key's record
// (the vodpipe_idempotency bucket's TTL): a retry with the key within it is
// answered with the job the key names, as long as that job's status is
// kept (see CheckStatusRetention).
const IdempotencyKeyTTL = 24 * time.Hour

// CheckStatusRetention refuses a StatusRetention shorter than the windows
// a finished job's status must outlast, naming the variable and the
// minimum: the Idempotency-Key's (IdempotencyKeyTTL; a retry after the
// status expired would run a completed job again), the duplicate window
// and the ack wait (a job message published again or redelivered late
// would find no status and run again). -1s, forever, is always allowed. The
// services call it on the operator's configuration; Open and Attach do not
// (see StatusRetention).
func (c Config) CheckStatusRetention() error {
	c.withDefaults()
	if c.StatusRetention < 0 {
		return nil
	}
	minimum, window := IdempotencyKeyTTL, "the Idempotency-Key window"
	if c.DuplicateWindow > minimum {
		minimum, window = c.DuplicateWindow, "VODPIPE_JOBS_DUPLICATE_WINDOW"
	}
	if c.AckWait > minimum {
		minimum, window = c.AckWait, "VODPIPE_JOBS_ACK_WAIT"
	}
	if c.StatusRetention < minimum {
		return fmt.Errorf("queue: VODPIPE_STATUS_RETENTION is %s: it must be at least %s (%s), or -1s to keep finished statuses forever",
			c.StatusRetention, minimum, window)
	}
	return nil
}

// Queue is an opened JetStream layout: one part per concept, each with its
// stream or buckets. The parts call each other where one concept's
// operation spans another (a submit writes a status, a resume publishes the
// job again), never through the Queue.
type Queue struct {
	// Jobs is the JOBS work queue: publish, submit, the workers' consumer.
	Jobs *Jobs
	// Statuses is the status bucket and the job state machine's transitions.
	Statuses *Statuses
	// Control is the control bucket: pause, resume and cancel requests.
	Control *Control
	// Events is the EVENTS stream.
	Events *Events
	// DeadLetters is the dead-letter stream.
	DeadLetters *DeadLetters
	// Files maps FileIds and committed media paths to jobs.
	Files *Files
	// Index lists jobs a page at a time and counts them by state.
	Index *Index
	// Resume is the workers' resume bucket (ResumeBucket). Ingest creates
	// it with the rest of the layout, so no worker needs the right to
	// create or reshape a stream.
	Resume jetstream.KeyValue

	js           jetstream.JetStream
	cfg          Config
	needsReindex bool
}

// NeedsReindex reports whether Open found statuses without their job index
// entries, written before the index existed: they need Statuses.Reindex.
func (q *Queue) NeedsReindex() bool { return q.needsReindex }

// Open creates or updates the streams, buckets and the worker consumer. It is
// the owner's call: ingest alone opens the layout this way (its NATS user
// alone may create and update it); worker and notify Attach.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	q, err := newQueue(js, cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range q.streams() {
		if *s.stream, err = js.CreateOrUpdateStream(ctx, s.cfg); err != nil {
			return nil, fmt.Errorf("queue: stream %s: %w", s.cfg.Name, err)
		}
	}
	for _, b := range q.buckets() {
		if *b.kv, err = js.CreateOrUpdateKeyValue(ctx, b.cfg); err != nil {
			return nil, fmt.Errorf("queue: bucket %s: %w", b.cfg.Bucket, err)
		}
	}
	// Every status has its entry by creation, written before it; fewer
	// entries than messages in the bucket may mean statuses written before
	// the job index existed (or a reindex of them cut short): they need
	// their entries (Statuses.Reindex, which ingest runs, reads the whole
	// bucket). The bucket's count also holds the markers of statuses that
	// expired in the last minute (LimitMarkerTTL), so the oldest status
	// decides (Statuses.oldestUnindexed: such statuses were last written
	// before any with entries, and a reindex moves each it writes to the
	// end).
	if counts, err := q.Index.Counts(ctx); err == nil {
		if st, err := q.Statuses.kv.Status(ctx); err == nil && st.Values() > counts[""] {
			q.needsReindex, err = q.Statuses.oldestUnindexed(ctx)
			if err != nil {
				q.needsReindex = true // cannot tell: a reindex is harmless
			}
		}
	}
	// A consumer made by an older vodpipe took only JobsSubject. Widening it
	// does not move it back: messages on other subjects that it had passed
	// would never be delivered, so they are dead-lettered here.
	var narrowedAt uint64
	if c, err := js.Consumer(ctx, JobsStream, WorkerConsumer); err == nil {
		if ci := c.CachedInfo(); ci.Config.FilterSubject == JobsSubject {
			narrowedAt = ci.Delivered.Stream
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, JobsStream, q.consumerConfig()); err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", WorkerConsumer, err)
	}
	if narrowedAt > 0 {
		if err := q.sweepPassedStrays(ctx, narrowedAt); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// Attach looks up the layout Open created, and creates or changes nothing:
// worker and notify attach, so their NATS users need no right to reshape a
// shared stream. It fails with ErrNotCreated while a part is missing. The
// ack wait is the consumer's own, as ingest set it; cfg's other values keep
// their meaning for the caller (MaxDeliver).
func Attach(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	q, err := newQueue(js, cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range q.streams() {
		if *s.stream, err = js.Stream(ctx, s.cfg.Name); err != nil {
			return nil, lookupError("stream", s.cfg.Name, err)
		}
	}
	for _, b := range q.buckets() {
		if *b.kv, err = js.KeyValue(ctx, b.cfg.Bucket); err != nil {
			return nil, lookupError("bucket", b.cfg.Bucket, err)
		}
	}
	// Ingest creates the consumer last: once it is there, so is the rest.
	c, err := js.Consumer(ctx, JobsStream, WorkerConsumer)
	if err != nil {
		return nil, lookupError("consumer", WorkerConsumer, err)
	}
	q.cfg.AckWait = c.CachedInfo().Config.AckWait
	return q, nil
}

func newQueue(js jetstream.JetStream, cfg Config) (*Queue, error) {
	cfg.withDefaults()
	if cfg.MaxDeliver < 0 {
		return nil, fmt.Errorf("queue: VODPIPE_JOBS_MAX_DELIVER is %d: it must be at least 1 (there is no unlimited)", cfg.MaxDeliver)
	}
	if r := cfg.StatusRetention; r > 0 && r < time.Second {
		// JetStream refuses a per-message TTL under a second: no job could
		// ever be finished.
		return nil, fmt.Errorf("queue: VODPIPE_STATUS_RETENTION is %s: it must be at least 1s, or -1s to keep finished statuses forever", r)
	}
	q := &Queue{js: js, cfg: cfg, Jobs: &Jobs{js: js}, Statuses: &Statuses{js: js}, Control: &Control{nc: js.Conn()},
		Events: &Events{js: js}, DeadLetters: &DeadLetters{js: js}, Files: &Files{nc: js.Conn()}, Index: &Index{js: js}}
	q.Jobs.statuses, q.Jobs.index = q.Statuses, q.Index
	q.Jobs.republishWindow = min(cfg.RepublishWindow, cfg.DuplicateWindow/2)
	q.Statuses.control, q.Statuses.files, q.Statuses.index = q.Control, q.Files, q.Index
	q.Statuses.retention, q.Statuses.entryMargin = max(cfg.StatusRetention, 0), entryTTLMargin
	q.Control.statuses, q.Control.jobs, q.Control.events = q.Statuses, q.Jobs, q.Events
	q.DeadLetters.statuses, q.DeadLetters.jobs, q.DeadLetters.events = q.Statuses, q.Jobs, q.Events
	return q, nil
}

func lookupError(kind, name string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %s %s is missing", ErrNotCreated, kind, name)
	}
	return fmt.Errorf("queue: %s %s: %w", kind, name, err)
}

// layoutStream is a stream of the layout and the field it opens into.
type layoutStream struct {
	stream *jetstream.Stream
	cfg    jetstream.StreamConfig
}

// layoutBucket is a bucket of the layout and the field it opens into.
type layoutBucket struct {
	kv  *jetstream.KeyValue
	cfg jetstream.KeyValueConfig
}

func (q *Queue) streams() []layoutStream {
	c := q.cfg
	return []layoutStream{
		{&q.Jobs.stream, jetstream.StreamConfig{
			Name: JobsStream, Description: "vodpipe upload jobs (work queue)", Subjects: []string{jobsSubjects},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: c.Replicas,
			Duplicates: c.DuplicateWindow, MaxMsgSize: 1 << 20, MaxBytes: c.JobsMaxBytes, Discard: jetstream.DiscardNew,
		}},
		{&q.Events.stream, jetstream.StreamConfig{
			Name: EventsStream, Description: "vodpipe job and VOD events", Subjects: []string{EventsPrefix + ".>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: c.Replicas,
			MaxAge: c.EventsMaxAge, Duplicates: 2 * time.Minute, MaxBytes: c.EventsMaxBytes, Discard: jetstream.DiscardOld,
			// A job's timeline is read with batched direct gets (Events.ForJob).
			AllowDirect: true,
		}},
		{&q.DeadLetters.stream, jetstream.StreamConfig{
			Name: DLQStream, Description: "vodpipe dead letters: jobs that failed for good, with the reason", Subjects: []string{DLQPrefix + ".>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: c.Replicas, MaxAge: c.DLQMaxAge,
			MaxBytes: c.DLQMaxBytes, Discard: jetstream.DiscardOld,
		}},
		{&q.Index.stream, jetstream.StreamConfig{
			Name: IndexStream, Description: "vodpipe job index: jobs by creation and by state (see internal/queue/index.go)",
			Subjects: []string{IndexPrefix + ".>"}, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
			Replicas: c.Replicas, AllowDirect: true, Discard: jetstream.DiscardOld, AllowMsgTTL: true,
		}},
	}
}

func (q *Queue) buckets() []layoutBucket {
	bucket := func(name, desc string, ttl time.Duration) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: name, Description: desc, Storage: jetstream.FileStorage,
			Replicas: q.cfg.Replicas, History: 1, TTL: ttl}
	}
	retention := max(q.cfg.StatusRetention, 0)
	status := bucket(StatusBucket, "vodpipe job status and progress", 0)
	// Finished statuses carry a TTL of their own (Statuses.put): the bucket
	// allows per-key TTLs, and marks a key that expired for a minute.
	status.LimitMarkerTTL = time.Minute
	files := bucket(FilesBucket, "vodpipe FileId to job id", retention)
	files.RePublish = &jetstream.RePublish{Source: "$KV." + FilesBucket + ".>", Destination: FilesChanges + ".>"}
	control := bucket(ControlBucket, "vodpipe job control (pause, cancel)", 0)
	control.RePublish = &jetstream.RePublish{Source: "$KV." + ControlBucket + ".>", Destination: ControlChanges + ".>"}
	return []layoutBucket{
		{&q.Statuses.kv, status},
		{&q.Control.kv, control},
		{&q.Files.files, files},
		{&q.Files.uploads, bucket(UploadsBucket, "vodpipe media storage path of a commit to job id", uploadsTTL)},
		{&q.Resume, bucket(ResumeBucket, "vodpipe resume state and job leases", ResumeTTL)},
	}
}

// sweepPassedStrays dead-letters and removes the messages up to stream
// sequence upTo on subjects other than JobsSubject: those the workers'
// consumer skipped while it took JobsSubject alone. Later ones reach a
// worker, which dead-letters them itself.
func (q *Queue) sweepPassedStrays(ctx context.Context, upTo uint64) error {
	info, err := q.Jobs.stream.Info(ctx, jetstream.WithSubjectFilter(jobsSubjects))
	if err != nil {
		return fmt.Errorf("queue: sweep %s: %w", JobsStream, err)
	}
	for subj := range info.State.Subjects {
		if subj == JobsSubject {
			continue
		}
		for seq := uint64(1); seq <= upTo; {
			m, err := q.Jobs.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("queue: sweep %s: %w", JobsStream, err)
			}
			if m.Sequence > upTo {
				break
			}
			j, _ := job.Decode(m.Data)
			d := job.DeadLetter{Code: "invalid_message", StreamSeq: m.Sequence, Reason: WrongSubject(subj).Error(),
				JobID: DeadLetterJobID(j, m.Header)}
			if err := q.DeadLetters.Publish(ctx, d, m.Data); err != nil {
				return err
			}
			if err := q.Jobs.stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("queue: sweep %s: %w", JobsStream, err)
			}
			seq = m.Sequence + 1
		}
	}
	return nil
}

func (q *Queue) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: WorkerConsumer, Description: "vodpipe workers share this consumer",
		// No delivery bound here: the worker bounds deliveries itself and
		// dead-letters a job out of them (worker.handle). A bound here would
		// make JetStream stop delivering such a job, and dead-lettering it
		// would hang on its one max-deliveries advisory reaching a worker:
		// with every worker down at that moment, the job would stay in the
		// queue for good, never run and never failed.
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: q.cfg.AckWait, MaxDeliver: -1,
		MaxAckPending: q.cfg.MaxAckPending, DeliverPolicy: jetstream.DeliverAllPolicy,
		// All the stream holds, not only JobsSubject: a job published on a
		// mistyped subject (vodpipe.jobs.sumbit) is stored by the stream, so
		// the workers must see it to dead-letter it; otherwise it would sit
		// there, acknowledged to its publisher and never run.
		FilterSubject: jobsSubjects, Replicas: q.cfg.Replicas,
	}
}

// Config returns the effective configuration.
func (q *Queue) Config() Config { return q.cfg }

// JetStream returns the JetStream context.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Ready checks that JetStream answers, for /readyz.
func (q *Queue) Ready(ctx context.Context) error {
	_, err := q.Jobs.stream.Info(ctx)
	return err
}

// subjectToken makes s usable as one subject token.
func subjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	t := strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r > '~':
			return '_'
		}
		return r
	}, s)
	if len(t) > maxSubjectToken {
		// An id no job can have (a publisher's, dead-lettered): a subject
		// past the server's control line (4 KiB) would have it close the
		// publishing connection. Its start and a hash of the whole stand
		// for it.
		sum := sha256.Sum256([]byte(s))
		t = t[:maxSubjectToken-17] + "~" + hex.EncodeToString(sum[:8])
	}
	return t
}

// maxSubjectToken bounds the token an id becomes: a job id's length
// (job.MaxIDLen), which every id a job can have keeps as it is.
const maxSubjectToken = job.MaxIDLen
