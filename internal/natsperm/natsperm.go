// Package natsperm holds the NATS permissions of vodpipe's users, one per
// role: ingest, worker, notify and outside job publishers. They are the one
// place the subjects each service publishes and subscribes to are written
// down; natsembed runs them, and `vodpipe nats-config` prints them as a
// nats-server configuration for operators.
//
// Ingest owns the shared job layout (the JOBS, EVENTS and DLQ streams, the
// status, control, files and uploads buckets, the workers' consumer): its
// user alone may create and update it. Worker and notify attach to it and
// may only inspect it, because a user that may update a stream can reshape
// it (its subjects or sources) to capture replies or copy in another bucket,
// and the server does not check the updater's own rights against them. A
// service may create and update only the streams and buckets it alone uses;
// the outside publisher has no stream rights at all.
package natsperm

import (
	"fmt"
	"slices"
)

// Role is a NATS user of vodpipe.
type Role string

// The roles. Publisher is an outside system that publishes jobs straight
// onto NATS instead of calling ingest's API.
const (
	Ingest    Role = "ingest"
	Worker    Role = "worker"
	Notify    Role = "notify"
	Publisher Role = "publisher"
)

// Roles lists every role, services first.
func Roles() []Role { return []Role{Ingest, Worker, Notify, Publisher} }

// Inbox is the inbox prefix the role's connections use (nats.CustomInboxPrefix,
// the nats CLI's --inbox-prefix): replies to a role land under a prefix
// only its user may subscribe to, so no other user can read its signatures,
// KV reads or JetStream acks, nor those of clients on the default _INBOX.
func (r Role) Inbox() string { return "_INBOX_" + string(r) }

// Permissions are the subjects a role may publish to and subscribe to.
// Everything else is refused by the server.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// The JetStream layout vodpipe's services open (see internal/queue, internal/notify,
// internal/ingest and internal/resume); a test checks these names against theirs.
const (
	jobsStream      = "VODPIPE_JOBS"
	eventsStream    = "VODPIPE_EVENTS"
	dlqStream       = "VODPIPE_DLQ"
	indexStream     = "VODPIPE_INDEX"
	attemptsStream  = "VODPIPE_NOTIFY_ATTEMPTS"
	workerConsumer  = "workers"
	statusBucket    = "vodpipe_status"
	controlBucket   = "vodpipe_control"
	filesBucket     = "vodpipe_files"
	filesChanges    = "vodpipe.files"
	controlChanges  = "vodpipe.control"
	subsChanges     = "vodpipe.subscriptions"
	uploadsBucket   = "vodpipe_uploads"
	idemBucket      = "vodpipe_idempotency"
	resumeBucket    = "vodpipe_resume"
	subsBucket      = "vodpipe_subscriptions"
	vodEventsBucket = "vodpipe_vod_events"

	// JobsSubject is where jobs are published.
	JobsSubject = "vodpipe.jobs.submit"
	// LayoutSubject is ingest's layout broker's (queue.LayoutSubject).
	LayoutSubject = "vodpipe.layout"
	// SignSubject is the signature service's subject.
	SignSubject = "vodpipe.sign"
	signService = "vodpipe-sign"
	events      = "vodpipe.events"
	dlq         = "vodpipe.dlq"
	index       = "vodpipe.index"
	attempts    = "vodpipe.notify.attempts"
)

// For returns the permissions of a role.
func For(r Role) (Permissions, error) {
	p, err := build(r)
	return p.Permissions, err
}

func build(r Role) (perms, error) {
	var p perms
	switch r {
	case Ingest:
		p.ownLayout()
		p.sweepStrays()
		p.pub(JobsSubject, events+".job.>", dlq+".>")
		p.kv(idemBucket, admin, read, write)
		p.kv(statusBucket, read, leaderRead, watch, write)
		p.layoutBroker()
		p.indexWrite()
		// Listings: pages of the index, and their statuses in one read.
		p.pub(api("DIRECT.GET", indexStream), api("DIRECT.GET", "KV_"+statusBucket))
		// Pause, resume and cancel read the key from the stream's leader
		// before their compare-and-set (a lagging replica may lack a pause).
		p.kv(controlBucket, read, write, leaderRead)
		// A batch's new ids' controls in one read (queue.Control.Stale), and
		// the sweep of old deletion markers (queue.Control.Sweep).
		p.pub(api("DIRECT.GET", "KV_"+controlBucket), api("STREAM.PURGE", "KV_"+controlBucket))
		p.pub(api("STREAM.MSG.GET", dlqStream), api("STREAM.MSG.DELETE", dlqStream)) // read; remove one requeued
		// The upload page's events (VOD's file events) and the console's
		// (every event, while a console is open), as they are published.
		p.sub(events + ".>")
		// A job's timeline in the console: batched direct gets on its subjects.
		p.pub(api("DIRECT.GET", eventsStream))
		// The signature service (a NATS micro service) and its discovery subjects.
		p.sub(SignSubject, "$SRV.*", "$SRV.*."+signService, "$SRV.*."+signService+".*")
		// Its answers: to workers' requests, which come from the workers'
		// account with a reply subject the server maps (_R_.), and
		// discovery's to default inboxes. Not "allow_responses", which would
		// let a requester in this account pick any reply subject (a KV key,
		// the jobs subject) and have ingest publish there.
		p.pub("_R_.>", "_INBOX.>")
	case Worker:
		p.attachLayout()
		p.pub(api("CONSUMER.MSG.NEXT", jobsStream, workerConsumer), "$JS.ACK."+jobsStream+"."+workerConsumer+".>")
		p.pub(events+".job.>", dlq+".>", SignSubject)
		// A transition refused on a status a replica read is confirmed
		// with the stream's leader (queue.Statuses.updateStatus).
		p.kv(statusBucket, read, write, leaderRead)
		p.indexWrite()
		// Follows the controls without a consumer (queue.Control.Watch; a key
		// gone from a read after a reconnect is asked of the stream's leader)
		// and clears a done cancel or pause.
		p.kv(controlBucket, read, follow, write, leaderRead)
		// The controls as JetStream publishes them again once stored
		// (queue.ControlChanges): what Control.Watch applies. The
		// bucket's own subjects stay: they tell it when an older ingest
		// set the bucket up without that.
		p.sub(controlChanges + ".>")
		p.kv(filesBucket, write)
		p.kv(uploadsBucket, write)
		// The resume state, when no Redis is configured (ingest creates the bucket).
		p.kv(resumeBucket, read, write)
	case Notify:
		p.attachLayout()
		p.pub(events+".vod.>", events+".subscription.>")
		// Its consumers of the events stream and its own streams come from
		// ingest's layout broker (queue.Layout): it may use, list and delete
		// them, never create one.
		p.pub(LayoutSubject)
		p.pub(api("STREAM.INFO", eventsStream), api("CONSUMER.INFO", eventsStream, "*"), api("CONSUMER.DELETE", eventsStream, "*"),
			api("CONSUMER.MSG.NEXT", eventsStream, "*"), "$JS.ACK."+eventsStream+".>", api("CONSUMER.LIST", eventsStream),
			// One stored event, for a one-event replay.
			api("DIRECT.GET", eventsStream))
		// Buckets followed by subscription and batched reads, not watched:
		// a watch is a consumer (see queue.Follow).
		// New FileIds as JetStream publishes them again (queue.FilesChanges):
		// a worker's write itself does not cross into this account. The
		// bucket's own subjects stay for notify 0.9, which follows them.
		p.kv(filesBucket, read, changes, write)
		p.sub(filesChanges + ".>")
		p.kv(uploadsBucket, read)
		// Followed as the controls are (queue.Follow), and its old deletion
		// markers swept (queue.SweepBucket).
		p.kv(subsBucket, read, follow, write, leaderRead)
		p.sub(subsChanges + ".>") // its RePublish, which the dispatchers follow
		p.pub(api("STREAM.PURGE", "KV_"+subsBucket))
		p.kv(vodEventsBucket, read, write)
		// The attempt log: written, read with batched direct gets, purged
		// with its subscription.
		p.pub(api("STREAM.INFO", attemptsStream), api("STREAM.PURGE", attemptsStream), api("DIRECT.GET", attemptsStream), attempts+".>")
	case Publisher:
		p.pub(JobsSubject)
		p.sub(r.Inbox() + ".>")
		return p, nil
	default:
		return perms{}, fmt.Errorf("natsperm: unknown role %q", r)
	}
	p.sub(r.Inbox() + ".>")
	return p, nil
}

// perms builds a role's Permissions.
type perms struct {
	Permissions
	// push: the role watches a bucket, whose push consumer delivers on
	// the role's inbox.
	push bool
}

func (p *perms) pub(s ...string) { p.Publish = appendNew(p.Publish, s...) }
func (p *perms) sub(s ...string) { p.Subscribe = appendNew(p.Subscribe, s...) }

// layoutStreams and layoutBuckets are the shared job layout ingest owns.
var (
	layoutStreams = []string{jobsStream, eventsStream, dlqStream, indexStream}
	layoutBuckets = []string{statusBucket, controlBucket, filesBucket, uploadsBucket, resumeBucket}
)

// ownLayout is what queue.Open needs: create, update and inspect the job
// streams and buckets, and create and inspect the workers' consumer.
func (p *perms) ownLayout() {
	for _, s := range layoutStreams {
		p.pub(api("STREAM.CREATE", s), api("STREAM.UPDATE", s), api("STREAM.INFO", s))
	}
	for _, b := range layoutBuckets {
		p.kv(b, admin)
	}
	p.pub(api("CONSUMER.INFO", jobsStream, workerConsumer), api("CONSUMER.CREATE", jobsStream, workerConsumer, ">"))
}

// attachLayout is what queue.Attach needs: inspect the job streams, buckets
// and the workers' consumer, never create or change them.
func (p *perms) attachLayout() {
	for _, s := range layoutStreams {
		p.pub(api("STREAM.INFO", s))
	}
	for _, b := range layoutBuckets {
		p.pub(api("STREAM.INFO", "KV_"+b))
	}
	p.pub(api("CONSUMER.INFO", jobsStream, workerConsumer))
}

// layoutBroker is what ingest's layout broker needs (queue.ServeLayout):
// answer notify's requests, and make notify's pull consumers of the
// events stream and its own streams and buckets.
func (p *perms) layoutBroker() {
	p.sub(LayoutSubject)
	p.pub(api("CONSUMER.CREATE", eventsStream), api("CONSUMER.CREATE", eventsStream, ">"), api("CONSUMER.INFO", eventsStream, "*"),
		api("STREAM.CREATE", attemptsStream), api("STREAM.UPDATE", attemptsStream), api("STREAM.INFO", attemptsStream))
	p.kv(subsBucket, admin)
	p.kv(vodEventsBucket, admin)
}

// sweepStrays is what the sweep of jobs passed by a consumer of an older
// vodpipe needs (see queue.Open): read and delete single job messages.
// Ingest opens the layout first in every deployment, so it alone sweeps.
func (p *perms) sweepStrays() {
	p.pub(api("STREAM.MSG.GET", jobsStream), api("STREAM.MSG.DELETE", jobsStream))
}

// indexWrite is what a writer of job statuses needs: add the job index's
// entries a status points at, delete those it left (see queue's index.go).
func (p *perms) indexWrite() {
	p.pub(index+".>", api("STREAM.MSG.DELETE", indexStream))
}

// kvRight is one kind of access to a key-value bucket.
type kvRight int

const (
	admin      kvRight = iota // create, update and inspect the bucket's stream (the owner's right)
	read                      // get keys
	leaderRead                // get keys through the stream's leader
	watch                     // watch keys (an ordered push consumer) and list them
	follow                    // read every key (batched direct gets) and follow changes (a subscription), no consumer
	changes                   // follow changes only (a subscription), no consumer
	write                     // put, create, update and delete keys
)

func (p *perms) kv(bucket string, rights ...kvRight) {
	stream := "KV_" + bucket
	for _, r := range rights {
		switch r {
		case admin:
			// Account limits are read before a bucket is created.
			p.pub(api("INFO"), api("STREAM.CREATE", stream), api("STREAM.UPDATE", stream), api("STREAM.INFO", stream))
		case read:
			p.pub(api("STREAM.INFO", stream), api("DIRECT.GET", stream, ">"))
		case leaderRead:
			// A direct get may come from any replica, a lagging one too; this
			// read comes from the leader (the signature service's check of a
			// job's state, queue.SigningJob).
			p.pub(api("STREAM.MSG.GET", stream))
		case watch:
			p.push = true
			p.pub(api("STREAM.INFO", stream), api("CONSUMER.CREATE", stream), api("CONSUMER.CREATE", stream, ">"),
				api("CONSUMER.DELETE", stream, "*"), "$JS.FC."+stream+".>")
		case follow:
			p.pub(api("DIRECT.GET", stream))
			p.sub("$KV." + bucket + ".>")
		case changes:
			p.sub("$KV." + bucket + ".>")
		case write:
			p.pub("$KV." + bucket + ".>")
		}
	}
}

// api is a JetStream API subject: $JS.API.<op>.<tokens...>.
func api(op string, tokens ...string) string {
	s := "$JS.API." + op
	for _, t := range tokens {
		s += "." + t
	}
	return s
}

func appendNew(list []string, s ...string) []string {
	for _, x := range s {
		if !slices.Contains(list, x) {
			list = append(list, x)
		}
	}
	return list
}
