package ingest_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// browser is a cookie-keeping client of the console that follows no
// redirects (the tests look at them).
type browser struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
}

func newBrowser(t *testing.T, a *api) *browser { return &browser{t: t, base: a.url} }

type page struct {
	status   int
	header   http.Header
	body     string
	location string
}

func (b *browser) req(method, path string, form url.Values, headers ...string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "vodpipe_console" {
			b.cookie = ck
		}
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw), location: resp.Header.Get("Location")}
}

// signIn signs in with key and returns the session's CSRF token (from the
// page's meta tag, as the console's script reads it).
func (b *browser) signIn(key string) string {
	b.t.Helper()
	p := b.req("POST", "/console/login", url.Values{"key": {key}, "next": {"/console/jobs"}})
	if p.status != http.StatusSeeOther || p.location != "/console/jobs" || b.cookie == nil {
		b.t.Fatalf("sign-in: %d to %q, cookie %v: %s", p.status, p.location, b.cookie, p.body)
	}
	return b.csrf()
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

func (b *browser) csrf() string {
	b.t.Helper()
	p := b.req("GET", "/console/jobs", nil)
	m := csrfMeta.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil {
		b.t.Fatalf("jobs page: %d, no CSRF token: %s", p.status, p.body)
	}
	return m[1]
}

func (a *api) submitQueued(id, source string) {
	a.t.Helper()
	body := fmt.Sprintf(`{"id":%q,"source":%q}`, id, source)
	if r := a.do("POST", "/v1/jobs", adminKey, "application/json", body); r.status != http.StatusAccepted && r.status != http.StatusCreated {
		a.t.Fatalf("submit %s: %d %s", id, r.status, r.raw)
	}
}

func (a *api) state(id string) string {
	a.t.Helper()
	r := a.do("GET", "/v1/jobs/"+id, adminKey, "", "")
	s, _ := r.body["state"].(string)
	return s
}

// TestConsoleSignInSetsAStrictHttpOnlyCookie: the session cookie is
// HttpOnly, SameSite=Strict, scoped to /console, Secure behind HTTPS, and
// does not hold the API key readably.
func TestConsoleSignInSetsAStrictHttpOnlyCookie(t *testing.T) {
	a := startIngest(t)
	for _, https := range []bool{false, true} {
		b := newBrowser(t, a)
		var h []string
		if https {
			h = []string{"X-Forwarded-Proto", "https"}
		}
		p := b.req("POST", "/console/login", url.Values{"key": {adminKey}}, h...)
		if p.status != http.StatusSeeOther || p.location != "/console" {
			t.Fatalf("sign-in: %d to %q", p.status, p.location)
		}
		ck := b.cookie
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console" || ck.Secure != https {
			t.Fatalf("cookie (https %v): %+v", https, ck)
		}
		if strings.Contains(ck.Value, adminKey) || strings.Contains(p.header.Get("Set-Cookie"), adminKey) {
			t.Fatal("the cookie holds the API key in clear")
		}
		if p := b.req("GET", "/console", nil); p.status != http.StatusOK || !strings.Contains(p.body, "<h1>Overview</h1>") {
			t.Fatalf("overview after sign-in: %d %.300s", p.status, p.body)
		}
	}
}

// TestConsoleSignInRefusals: an unknown key gets no session; a page
// without a session sends to the sign-in page and an action without one is
// refused; a forged or altered cookie is no session; and after signing in
// the console goes to its own pages only.
func TestConsoleSignInRefusals(t *testing.T) {
	a := startIngest(t)
	b := newBrowser(t, a)
	if p := b.req("POST", "/console/login", url.Values{"key": {"not-a-key-0123456789"}}); p.status != http.StatusUnauthorized || b.cookie != nil {
		t.Fatalf("unknown key: %d, cookie %v", p.status, b.cookie)
	}
	if p := b.req("GET", "/console/jobs?state=queued", nil); p.status != http.StatusSeeOther ||
		p.location != "/console/login?next="+url.QueryEscape("/console/jobs?state=queued") {
		t.Fatalf("no session: %d to %q", p.status, p.location)
	}
	if p := b.req("POST", "/console/jobs/x/cancel", url.Values{"csrf": {"x"}}); p.status != http.StatusUnauthorized {
		t.Fatalf("action without a session: %d", p.status)
	}
	b.signIn(adminKey)
	good := *b.cookie
	forged := good
	forged.Value = good.Value[:len(good.Value)-4] + "AAAA"
	b.cookie = &forged
	if p := b.req("GET", "/console", nil); p.status != http.StatusSeeOther {
		t.Fatalf("altered cookie: %d, want the sign-in page", p.status)
	}
	b.cookie = &http.Cookie{Name: "vodpipe_console", Value: base64.RawURLEncoding.EncodeToString([]byte(`{"k":"` + adminKey + `","e":9999999999,"c":"x"}`))}
	if p := b.req("GET", "/console", nil); p.status != http.StatusSeeOther {
		t.Fatalf("a cookie written by hand: %d, want the sign-in page", p.status)
	}
	for next, want := range map[string]string{"https://evil.example/": "/console", "//evil.example": "/console",
		"/console/jobs?state=failed": "/console/jobs?state=failed", "/v1/jobs": "/console"} {
		b := newBrowser(t, a)
		if p := b.req("POST", "/console/login", url.Values{"key": {adminKey}, "next": {next}}); p.location != want {
			t.Errorf("next %q: to %q, want %q", next, p.location, want)
		}
	}
	c := newBrowser(t, a)
	if p := c.req("POST", "/console/login", url.Values{"key": {adminKey}}, "Origin", "https://evil.example"); p.status != http.StatusForbidden || c.cookie != nil {
		t.Fatalf("a sign-in posted from another site: %d, cookie %v", p.status, c.cookie)
	}
}

// TestConsoleRefusesActionsWithoutTheCSRFToken: a forged pause (no token,
// a wrong one, or the right one sent from another site) is refused and the
// job stays queued; the console's own form pauses it.
func TestConsoleRefusesActionsWithoutTheCSRFToken(t *testing.T) {
	a := startIngest(t)
	a.submitQueued("csrf-1", "file:///media/a.mp4")
	b := newBrowser(t, a)
	token := b.signIn(adminKey)
	for name, tc := range map[string]struct {
		form    url.Values
		headers []string
	}{
		"no token":           {url.Values{}, nil},
		"wrong token":        {url.Values{"csrf": {token[:len(token)-2] + "xx"}}, nil},
		"from another site":  {url.Values{"csrf": {token}}, []string{"Origin", "https://evil.example"}},
		"cross-site fetch":   {url.Values{"csrf": {token}}, []string{"Sec-Fetch-Site", "cross-site"}},
		"token of the other": {url.Values{"csrf": {newBrowser(t, a).signIn(adminKey)}}, nil},
	} {
		if p := b.req("POST", "/console/jobs/csrf-1/pause", tc.form, tc.headers...); p.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, p.status)
		}
	}
	if c, err := a.svc.Queue().Control.Get(t.Context(), "csrf-1"); err != nil || c != job.ControlNone {
		t.Fatalf("after the forged actions the job's control is %q (%v), want none", c, err)
	}
	if p := b.req("POST", "/console/jobs/csrf-1/pause", url.Values{"csrf": {token}}, "Origin", a.url); p.status != http.StatusSeeOther ||
		p.location != "/console/jobs/csrf-1?done=pause" {
		t.Fatalf("the console's pause: %d to %q: %s", p.status, p.location, p.body)
	}
	if c, err := a.svc.Queue().Control.Get(t.Context(), "csrf-1"); err != nil || c != job.ControlPause {
		t.Fatalf("after the console's pause the job's control is %q (%v), want pause", c, err)
	}
}

// TestConsoleReadOnlyKeySeesNoActionsAndIsRefused: signed in with a read
// key the pages show no action and no dead letter's message, and the
// actions, posted with the session's own token, are refused by the API.
func TestConsoleReadOnlyKeySeesNoActionsAndIsRefused(t *testing.T) {
	a := startIngest(t)
	a.submitQueued("ro-1", "https://media.example/a.mp4?sig=secret")
	if err := a.svc.Queue().DeadLetters.Publish(t.Context(), job.DeadLetter{JobID: "ro-dl", Code: "source_not_found", Reason: "gone"},
		[]byte(`{"v":1,"id":"ro-dl","source":"https://media.example/b.mp4?sig=secret2"}`)); err != nil {
		t.Fatal(err)
	}
	ro := newBrowser(t, a)
	token := ro.signIn(readerKey)
	jp := ro.req("GET", "/console/jobs/ro-1", nil)
	if jp.status != http.StatusOK || strings.Contains(jp.body, `action="/console/jobs/ro-1/`) || strings.Contains(jp.body, "sig=secret") {
		t.Fatalf("the read key's job page: %d, shows an action or the source's token: %s", jp.status, jp.body)
	}
	dl := ro.req("GET", "/console/dead-letters", nil)
	if dl.status != http.StatusOK || !strings.Contains(dl.body, "ro-dl") || strings.Contains(dl.body, "/requeue") {
		t.Fatalf("the read key's dead letters: %d: %s", dl.status, dl.body)
	}
	for _, path := range []string{"/console/jobs/ro-1/cancel", "/console/jobs/ro-1/pause"} {
		if p := ro.req("POST", path, url.Values{"csrf": {token}}); p.status != http.StatusForbidden {
			t.Errorf("read key %s: %d, want 403", path, p.status)
		}
	}
	if p := ro.req("GET", "/console/dead-letters/1", nil); p.status != http.StatusForbidden || strings.Contains(p.body, "secret2") {
		t.Errorf("read key dead letter message: %d", p.status)
	}
	if c, err := a.svc.Queue().Control.Get(t.Context(), "ro-1"); err != nil || c != job.ControlNone || a.state("ro-1") != "queued" {
		t.Fatalf("after the read key's actions the job's control is %q (%v), want none", c, err)
	}
	admin := newBrowser(t, a)
	admin.signIn(adminKey)
	jp = admin.req("GET", "/console/jobs/ro-1", nil)
	for _, act := range []string{"pause", "cancel"} {
		if !strings.Contains(jp.body, `action="/console/jobs/ro-1/`+act+`"`) {
			t.Errorf("the control key's page of a queued job has no %s", act)
		}
	}
	if strings.Contains(jp.body, `action="/console/jobs/ro-1/resume"`) || strings.Contains(jp.body, `action="/console/jobs/ro-1/retry"`) {
		t.Error("a queued job offers resume or retry")
	}
}

// TestJobEventsAreTheJobsTimeline: GET /v1/jobs/{id}/events answers the
// job's events only, oldest first, with job.queued's source redacted for a
// key without the control scope.
func TestJobEventsAreTheJobsTimeline(t *testing.T) {
	a := startIngest(t)
	a.submitQueued("tl-1", "https://media.example/a.mp4?sig=secret")
	a.submitQueued("tl-2", "file:///media/b.mp4")
	ev := a.svc.Queue().Events
	for _, p := range []int64{10, 20} {
		if err := ev.Emit(t.Context(), job.EventProgress, "tl-1", job.ProgressData{BytesDone: p, BytesTotal: 20}); err != nil {
			t.Fatal(err)
		}
	}
	types := func(key string) ([]string, string) {
		r := a.do("GET", "/v1/jobs/tl-1/events", key, "", "")
		var out client.JobEventsResponse
		if r.status != http.StatusOK || json.Unmarshal(r.raw, &out) != nil {
			t.Fatalf("events: %d %s", r.status, r.raw)
		}
		var ts []string
		for _, e := range out.Events {
			if e.JobID != "tl-1" {
				t.Fatalf("an event of job %s", e.JobID)
			}
			ts = append(ts, e.Type)
		}
		return ts, string(r.raw)
	}
	got, raw := types(readerKey)
	if strings.Join(got, ",") != "job.queued,job.progress,job.progress" {
		t.Fatalf("timeline: %v", got)
	}
	if strings.Contains(raw, "sig=secret") {
		t.Fatalf("the read key sees the source whole: %s", raw)
	}
	if _, raw := types(adminKey); !strings.Contains(raw, "sig=secret") {
		t.Fatalf("the control key sees the source redacted: %s", raw)
	}
	if r := a.do("GET", "/v1/jobs/nope/events", readerKey, "", ""); r.status != http.StatusNotFound {
		t.Fatalf("events of no job: %d", r.status)
	}
}

// TestStatsCountsTheOutcomesOfTheMinute: job.completed and job.failed
// events count in the current minute of GET /v1/stats, with the completed
// jobs' bytes.
func TestStatsCountsTheOutcomesOfTheMinute(t *testing.T) {
	a := startIngest(t)
	ev := a.svc.Queue().Events
	for i := range 3 {
		if err := ev.Emit(t.Context(), job.EventCompleted, fmt.Sprintf("st-%d", i), job.CompletedData{FileID: "f", Bytes: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ev.Emit(t.Context(), job.EventFailed, "st-9", job.FailedData{Error: job.Error{Code: "x"}}); err != nil {
		t.Fatal(err)
	}
	var last client.StatsResponse
	testharness.WaitFor(t, 10*time.Second, "3 completed (3000 bytes) and 1 failed in the stats", func() bool {
		r := a.do("GET", "/v1/stats", readerKey, "", "")
		if r.status != http.StatusOK || json.Unmarshal(r.raw, &last) != nil || len(last.Throughput) != 60 {
			t.Fatalf("stats: %d %s", r.status, r.raw)
		}
		var done, failed uint64
		var bytes int64
		for _, m := range last.Throughput {
			done, failed, bytes = done+m.Completed, failed+m.Failed, bytes+m.Bytes
		}
		return done == 3 && failed == 1 && bytes == 3000
	})
	if r := a.do("GET", "/v1/stats?x=1", readerKey, "", ""); r.status != http.StatusBadRequest {
		t.Fatalf("stats with a query: %d", r.status)
	}
}

// TestRetryRunsAFailedJobFromItsDeadLetter: POST /v1/jobs/{id}/retry
// requeues a failed job's dead letter; a job that is not failed is 409.
func TestRetryRunsAFailedJobFromItsDeadLetter(t *testing.T) {
	a := startIngest(t)
	q := a.svc.Queue()
	a.submitQueued("rt-1", "file:///media/a.mp4")
	if _, err := q.Statuses.Transition(t.Context(), "rt-1", job.StateFailed, func(s *job.Status) {
		s.Error = &job.Error{Code: "source_not_found", Message: "gone"}
	}); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetters.Publish(t.Context(), job.DeadLetter{JobID: "rt-1", Code: "source_not_found", Reason: "gone"},
		[]byte(`{"v":1,"id":"rt-1","source":"file:///media/a.mp4"}`)); err != nil {
		t.Fatal(err)
	}
	if r := a.do("POST", "/v1/jobs/rt-1/retry", readerKey, "", ""); r.status != http.StatusForbidden {
		t.Fatalf("retry with a read key: %d", r.status)
	}
	if r := a.do("POST", "/v1/jobs/rt-1/retry", adminKey, "", ""); r.status != http.StatusOK || r.body["state"] != "queued" {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/jobs/rt-1/retry", adminKey, "", ""); r.status != http.StatusConflict {
		t.Fatalf("retry of a queued job: %d, want 409", r.status)
	}
	if r := a.do("POST", "/v1/jobs/nope/retry", adminKey, "", ""); r.status != http.StatusNotFound {
		t.Fatalf("retry of no job: %d", r.status)
	}
}

// TestConsoleLiveEventsCarryProgressNotTheJob: the console's event stream
// sends a job's progress (folded) and its state changes, and not the job
// message that job.queued carries.
func TestConsoleLiveEventsCarryProgressNotTheJob(t *testing.T) {
	a := startIngest(t)
	b := newBrowser(t, a)
	b.signIn(readerKey)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.url+"/console/events", nil)
	req.AddCookie(b.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() { // "retry:" comes once the subscription is made
		t.Fatal("no stream")
	}
	a.submitQueued("live-1", "https://media.example/a.mp4?sig=secret")
	if err := a.svc.Queue().Events.Emit(t.Context(), job.EventProgress, "live-1", job.ProgressData{BytesDone: 5, BytesTotal: 10}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	var event string
	for sc.Scan() && len(seen) < 2 {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			seen[event] = strings.TrimPrefix(line, "data: ")
		}
	}
	if !strings.Contains(seen["job.queued"], `"jobId":"live-1"`) || strings.Contains(seen["job.queued"], "secret") {
		t.Fatalf("job.queued: %q", seen["job.queued"])
	}
	if !strings.Contains(seen["job.progress"], `"bytesDone":5`) {
		t.Fatalf("job.progress: %q", seen["job.progress"])
	}
}

// TestStatsReadsTheHourBackAtStart: an ingest replica started after jobs
// completed counts them from the events stream, says its counts are whole
// for the hour, and then counts new ones once.
func TestStatsReadsTheHourBackAtStart(t *testing.T) {
	a := startIngest(t)
	ev := a.svc.Queue().Events
	emit := func(id string) {
		if err := ev.Emit(t.Context(), job.EventCompleted, id, job.CompletedData{FileID: "f-" + id, Bytes: 500}); err != nil {
			t.Fatal(err)
		}
	}
	emit("early-1")
	emit("early-2")
	b := startIngest(t, func(c *ingest.Config) { c.NATS.URL = a.nats.URL })
	stats := func() (done uint64, bytes int64, since time.Time) {
		r := b.do("GET", "/v1/stats", readerKey, "", "")
		var s client.StatsResponse
		if r.status != http.StatusOK || json.Unmarshal(r.raw, &s) != nil {
			t.Fatalf("stats: %d %s", r.status, r.raw)
		}
		for _, m := range s.Throughput {
			done, bytes = done+m.Completed, bytes+m.Bytes
		}
		return done, bytes, s.CountedSince
	}
	testharness.WaitFor(t, 10*time.Second, "the earlier jobs read back", func() bool {
		done, bytes, since := stats()
		return done == 2 && bytes == 1000 && time.Since(since) > 59*time.Minute
	})
	emit("late-1")
	testharness.WaitFor(t, 10*time.Second, "the new job counted", func() bool { done, _, _ := stats(); return done == 3 })
	if done, bytes, _ := stats(); done != 3 || bytes != 1500 {
		t.Fatalf("after the new job: %d jobs, %d bytes; want 3 and 1500", done, bytes)
	}
}

// TestConsoleSignInLimitHoldsForTheRightKeyToo: once failed sign-ins have
// spent the limiter, a right key waits too; were it let in, the limiter
// would only tell a guesser its wrong guesses (429) from its right one
// (303) at any rate.
func TestConsoleSignInLimitHoldsForTheRightKeyToo(t *testing.T) {
	a := startIngest(t)
	b := newBrowser(t, a)
	limited := false
	for i := range 100 {
		p := b.req("POST", "/console/login", url.Values{"key": {fmt.Sprintf("wrong-key-%04d", i)}})
		if p.status == http.StatusTooManyRequests {
			limited = true
			break
		}
		if p.status != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d", i, p.status)
		}
	}
	if !limited {
		t.Fatal("100 wrong keys in a row, none limited")
	}
	if p := b.req("POST", "/console/login", url.Values{"key": {readerKey}, "next": {"/console/jobs"}}); p.status != http.StatusTooManyRequests || b.cookie != nil {
		t.Fatalf("the right key while the limit holds: %d, cookie %v; want 429 and no session", p.status, b.cookie)
	}
}
