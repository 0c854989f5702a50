package chaos

// The checks of a chaos run: waiting for every job and webhook, then
// every promise the run holds vodpipe to.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// waitTerminal polls ingest until every job is terminal or ctx ends.
func waitTerminal(ctx context.Context, c *client.Client, jobs []*job.Job, logf func(string, ...any)) (map[string]client.JobView, error) {
	states := map[string]client.JobView{}
	last := time.Now()
	for {
		done := 0
		for _, j := range jobs {
			if v, ok := states[j.ID]; ok && v.State.Terminal() {
				done++
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.Get(rctx, j.ID)
			cancel()
			if err == nil {
				states[j.ID] = v
				if v.State.Terminal() {
					done++
				}
			}
		}
		if done == len(jobs) {
			return states, nil
		}
		if time.Since(last) > 10*time.Second {
			logf("%d of %d jobs terminal; still going: %s", done, len(jobs), notTerminal(jobs, states, 5))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return states, fmt.Errorf("%d of %d jobs not terminal when the run's time was up: %s", len(jobs)-done, len(jobs), notTerminal(jobs, states, 10))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// notTerminal names up to n jobs not terminal, with their state and error.
func notTerminal(jobs []*job.Job, states map[string]client.JobView, n int) string {
	var out []string
	for _, j := range jobs {
		v, ok := states[j.ID]
		if ok && v.State.Terminal() {
			continue
		}
		if len(out) == n {
			out = append(out, "...")
			break
		}
		what := "never read"
		if ok {
			what = string(v.State)
			if v.Error != nil {
				what += " (" + v.Error.Code + ": " + v.Error.Message + ")"
			}
		}
		out = append(out, j.ID+" "+what)
	}
	return strings.Join(out, "; ")
}

// waitWebhooks waits until the receiver has a job.completed and a
// vod.file_uploaded for every completed job, a redelivery after that is
// still counted by check. It waits at most 60 s, or longer (up to
// callbackWait) while vodsim is still retrying the callback of a missing
// vod.file_uploaded, so check never reports a callback that had attempts
// left.
func waitWebhooks(ctx context.Context, s *services, states map[string]client.JobView) {
	ctx, cancel := context.WithTimeout(ctx, callbackWait)
	defer cancel()
	soft := time.Now().Add(60 * time.Second)
	attempts := s.callbackAttempts
	for {
		missing, retrying := 0, 0
		var events []vodsim.EventRecord // read once per round, when a job lacks its VOD event
		fetched := false
		for id, v := range states {
			if v.State != job.StateCompleted {
				continue
			}
			n, _ := s.recv.completed(id)
			uploaded := s.recv.fileUploaded(id) > 0
			if n > 0 && uploaded {
				continue
			}
			missing++
			if !uploaded {
				if !fetched {
					events, fetched = s.simEvents(), true
				}
				if e := newFileUpload(events, v.FileID); e != nil && !e.Delivered && len(e.Attempts) < attempts {
					retrying++
				}
			}
		}
		if missing == 0 || retrying == 0 && time.Now().After(soft) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// callbackWait bounds waitWebhooks: vodsim's 11 callback attempts from
// 200 ms span about 3.5 minutes, each POST bounded by 10 s.
const callbackWait = 5 * time.Minute

// newFileUpload is vodsim's NewFileUpload event of a FileId, or nil.
func newFileUpload(events []vodsim.EventRecord, fileID string) *vodsim.EventRecord {
	for i := range events {
		if events[i].FileID == fileID && events[i].Event.EventType == vod.EventTypeNewFileUpload {
			return &events[i]
		}
	}
	return nil
}

// callbackState says what vodsim did with the NewFileUpload event of a
// FileId: whether notify accepted its callback, and after how many attempts.
func callbackState(events []vodsim.EventRecord, fileID string, attempts int) string {
	e := newFileUpload(events, fileID)
	switch {
	case e == nil:
		return "does not exist for FileId " + fileID
	case e.Delivered:
		return fmt.Sprintf("was accepted by notify after %d attempts", len(e.Attempts))
	}
	last := ""
	if n := len(e.Attempts); n > 0 {
		a := e.Attempts[n-1]
		last = fmt.Sprintf(", last status %d %s", a.Status, a.Error)
	}
	if len(e.Attempts) < attempts {
		return fmt.Sprintf("is still being retried (%d of %d attempts%s)", len(e.Attempts), attempts, last)
	}
	return fmt.Sprintf("was not accepted in %d attempts%s", len(e.Attempts), last)
}

// check fills the report's figures and violations.
func check(rep *Report, o Options, jobs []*job.Job, states map[string]client.JobView, s *services) {
	viol := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	sim, err := s.simState()
	if err != nil {
		viol("read vodsim's state: %v", err)
		return
	}
	simFiles, simObjects, events := sim.files, sim.objects, sim.events
	if m, err := s.vodEvents(); err == nil {
		s.mu.Lock()
		for k, v := range s.vodEventsBefore {
			m[k] += v
		}
		s.mu.Unlock()
		rep.VODEvents = m
	} else {
		viol("read notify's metrics: %v", err)
	}
	files := map[string][]string{} // media name (job id) → FileIds
	for _, f := range simFiles {
		files[f.Name] = append(files[f.Name], f.FileID)
	}
	var notDone []string
	for _, j := range jobs {
		v := states[j.ID]
		switch v.State {
		case job.StateCompleted:
			rep.Committed++
		case job.StateFailed:
			rep.Failed++
			msg := ""
			if v.Error != nil {
				b, _ := json.Marshal(v.Error)
				msg = string(b)
			}
			viol("job %s failed: %s", j.ID, msg)
			rep.suspects = append(rep.suspects, j.ID)
		default:
			notDone = append(notDone, j.ID+"="+string(v.State))
		}
		if ids := files[j.ID]; len(ids) != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s has %d FileIds in vodsim %v, want 1", j.ID, len(ids), ids)
		} else if v.State == job.StateCompleted && v.FileID != ids[0] {
			viol("job %s reports FileId %s, vodsim has %s", j.ID, v.FileID, ids[0])
		}
		if n, d := s.recv.completed(j.ID); n != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			if n == 0 {
				viol("job %s: no job.completed at the receiver; the event is %s", j.ID, s.inEventsStream(j.ID))
			} else {
				viol("job %s: %d job.completed events at the receiver (%d deliveries), want 1: %s", j.ID, n, d, strings.Join(s.recv.events(j.ID), " | "))
			}
		}
		// VOD's event exists only for a committed upload; a failed or
		// unfinished job is a violation of its own above.
		if n := s.recv.fileUploaded(j.ID); v.State == job.StateCompleted && n != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s: %d vod.file_uploaded events naming it at the receiver, want 1 (%d arrived naming no job); vodsim's callback %s",
				j.ID, n, s.recv.orphaned(), callbackState(events, v.FileID, s.callbackAttempts))
		}
	}
	if o.Previous != nil {
		starts, err := s.jobStarts()
		if err != nil {
			viol("read the job.started events: %v", err)
		}
		if rep.AcrossVersions = acrossVersions(starts, rep.runs); rep.AcrossVersions == 0 && err == nil {
			viol("no job was started by workers of both versions: resuming across versions went untested")
		}
	}
	if len(notDone) > 0 {
		sort.Strings(notDone)
		viol("%d jobs not terminal: %s", len(notDone), strings.Join(notDone[:min(len(notDone), 10)], ", "))
	}
	if rep.Committed != rep.Jobs {
		viol("%d of %d jobs committed", rep.Committed, rep.Jobs)
	}
	if ups := sim.uploads; len(ups) > 0 {
		viol("%d multipart uploads left open (first: %s %s)", len(ups), ups[0].Key, ups[0].ID)
	}
	s.recv.mu.Lock()
	if s.recv.bad > 0 {
		viol("%d webhook deliveries failed verification (last: %s)", s.recv.bad, s.recv.lastError)
	}
	s.recv.mu.Unlock()
	refused, notAgain := s.recv.redeliveries()
	rep.Redelivered = refused - len(notAgain)
	switch {
	case refused == 0 && rep.Committed > 0:
		viol("the receiver refused no job.completed delivery: redeliveries went untested")
	case len(notAgain) > 0:
		rep.suspects = append(rep.suspects, notAgain...)
		viol("%d refused job.completed deliveries never came again under the same webhook id (jobs %s)",
			len(notAgain), strings.Join(notAgain[:min(len(notAgain), 10)], ", "))
	}
	rep.FaultKinds = sim.faultKinds
	for _, n := range sim.faultKinds {
		rep.InjectedFaults += n
	}
	checkFaults(rep, o, s, viol)

	for _, ob := range simObjects {
		rep.Bytes += ob.Size
	}
	rep.Received = sim.received
	rep.Resent = rep.Received - rep.Bytes
	perDisruption := int64(o.JobsPerWorker*o.Concurrency) * o.PartSize
	disruptions := rep.WorkerKills + rep.NATSRestarts + rep.RedisFaults + rep.Replacements
	rep.ResentBound = int64(disruptions)*perDisruption + int64(rep.InjectedFaults)*o.PartSize
	if rep.Resent > rep.ResentBound {
		viol("%s re-sent, more than the %s that %d disruptions and %d injected faults may cost", mib(rep.Resent), mib(rep.ResentBound),
			disruptions, rep.InjectedFaults)
	}
	checkResentPerJob(rep, o, jobs, states, sim.traffic, simFiles, simObjects, viol)
}

// checkFaults fails a run whose faults did not all happen (it proved
// nothing about them), in which a worker or a service ended by itself, or whose streams
// and buckets are not all at 3 replicas.
func checkFaults(rep *Report, o Options, s *services, viol func(string, ...any)) {
	switch {
	case o.Previous != nil: // an upgrade run: its steps are its faults
		if want := 2 * len(upgradeOrder(o.Workers)); len(rep.Upgrade) != want {
			viol("%d of the upgrade's %d steps done", len(rep.Upgrade), want)
		}
	case o.Soak > 0:
		if rep.WorkerKills == 0 || rep.NATSRestarts < 1 || rep.RedisFaults < 1 || len(rep.ServiceCrashes) > 0 {
			viol("%d worker kills, %d NATS node restarts, %d Redis faults and services crashed %v: a soak wants the first three repeated and no service crashed",
				rep.WorkerKills, rep.NATSRestarts, rep.RedisFaults, rep.ServiceCrashes)
		}
	default:
		if rep.WorkerKills == 0 {
			viol("no worker was killed")
		}
		if rep.NATSRestarts != 1 || rep.RedisFaults != 1 {
			viol("%d NATS node restarts and %d Redis faults, want 1 of each", rep.NATSRestarts, rep.RedisFaults)
		}
		if want := crashedServices(); !slices.Equal(rep.ServiceCrashes, want) {
			viol("services crashed: %v, want %v", rep.ServiceCrashes, want)
		}
	}
	if rep.StorageRefused == 0 && o.Previous == nil {
		viol("vodsim's store out of space refused no body: the fault tested nothing")
	}
	if rep.InjectedFaults == 0 && o.FaultRate > 0 {
		viol("vodsim injected no fault")
	}
	if rep.WorkerExits > 0 {
		viol("%d worker processes ended by themselves (restarted; their logs are in the run's folder)", rep.WorkerExits)
	}
	if gone := s.exited(); len(gone) > 0 {
		viol("services ended by themselves: %s", strings.Join(gone, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	byReplicas, err := s.streamReplicas(ctx)
	if err != nil {
		viol("read the streams back: %v", err)
	}
	for n, names := range byReplicas {
		if n == 3 {
			rep.Replicated = len(names)
			continue
		}
		sort.Strings(names)
		viol("%d streams or buckets at %d replicas, want 3: %s", len(names), n, strings.Join(names, ", "))
	}
	if rep.Replicated == 0 && err == nil {
		viol("no stream at 3 replicas")
	}
}

// checkResentPerJob holds every job to what its own interruptions may cost.
// A kill (or a NATS or Redis failure that ended an attempt) interrupts one
// attempt of each job its worker ran, and the job's next delivery resumes
// from the recorded parts: at most its parts in flight (Concurrency parts)
// are sent again per extra run or delivery (status' runs: the workers that
// started it; its attempt: the deliveries, counting the waits and
// hand-backs that use no run; a delivery that started nothing sent
// nothing). An injected fault costs
// the one part it hit; vodsim counts both bytes and faults per object key.
func checkResentPerJob(rep *Report, o Options, jobs []*job.Job, states map[string]client.JobView,
	traffic []vodsim.ObjectTraffic, simFiles []vodsim.File, simObjects []vodsim.Object, viol func(string, ...any)) {
	type usage struct {
		received int64
		faults   int
	}
	byJob := map[string]*usage{}
	for _, t := range traffic {
		u := byJob[t.Media]
		if u == nil {
			u = &usage{}
			byJob[t.Media] = u
		}
		u.received += t.Received
		u.faults += t.Faults
	}
	stored := map[string]int64{} // bucket/key → size
	for _, ob := range simObjects {
		stored[ob.Bucket+"/"+ob.Key] = ob.Size
	}
	size := map[string]int64{} // job id → bytes of its committed objects
	for _, f := range simFiles {
		size[f.Name] = stored[f.Bucket+"/"+f.VideoKey]
		if f.CoverKey != "" {
			size[f.Name] += stored[f.Bucket+"/"+f.CoverKey]
		}
	}
	perAttempt := int64(o.Concurrency) * o.PartSize
	for _, j := range jobs {
		u := byJob[j.ID]
		if u == nil {
			continue
		}
		resent := u.received - size[j.ID]
		// Runs leave out the interruptions that use no run: a job that
		// waited (a full store, no Redis replica for its commit) or that
		// a worker handed back (an upgrade's SIGTERM). Each is a delivery,
		// so the deliveries bound them too (one that started nothing sent
		// nothing). A pause the run asked for interrupts the parts in
		// flight as well, and its resume is a new job message.
		extra := max(states[j.ID].Runs-1, states[j.ID].Attempt-1, 0) + rep.pauses[j.ID]
		bound := int64(extra)*perAttempt + int64(u.faults)*o.PartSize
		if resent > 0 && extra > 0 {
			rep.Interrupted++
			rep.MaxResentPerInterruption = max(rep.MaxResentPerInterruption, (resent-int64(u.faults)*o.PartSize)/int64(extra))
		}
		if resent > bound {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s re-sent %s over %d extra runs and %d injected faults, more than their bound %s",
				j.ID, mib(resent), extra, u.faults, mib(bound))
		}
	}
	rep.PerInterruptionBound = perAttempt
}

// metricFamilies reads a service's Prometheus page (GET url).
func metricFamilies(url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return fams, nil
}

// sumByLabel sums the values of a family's series by the value of one
// label (every series under "" when the label is ""); a family with no
// series (a labelled counter nothing has counted yet) sums to nothing.
func sumByLabel(f *dto.MetricFamily, label string) map[string]int {
	out := map[string]int{}
	for _, m := range f.GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] += int(m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue())
	}
	return out
}
