package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// badCase is what one file of the corpus in testdata/bad-jobs must end as.
type badCase struct {
	// code is the dead letter's code; empty when ingest refuses the job
	// with a 400 (and a worker dead-letters it as invalid_message).
	code string
	// fields are what a refusal names: the fields of ingest's 400, and
	// words of the dead letter's reason (over NATS, for an invalid one).
	fields []string
}

var badCases = map[string]badCase{
	"malformed.json":           {fields: []string{"(message)"}},
	"empty.json":               {fields: []string{"(message)"}},
	"not-an-object.json":       {fields: []string{"(message)"}},
	"huge-message.json":        {fields: []string{"(message)"}},
	"wrong-types.json":         {fields: []string{"classId", "priority"}},
	"unknown-version.json":     {fields: []string{"v"}},
	"unknown-field.json":       {fields: []string{"colour"}},
	"huge-fields.json":         {fields: []string{"metadata", "sourceContext"}},
	"traversal.json":           {fields: []string{"source"}},
	"not-utf8.json":            {fields: []string{"mediaName", "sourceContext"}},
	"symlink-escape.json":      {code: "source_forbidden"},
	"private-address.json":     {code: "source_forbidden"},
	"loopback-address.json":    {code: "source_forbidden"},
	"unknown-region.json":      {code: "vod_region_not_allowed"},
	"unknown-procedure.json":   {code: "vod_procedure_not_found"},
	"missing-source.json":      {code: "source_not_found"},
	"source-size-changes.json": {code: "source_changed"},
	"source-disappears.json":   {code: "source_not_found"},
}

// Bad jobs by HTTP and straight onto NATS, interleaved with good ones: every
// bad one gets a 4xx or a dead letter with its reason, every good one
// completes, and nothing crashes.
func TestBadInputCorpus(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 2, JobsPerWorker: 2, PartSize: 1 << 20,
		RefusePrivateSources: true, LeaseTTL: 3 * time.Second, Queue: queue.Config{AckWait: 3 * time.Second, MaxDeliver: 3},
		Vodsim: func(c *vodsim.Config) { c.Faults.Bandwidth = 6 << 20 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	for _, n := range []string{"good-small.mp4", "good-1.mp4", "good-2.mp4", "good-3.mp4"} {
		if err := writeSample(filepath.Join(root, n), 300<<10, 5); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeSample(filepath.Join(outside, "secret.mp4"), 1000, 6); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.mp4"), filepath.Join(root, "escape.mp4")); err != nil {
		t.Fatal(err)
	}
	// Files that grow or are removed while they upload (one of each per
	// path): at vodsim's 6 MiB/s for every upload together each takes
	// several seconds, so the test can change it between the first progress
	// and the end.
	for n := range alteredJob {
		if err := writeSample(filepath.Join(root, n), 16<<20, 7); err != nil {
			t.Fatal(err)
		}
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	pub := jetStreamAt(t, st.NATSConfig(natsperm.Publisher)) // bad jobs straight onto NATS, as an outside publisher
	js := jetStreamAt(t, st.AdminNATS())                     // the events, read as an operator
	q := st.Ingest.Queue()
	submitGood := func(id string) {
		t.Helper()
		if _, _, err := c.Submit(ctx, &job.Job{ID: id, Source: "file://" + filepath.Join(root, id+".mp4")}, ""); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("../../testdata/bad-jobs", name))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.ReplaceAll(b, []byte("file://ROOT"), []byte("file://"+root))
	}
	httpIDs := map[string]string{}  // job id → expected code, for jobs ingest accepted
	natsSeqs := map[uint64]string{} // JOBS stream sequence → corpus file, for messages published to NATS
	natsIDs := map[string]string{}  // job id → expected code, for valid jobs published to NATS
	submitGood("good-1")
	for name, bc := range badCases {
		body := read(name)
		// By HTTP.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.IngestURL+"/v1/jobs", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+st.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var answer struct {
			Error struct {
				Code   string           `json:"code"`
				Fields []job.FieldError `json:"fields"`
			} `json:"error"`
		}
		derr := json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		switch {
		case bc.code == "" && resp.StatusCode != http.StatusBadRequest:
			t.Errorf("%s over HTTP: %d, want 400", name, resp.StatusCode)
		case bc.code == "":
			named := map[string]bool{}
			for _, f := range answer.Error.Fields {
				named[f.Field] = f.Reason != ""
			}
			for _, f := range bc.fields {
				if !named[f] {
					t.Errorf("%s over HTTP: the 400 (%v) does not name %q with a reason: %+v", name, derr, f, answer.Error)
				}
			}
		case resp.StatusCode != http.StatusCreated:
			t.Errorf("%s over HTTP: %d, want 201 then a dead letter", name, resp.StatusCode)
		default:
			httpIDs[idOf(t, body)] = bc.code
		}
		// Straight onto NATS, under another id.
		natsBody := bytes.Replace(body, []byte(`"bad-`), []byte(`"nats-bad-`), 1)
		for _, n := range []string{"changing", "vanishing"} {
			natsBody = bytes.Replace(natsBody, []byte(n+".mp4"), []byte(n+"-nats.mp4"), 1)
		}
		ack, err := pub.Publish(ctx, queue.JobsSubject, natsBody)
		if err != nil {
			t.Fatal(err)
		}
		natsSeqs[ack.Sequence] = name
		if bc.code != "" {
			natsIDs[idOf(t, natsBody)] = bc.code
		}
	}
	submitGood("good-2")
	// Grow or remove each such file while its job uploads (watching all at
	// once: one may run and finish while another still waits for a worker).
	alterWhileRunning(t, c, root)
	submitGood("good-3")

	// Every dead letter, with its reason.
	deadline := time.Now().Add(90 * time.Second)
	var dl []job.DeadLetter
	for {
		dl, err = q.DeadLetters.All(ctx)
		if err == nil && len(dl) >= len(httpIDs)+len(natsSeqs) {
			break
		}
		if time.Now().After(deadline) {
			have := map[string]bool{}
			for _, d := range dl {
				have[d.JobID] = true
			}
			var missing []string
			for _, ids := range []map[string]string{httpIDs, natsIDs} {
				for id, code := range ids {
					if !have[id] {
						v, err := c.Get(ctx, id)
						missing = append(missing, fmt.Sprintf("%s (want %s): state %s error %+v attempt %d %v", id, code, v.State, v.Error, v.Attempt, err))
					}
				}
			}
			t.Fatalf("%d dead letters, want %d; without one: %v", len(dl), len(httpIDs)+len(natsSeqs), missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := map[string]job.DeadLetter{} // by job id
	bySeq := map[uint64]job.DeadLetter{}
	for _, d := range dl {
		got[d.JobID] = d
		bySeq[d.StreamSeq] = d
		if d.Reason == "" {
			t.Errorf("dead letter without a reason: %+v", d)
		}
	}
	if len(dl) != len(httpIDs)+len(natsSeqs) {
		t.Errorf("%d dead letters, want one per bad message, %d", len(dl), len(httpIDs)+len(natsSeqs))
	}
	for id, code := range httpIDs {
		if got[id].Code != code {
			t.Errorf("HTTP job %s: dead letter %+v, want %s", id, got[id], code)
		}
		// The dead letter comes before the failed status (a crash between
		// them is finished by the redelivery): wait until the run is over.
		var v client.JobView
		testharness.WaitFor(t, 20*time.Second, "job "+id+" out of running", func() bool {
			v, err = c.Get(ctx, id)
			return err != nil || v.State != job.StateRunning
		})
		if err != nil || v.State != job.StateFailed || v.Error == nil || v.Error.Code != code {
			t.Errorf("HTTP job %s: %+v %v", id, v, err)
		}
	}
	// Each message published to NATS has its own dead letter: its code, and
	// for a message that is not a valid job a reason naming what is wrong.
	for seq, name := range natsSeqs {
		bc := badCases[name]
		want := bc.code
		if want == "" {
			want = "invalid_message"
		}
		d, ok := bySeq[seq]
		switch {
		case !ok:
			t.Errorf("%s over NATS (stream seq %d): no dead letter", name, seq)
			continue
		case d.Code != want:
			t.Errorf("%s over NATS: dead letter %+v, want code %s", name, d, want)
		}
		for _, f := range bc.fields {
			if !strings.Contains(d.Reason, f+": ") {
				t.Errorf("%s over NATS: dead letter reason %q does not name %q", name, d.Reason, f)
			}
		}
	}
	// Every bad job with an id ends with a job.failed event carrying its code.
	for _, ids := range []map[string]string{httpIDs, natsIDs} {
		for id, code := range ids {
			if got := failedCode(t, js, id); got != code {
				t.Errorf("job %s: job.failed with code %q, want %q", id, got, code)
			}
		}
	}
	// Every good job completed; the services still answer.
	for _, id := range []string{"good-1", "good-2", "good-3"} {
		waitState(t, c, id, job.StateCompleted)
	}
	for _, u := range []string{st.IngestURL + "/readyz", st.NotifyURL + "/readyz"} {
		resp, err := http.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", u, resp, err)
		}
		resp.Body.Close()
	}
}

// failedCode is the error code of the job's last job.failed event, or "".
func failedCode(t *testing.T, js jetstream.JetStream, jobID string) string {
	t.Helper()
	st, err := js.Stream(t.Context(), queue.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), queue.EventFilterSubject(job.EventFailed, jobID))
	if err != nil {
		return ""
	}
	e, err := job.DecodeEvent(m.Data)
	if err != nil {
		t.Fatalf("job.failed of %s: %v", jobID, err)
	}
	var d job.FailedData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("job.failed of %s: %v", jobID, err)
	}
	return d.Error.Code
}

// idOf reads a job message's id with a lenient match (the message may be invalid).
func idOf(t *testing.T, b []byte) string {
	t.Helper()
	m := idField.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no id in %s", b)
	}
	return string(m[1])
}

var idField = regexp.MustCompile(`"id"\s*:\s*"([^"]*)"`)

func waitState(t *testing.T, c *client.Client, id string, want job.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		v, err := c.Get(ctx, id)
		if err == nil && (v.State == want || (want == job.StateRunning && v.State.Terminal())) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("job %s never %s: %+v %v", id, want, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alterWhileRunning grows or removes each file of alteredJob once its job
// has sent bytes (so the worker has opened the source and taken its size: a
// job merely marked running may not have), and fails at once if a job ends
// before its file could change.
func alterWhileRunning(t *testing.T, c *client.Client, root string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	altered := map[string]bool{}
	last := map[string]string{} // job id → what the last look saw, for a timeout
	for len(altered) < len(alteredJob) {
		for file, a := range alteredJob {
			id := a.job
			if altered[file] {
				continue
			}
			v, err := c.Get(ctx, id)
			if err != nil {
				last[id] = "status: " + err.Error()
				continue
			}
			if v.State.Terminal() {
				t.Fatalf("job %s ended %s before its file could change", id, v.State)
			}
			if v.State != job.StateRunning || v.BytesDone == 0 {
				last[id] = fmt.Sprintf("%s, %d bytes sent", v.State, v.BytesDone)
				continue
			}
			if err := a.alter(filepath.Join(root, file)); err != nil {
				t.Fatalf("alter %s: %v", file, err)
			}
			altered[file] = true
		}
		if ctx.Err() != nil {
			t.Fatalf("altered jobs never ran: altered %v, last seen %v", altered, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alteredJob maps each file that changes while it uploads to the job that
// uploads it and what happens to it: it grows, or it is removed.
var alteredJob = map[string]struct {
	job   string
	alter func(path string) error
}{
	"changing.mp4": {"bad-changing", grow}, "changing-nats.mp4": {"nats-bad-changing", grow},
	"vanishing.mp4": {"bad-vanishing", os.Remove}, "vanishing-nats.mp4": {"nats-bad-vanishing", os.Remove},
}

// grow appends 4 KiB to the file at path.
func grow(path string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 4096))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
