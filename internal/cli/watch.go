package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// watchTypes are the events `submit --watch` follows.
var watchTypes = []string{job.EventStarted, job.EventProgress, job.EventCompleted, job.EventFailed,
	job.EventCanceled, job.EventPaused}

// followEvents reads the event stream into a channel until ctx ends (then
// it closes the channel),
// opening it again after the last event seen when the connection breaks
// (so nothing is missed while the events are kept). The first stream is
// opened by the caller before the jobs are submitted, so no job's event
// can come before it.
func followEvents(ctx context.Context, c *client.Client, es *client.EventStream, types []string, stderr io.Writer) <-chan *job.Event {
	out := make(chan *job.Event, 256)
	go func() {
		defer close(out)
		for {
			e, err := es.Next()
			if err == nil {
				select {
				case out <- e:
					continue
				case <-ctx.Done():
					_ = es.Close()
					return
				}
			}
			_ = es.Close()
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(stderr, "vodpipe: event stream broke (%v); reconnecting after event %s\n", err, es.LastID)
			last := es.LastID
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				if es, err = c.Events(ctx, types, last); err == nil {
					break
				}
				fmt.Fprintf(stderr, "vodpipe submit: event stream: %v; trying again\n", err)
			}
		}
	}()
	return out
}

// watchEvents shows an overall bar and one bar per running job, driven by
// the jobs' events over one stream (no request per job), until every job
// submitted ends (completed, failed, canceled or paused); then the summary.
// A job already finished when it was submitted (a duplicate from an earlier
// run) is read once.
func watchEvents(ctx context.Context, events *client.Client, es *client.EventStream, items []*item,
	stdout, stderr io.Writer, asJSON bool) int {
	// The follower ends with the watch: it writes nothing and reconnects
	// nothing once this returns.
	fctx, stop := context.WithCancel(ctx)
	stream := followEvents(fctx, events, es, watchTypes, stderr)
	defer func() {
		stop()
		_ = es.Close() // the first stream is the caller's ctx's; later ones end with fctx
		for range stream {
		}
	}()
	var total int64
	pending := map[string]*item{}
	for _, it := range items {
		total += it.size
		switch {
		case it.outcome == "duplicate" && (it.view.State.Terminal() || it.view.State == job.StatePaused):
			// The batch's answer carried its view: no read.
			it.outcome = string(it.view.State)
		case it.outcome == "queued" || it.outcome == "duplicate":
			pending[it.id] = it
			it.start = time.Now()
		}
	}
	p := mpb.NewWithContext(ctx, mpb.WithOutput(stderr), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	overall := p.AddBar(max(total, 1), mpb.PrependDecorators(
		decor.Name("all ", decor.WCSyncSpaceR),
		decor.CountersKibiByte("% .1f / % .1f"),
	), mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
	done := map[string]int64{} // bytes done per job, for the overall bar
	advance := func(it *item, bytes int64) {
		if d := bytes - done[it.id]; d > 0 {
			overall.IncrInt64(d)
			done[it.id] = bytes
		}
	}
	for len(pending) > 0 {
		var e *job.Event
		select {
		case <-ctx.Done():
		case e = <-stream: // nil once ctx ended
		}
		if e == nil {
			p.Shutdown()
			fmt.Fprintln(stderr, "vodpipe submit: interrupted; jobs keep running (see `vodpipe jobs`)")
			return report(items, stdout, asJSON, len(pending))
		}
		it := pending[e.JobID]
		if it == nil {
			continue // another job's event
		}
		switch e.Type {
		case job.EventStarted:
			if it.bar == nil {
				it.bar = p.AddBar(max(it.size, 1), mpb.BarRemoveOnComplete(),
					mpb.PrependDecorators(decor.Name(shorten(it.display, 28), decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
					mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30)))
			}
		case job.EventProgress:
			var d job.ProgressData
			if json.Unmarshal(e.Data, &d) == nil {
				it.view.BytesDone, it.view.BytesTotal = d.BytesDone, d.BytesTotal
				if it.bar != nil {
					it.bar.SetTotal(max(d.BytesTotal, 1), false)
					it.bar.SetCurrent(d.BytesDone)
				}
				advance(it, d.BytesDone)
			}
		case job.EventCompleted:
			var d job.CompletedData
			_ = json.Unmarshal(e.Data, &d)
			it.view.FileID, it.view.MediaURL, it.view.BytesTotal, it.view.BytesDone = d.FileID, d.MediaURL, d.Bytes, d.Bytes
			advance(it, max(d.Bytes, it.size))
			finish(it, pending, job.StateCompleted)
		case job.EventFailed:
			var d job.FailedData
			if json.Unmarshal(e.Data, &d) == nil {
				it.view.Error = &d.Error
			}
			finish(it, pending, job.StateFailed)
		case job.EventCanceled:
			finish(it, pending, job.StateCanceled)
		case job.EventPaused:
			finish(it, pending, job.StatePaused)
		}
	}
	return endWatch(p, overall, items, stdout, asJSON)
}

// finish records a job's end (seen now: start and end on this clock) and
// takes it off the bars.
func finish(it *item, pending map[string]*item, st job.State) {
	it.outcome, it.view.State, it.end = string(st), st, time.Now()
	if it.bar != nil {
		it.bar.SetTotal(-1, true)
	}
	delete(pending, it.id)
}
