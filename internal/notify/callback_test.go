package notify_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func ptr[T any](v T) *T { return &v }

// commitUpload drives vodsim as a client upload does (apply, COS put,
// commit) and returns the commit's answer.
func commitUpload(t *testing.T, v *testharness.Vodsim, p vod.SignatureParams) *vod.CommitResponse {
	t.Helper()
	return commitUploadAfter(t, v, p, nil)
}

// commitUploadAfter is commitUpload calling beforeCommit (when set) with the
// video's storage path just before the commit, as the worker records it.
func commitUploadAfter(t *testing.T, v *testharness.Vodsim, p vod.SignatureParams, beforeCommit func(storagePath string)) *vod.CommitResponse {
	t.Helper()
	ctx := t.Context()
	a, err := v.VODClient().Apply(ctx, v.Signer(p), vod.ApplyRequest{VideoName: "clip", VideoType: "mp4", VideoSize: ptr(int64(5))})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("video"), nil); err != nil {
		t.Fatalf("put: %v", err)
	}
	if beforeCommit != nil {
		beforeCommit(a.Video.StoragePath)
	}
	cm, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return cm
}

// postCallback sends a body to /v1/vod/callback as VOD would.
func postCallback(t *testing.T, in *instance, query string, body []byte) (int, intake.VODResult, errorAnswer) {
	t.Helper()
	resp, err := http.Post(in.url+"/v1/vod/callback"+query, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	var res intake.VODResult
	var ea errorAnswer
	_ = json.Unmarshal(raw, &res)
	_ = json.Unmarshal(raw, &ea)
	return resp.StatusCode, res, ea
}

// TestVodsimCallbackBecomesFileUploadedWithJob has vodsim call notify back
// after a commit, racing the FileId → job record as the worker's does.
func TestVodsimCallbackBecomesFileUploadedWithJob(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.CallbackToken = "cb-token-1" })
	in := e.start()
	v := testharness.StartVodsim(t, func(c *vodsim.Config) { c.CallbackURL = in.url + "/v1/vod/callback?token=cb-token-1" })

	cm := commitUpload(t, v, vod.SignatureParams{Procedure: "LongVideoPreset", SourceContext: "job=cb-1"})
	if err := e.q.Files.Record(t.Context(), cm.FileID, "cb-1"); err != nil { // right after the commit, as the worker does
		t.Fatal(err)
	}
	var evs []job.Event
	testharness.WaitFor(t, 10*time.Second, "vod.file_uploaded", func() bool { evs = e.eventsOf(job.EventVODFileUpload); return len(evs) == 1 })
	var d job.FileUploadedData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if evs[0].JobID != "cb-1" || d.FileID != cm.FileID || d.MediaURL != cm.MediaURL() || d.SourceContext != "job=cb-1" || d.ProcedureTaskID == "" {
		t.Fatalf("event %+v, data %+v", evs[0], d)
	}
	testharness.WaitFor(t, 5*time.Second, "vodsim to record the delivery", func() bool { return v.Events()[0].Delivered })

	// VOD delivers the same event again: answered, not published twice.
	body, err := json.Marshal(v.Events()[0].Event)
	if err != nil {
		t.Fatal(err)
	}
	code, res, _ := postCallback(t, in, "?token=cb-token-1", body)
	if code != 200 || !res.Duplicate || res.EventID != evs[0].ID || res.JobID != "cb-1" {
		t.Fatalf("repeat: %d %+v", code, res)
	}
	if n := len(e.eventsOf(job.EventVODFileUpload)); n != 1 {
		t.Fatalf("%d vod.file_uploaded events after a repeat", n)
	}
}

// TestCallbackFindsTheJobOfAWorkerThatDiedAfterItsCommit: the worker records
// the storage path before the commit and dies before it records the FileId.
// VOD's event still names the job (found by its media URL), and the FileId
// is then mapped for the file's later events.
func TestCallbackFindsTheJobOfAWorkerThatDiedAfterItsCommit(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.CorrelationWait = 300 * time.Millisecond })
	in := e.start()
	v := testharness.StartVodsim(t, func(c *vodsim.Config) { c.CallbackURL = in.url + "/v1/vod/callback?token=" + testCallbackToken })

	cm := commitUploadAfter(t, v, vod.SignatureParams{SourceContext: "job=died-1"}, func(path string) {
		if err := e.q.Files.RecordUpload(t.Context(), path, "died-1"); err != nil {
			t.Fatal(err)
		}
	})
	var evs []job.Event
	testharness.WaitFor(t, 10*time.Second, "vod.file_uploaded", func() bool { evs = e.eventsOf(job.EventVODFileUpload); return len(evs) == 1 })
	var d job.FileUploadedData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if evs[0].JobID != "died-1" || d.FileID != cm.FileID {
		t.Fatalf("event %+v, data %+v: want job died-1 and FileId %s", evs[0], d, cm.FileID)
	}
	if id, err := e.q.Files.JobFor(t.Context(), cm.FileID); err != nil || id != "died-1" {
		t.Fatalf("FileId → job after the event: %q, %v", id, err)
	}

	// Another upload, committed without a record: no job, as before.
	other := commitUpload(t, v, vod.SignatureParams{SourceContext: "browser"})
	testharness.WaitFor(t, 10*time.Second, "the second vod.file_uploaded", func() bool { evs = e.eventsOf(job.EventVODFileUpload); return len(evs) == 2 })
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), other.FileID) && ev.JobID != "" {
			t.Fatalf("an upload no job recorded got job %q", ev.JobID)
		}
	}
	// The outcome is counted after the event is published (and its marker
	// written): wait for the count rather than read it once.
	waitMetrics(t, in,
		`vodpipe_notify_vod_events_total{outcome="published_by_media_url",source="callback"} 1`+"\n",
		`vodpipe_notify_vod_events_total{outcome="uncorrelated",source="callback"} 1`+"\n")
}

func fileUploadBody(fileID string) []byte {
	b, _ := json.Marshal(vod.NewFileUploadEvent(vod.FileUpload{FileID: fileID, MediaURL: "http://media/" + fileID + ".mp4",
		SourceContext: "ctx", ProcedureTaskID: "task-" + fileID, CreateTime: time.Now()}))
	return b
}

func TestCallbackCorrelatesDedupesAndRefuses(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.CallbackToken = "tok-abc"; c.CorrelationWait = 1500 * time.Millisecond })
	in := e.start()
	ctx := t.Context()

	t.Run("token", func(t *testing.T) {
		for _, q := range []string{"", "?token=wrong", "?token=tok-ab"} {
			if code, _, ea := postCallback(t, in, q, fileUploadBody("1")); code != 401 || ea.Error.Code != "bad_token" {
				t.Errorf("query %q: %d %+v", q, code, ea)
			}
		}
	})
	t.Run("malformed bodies", func(t *testing.T) {
		cases := map[string]string{
			`{"EventType":`: "event malformed",
			`{"EventType":"NewFileUpload","FileUploadEvent":{"MediaBasicInfo":{"MediaUrl":"http://m"}}}`: "FileUploadEvent.FileId missing",
			`{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"9"}}`:                             "MediaUrl missing",
			`{"FileUploadEvent":{}}`: "EventType missing",
			`{"EventType":"ProcedureStateChanged","ProcedureStateChangeEvent":{"Status":"FINISH"}}`: "TaskId missing",
			`{"EventType":"ProcedureStateChanged"}`:                                                 "ProcedureStateChangeEvent missing",
		}
		for body, want := range cases {
			code, _, ea := postCallback(t, in, "?token=tok-abc", []byte(body))
			if code != 400 || ea.Error.Code != "bad_event" || !strings.Contains(ea.Error.Message, want) {
				t.Errorf("%s: %d %+v, want 400 naming %q", body, code, ea, want)
			}
		}
	})
	t.Run("other event types are acknowledged, not published", func(t *testing.T) {
		code, res, _ := postCallback(t, in, "?token=tok-abc", []byte(`{"EventType":"TranscodeComplete","TranscodeCompleteEvent":{}}`))
		if code != 200 || !res.Ignored || res.EventType != "TranscodeComplete" {
			t.Fatalf("%d %+v", code, res)
		}
	})
	t.Run("mapping recorded after the callback arrived", func(t *testing.T) {
		time.AfterFunc(150*time.Millisecond, func() { _ = e.q.Files.Record(ctx, "late-1", "job-late") })
		code, res, _ := postCallback(t, in, "?token=tok-abc", fileUploadBody("late-1"))
		if code != 200 || res.JobID != "job-late" || res.Duplicate {
			t.Fatalf("%d %+v", code, res)
		}
	})
	t.Run("unknown FileId is published without a job", func(t *testing.T) {
		start := time.Now()
		code, res, _ := postCallback(t, in, "?token=tok-abc", fileUploadBody("stranger"))
		if code != 200 || res.JobID != "" || res.EventID == "" {
			t.Fatalf("%d %+v", code, res)
		}
		if d := time.Since(start); d < 1500*time.Millisecond || d > 10*time.Second {
			t.Fatalf("answered after %s; the correlation wait is 1.5s", d)
		}
		// A repeat is answered from the marker, without waiting again: under
		// the 1.5 s a second wait would take.
		start = time.Now()
		if code, res2, _ := postCallback(t, in, "?token=tok-abc", fileUploadBody("stranger")); code != 200 || !res2.Duplicate ||
			res2.EventID != res.EventID || time.Since(start) >= 1500*time.Millisecond {
			t.Fatalf("repeat: %d %+v after %s", code, res2, time.Since(start))
		}
	})
	t.Run("procedure state changes", func(t *testing.T) {
		if err := e.q.Files.Record(ctx, "proc-file", "job-proc"); err != nil {
			t.Fatal(err)
		}
		body := `{"EventType":"ProcedureStateChanged","ProcedureStateChangeEvent":{"TaskId":"t-1","Status":"FINISH","ErrCode":0,"FileId":"proc-file","MediaProcessResultSet":[]}}`
		code, res, _ := postCallback(t, in, "?token=tok-abc", []byte(body))
		if code != 200 || res.JobID != "job-proc" || res.Type != job.EventVODProcedure {
			t.Fatalf("%d %+v", code, res)
		}
		if code, res, _ := postCallback(t, in, "?token=tok-abc", []byte(body)); code != 200 || !res.Duplicate {
			t.Fatalf("repeat: %d %+v", code, res)
		}
		// Another state of the same task is another event.
		if code, res, _ := postCallback(t, in, "?token=tok-abc", []byte(strings.Replace(body, "FINISH", "PROCESSING", 1))); code != 200 || res.Duplicate {
			t.Fatalf("other state: %d %+v", code, res)
		}
	})
	var byType = map[string]int{}
	for _, ev := range e.events() {
		byType[ev.Type]++
	}
	if byType[job.EventVODFileUpload] != 2 || byType[job.EventVODProcedure] != 2 || len(byType) != 2 {
		t.Fatalf("events on the stream: %v", byType)
	}
	var pd intake.ProcedureChangedData
	for _, ev := range e.eventsOf(job.EventVODProcedure) {
		if err := json.Unmarshal(ev.Data, &pd); err != nil || pd.TaskID != "t-1" || pd.FileID != "proc-file" || len(pd.Event) == 0 {
			t.Fatalf("procedure data %s: %v", ev.Data, err)
		}
	}
	m := scrape(t, in)
	for _, want := range []string{
		`vodpipe_notify_vod_events_total{outcome="duplicate",source="callback"} 2` + "\n",
		`vodpipe_notify_vod_events_total{outcome="uncorrelated",source="callback"} 1` + "\n",
		`vodpipe_notify_vod_events_total{outcome="ignored",source="callback"} 1` + "\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func pullKeyFile(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pull-key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPullModePublishesThenConfirms runs notify in reliable-callback mode
// against vodsim's Cloud API, through Tencent Cloud's SDK.
func TestPullModePublishesThenConfirms(t *testing.T) {
	v := testharness.StartVodsim(t) // no callback URL: events wait to be pulled
	e := newEnv(t, func(c *notify.Config) {
		c.PullAPIID, c.PullAPIKeyFile = testharness.VodsimSecretID, pullKeyFile(t, testharness.VodsimSecretKey)
		c.PullEndpoint, c.PullDialAddr, c.PullInterval = "http://vod.tencentcloudapi.com", v.Addr, 50*time.Millisecond
		c.CorrelationWait = 300 * time.Millisecond // for the upload no job made
	})
	known := commitUpload(t, v, vod.SignatureParams{Procedure: "LongVideoPreset", SourceContext: "pull"})
	if err := e.q.Files.Record(t.Context(), known.FileID, "pull-1"); err != nil {
		t.Fatal(err)
	}
	stranger := commitUpload(t, v, vod.SignatureParams{})
	in := e.start()

	testharness.WaitFor(t, 15*time.Second, "both events published and confirmed", func() bool {
		evs := v.Events()
		return len(e.eventsOf(job.EventVODFileUpload)) == 2 && evs[0].Confirmed && evs[1].Confirmed
	})
	byFile := map[string]job.Event{}
	for _, ev := range e.eventsOf(job.EventVODFileUpload) {
		var d job.FileUploadedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		byFile[d.FileID] = ev
		if d.FileID == known.FileID && (d.ProcedureTaskID == "" || d.SourceContext != "pull") {
			t.Fatalf("data %+v", d)
		}
	}
	if byFile[known.FileID].JobID != "pull-1" || byFile[stranger.FileID].JobID != "" {
		t.Fatalf("events %+v", byFile)
	}
	// Counted after the events are published and confirmed: waited for.
	waitMetrics(t, in,
		`vodpipe_notify_vod_events_total{outcome="published",source="pull"} 1`+"\n",
		`vodpipe_notify_vod_events_total{outcome="uncorrelated",source="pull"} 1`+"\n",
		`vodpipe_notify_pull_requests_total{action="ConfirmEvents",outcome="ok"}`)
}

func TestPullModeWithWrongKeyConfirmsNothing(t *testing.T) {
	v := testharness.StartVodsim(t)
	e := newEnv(t, func(c *notify.Config) {
		c.PullAPIID, c.PullAPIKeyFile = testharness.VodsimSecretID, pullKeyFile(t, "not-the-key")
		c.PullEndpoint, c.PullDialAddr = "http://vod.tencentcloudapi.com", v.Addr
	})
	commitUpload(t, v, vod.SignatureParams{})
	in := e.start()
	testharness.WaitFor(t, 10*time.Second, "a refused pull", func() bool {
		return strings.Contains(scrape(t, in), `vodpipe_notify_pull_requests_total{action="PullEvents",outcome="error"}`)
	})
	if ev := v.Events(); ev[0].Confirmed || len(e.eventsOf(job.EventVODFileUpload)) != 0 {
		t.Fatalf("event confirmed or published with a wrong key: %+v", ev)
	}
	if !strings.Contains(e.log.String(), "AuthFailure.SignatureFailure") {
		t.Fatalf("log does not name the refusal:\n%s", e.log.String())
	}
}

func TestPullModeNeedsItsKeyFile(t *testing.T) {
	for name, mod := range map[string]func(*notify.Config){
		"no key file":    func(c *notify.Config) { c.PullAPIID = "AKIDx" },
		"empty key file": func(c *notify.Config) { c.PullAPIID, c.PullAPIKeyFile = "AKIDx", pullKeyFile(t, "") },
		"bad endpoint": func(c *notify.Config) {
			c.PullAPIID, c.PullAPIKeyFile, c.PullEndpoint = "AKIDx", pullKeyFile(t, "k"), "vod.tencentcloudapi.com"
		},
	} {
		cfg := notify.Config{FanoutConfig: fanout.Config{WebhookConfig: fanout.WebhookConfig{WebhookSecretKeys: []string{newSealKey()}}}}
		mod(&cfg)
		if _, err := notify.New(t.Context(), cfg, nil); err == nil || !strings.Contains(err.Error(), "PULL_") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
