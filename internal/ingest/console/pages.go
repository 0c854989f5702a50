package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"login", "error", "overview", "jobs", "job", "deadletters", "deadletter", "webhooks", "webhook"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"bytes":   humanBytes,
		"bps":     bps,
		"percent": percent,
		"ago":     ago,
		"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"json":    prettyJSON,
		"excerpt": func(s string, n int) string { return excerpt(s, n) },
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Op      *operator
	CSRF    string
	Notice  string
	Control bool // the key may act (pause, requeue, replay…)
	Data    any
}

// render writes a page; data is a *page or the page's own data.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	p, ok := data.(*page)
	if !ok {
		p = &page{Data: data}
	}
	if o := operatorFrom(r.Context()); o != nil {
		p.Op, p.CSRF, p.Control = o, o.sess.CSRF, o.can(apikey.ScopeControl)
	}
	if p.Title == "" {
		p.Title = name
	}
	if p.Notice == "" {
		p.Notice = notices[r.URL.Query().Get("done")]
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// notices are the messages of ?done=… after an action (fixed texts: a link
// cannot make the console say anything else).
var notices = map[string]string{
	"pause": "Pause asked: the job stops at its next part.", "resume": "Resumed: the job is queued again.",
	"cancel": "Cancel asked.", "retry": "The job is queued again.", "requeue": "The dead letter's job is queued again.",
	"replay": "Replay started: the event is sent again.", "enable": "Subscription enabled.", "disable": "Subscription disabled.",
}

// fail shows an error page with the status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", &page{Title: http.StatusText(status), Data: msg})
}

// apiFail shows an API's refusal as it said it (its status and message).
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *client.APIError
	if errors.As(err, &ae) {
		c.fail(w, r, ae.Status, ae.Message)
		return
	}
	c.log.Warn("console: API call failed", "path", r.URL.Path, "err", err)
	c.fail(w, r, http.StatusBadGateway, "The API could not be reached: "+err.Error())
}

// overviewData is the overview page's.
type overviewData struct {
	Counts     client.CountsResponse
	States     []job.State
	Stats      client.StatsResponse
	Chart      template.HTML
	LastHour   client.ThroughputMinute // the hour's sums
	Rate5      float64                 // jobs per second over the last 5 minutes
	Bytes5     float64                 // bytes per second over the last 5 minutes
	Workers    []workerRow
	Running    int
	Subs       []client.Subscription
	SubsError  string
	SubsFailed int
}

type workerRow struct {
	Name string
	Jobs []client.JobView
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	api := c.ingest(o)
	d := overviewData{States: job.States()}
	var err error
	if d.Counts, err = api.Counts(r.Context()); err != nil {
		c.apiFail(w, r, err)
		return
	}
	if d.Stats, err = api.Stats(r.Context()); err != nil {
		c.apiFail(w, r, err)
		return
	}
	n := len(d.Stats.Throughput)
	for i, m := range d.Stats.Throughput {
		d.LastHour.Completed += m.Completed
		d.LastHour.Failed += m.Failed
		d.LastHour.Bytes += m.Bytes
		if i >= n-6 && i < n-1 { // the 5 whole minutes before the current one
			d.Rate5 += float64(m.Completed) / 300
			d.Bytes5 += float64(m.Bytes) / 300
		}
	}
	d.Chart = throughputChart(d.Stats.Throughput)
	running, err := api.List(r.Context(), job.StateRunning, 200, "")
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	d.Running = len(running.Jobs)
	byWorker := map[string]int{}
	for _, j := range running.Jobs {
		name := j.Worker
		if name == "" {
			name = "(starting)"
		}
		i, ok := byWorker[name]
		if !ok {
			i = len(d.Workers)
			byWorker[name] = i
			d.Workers = append(d.Workers, workerRow{Name: name})
		}
		d.Workers[i].Jobs = append(d.Workers[i].Jobs, j)
	}
	slices.SortFunc(d.Workers, func(a, b workerRow) int { return strings.Compare(a.Name, b.Name) })
	if n, err := c.notify(o); err != nil {
		d.SubsError = err.Error()
	} else if d.Subs, err = n.Subscriptions(r.Context()); err != nil {
		d.SubsError = "notify: " + err.Error()
	}
	for _, s := range d.Subs {
		if s.Status != "active" || s.ConsecutiveFailures > 0 {
			d.SubsFailed++
		}
	}
	c.render(w, r, http.StatusOK, "overview", &page{Title: "Overview", Nav: "overview", Data: d})
}

// jobsData is the jobs page's.
type jobsData struct {
	States []job.State
	State  job.State
	Query  string
	Jobs   []client.JobView
	Next   string
	First  bool
	Counts client.CountsResponse
}

func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	api := c.ingest(o)
	q := r.URL.Query()
	d := jobsData{States: job.States(), State: job.State(q.Get("state")), Query: strings.TrimSpace(q.Get("id")), First: q.Get("cursor") == ""}
	if d.Query != "" {
		// Search by id: the job itself, or none.
		v, err := api.Get(r.Context(), d.Query)
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		case err != nil:
			c.apiFail(w, r, err)
			return
		default:
			d.Jobs = []client.JobView{v}
		}
		c.render(w, r, http.StatusOK, "jobs", &page{Title: "Jobs", Nav: "jobs", Data: d})
		return
	}
	list, err := api.List(r.Context(), d.State, 50, q.Get("cursor"))
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	if d.Counts, err = api.Counts(r.Context()); err != nil {
		c.apiFail(w, r, err)
		return
	}
	d.Jobs, d.Next = list.Jobs, list.NextCursor
	c.render(w, r, http.StatusOK, "jobs", &page{Title: "Jobs", Nav: "jobs", Data: d})
}

// jobData is a job's page's.
type jobData struct {
	Job       client.JobView
	Message   string
	Timeline  []timelineRow
	Truncated bool
	Actions   []string
	EventsErr string
}

// timelineRow is one event, or a run of progress events shown as one.
type timelineRow struct {
	Time    time.Time
	Type    string
	Summary string
	Count   int // progress events folded into this row
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	api := c.ingest(o)
	v, err := api.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	d := jobData{Job: v, Message: prettyJSON(v.Job)}
	if o.can(apikey.ScopeControl) {
		d.Actions = actionsFor(v.State)
	}
	evs, err := api.JobEvents(r.Context(), v.ID)
	if err != nil {
		d.EventsErr = err.Error()
	}
	d.Timeline, d.Truncated = timeline(evs.Events), evs.Truncated
	c.render(w, r, http.StatusOK, "job", &page{Title: "Job " + v.ID, Nav: "jobs", Data: d})
}

// actionsFor are the actions a job's state allows, by the job state machine.
func actionsFor(st job.State) []string {
	var out []string
	if job.CanTransition(st, job.StatePaused) {
		out = append(out, "pause")
	}
	if st == job.StatePaused {
		out = append(out, "resume")
	}
	if job.CanTransition(st, job.StateCanceled) {
		out = append(out, "cancel")
	}
	if st == job.StateFailed {
		out = append(out, "retry")
	}
	return out
}

// timeline folds each run of progress events into its last one.
func timeline(evs []job.Event) []timelineRow {
	var out []timelineRow
	for _, e := range evs {
		row := timelineRow{Time: e.Time, Type: e.Type, Summary: summary(e), Count: 1}
		if n := len(out); n > 0 && e.Type == job.EventProgress && out[n-1].Type == job.EventProgress {
			row.Count += out[n-1].Count
			out[n-1] = row
			continue
		}
		out = append(out, row)
	}
	return out
}

// summary is an event's data in a line.
func summary(e job.Event) string {
	switch e.Type {
	case job.EventQueued:
		return "queued (the message below)"
	case job.EventProgress:
		var d job.ProgressData
		_ = json.Unmarshal(e.Data, &d)
		return fmt.Sprintf("%s of %s (%s)", humanBytes(d.BytesDone), humanBytes(d.BytesTotal), percent(d.BytesDone, d.BytesTotal))
	case job.EventStarted:
		var d job.StartedData
		_ = json.Unmarshal(e.Data, &d)
		s := fmt.Sprintf("attempt %d on %s", d.Attempt, d.Worker)
		if d.BytesResumed > 0 {
			s += ", resumed at " + humanBytes(d.BytesResumed)
		}
		return s
	case job.EventCompleted:
		var d job.CompletedData
		_ = json.Unmarshal(e.Data, &d)
		return fmt.Sprintf("FileId %s, %s", d.FileID, humanBytes(d.Bytes))
	case job.EventFailed:
		var d job.FailedData
		_ = json.Unmarshal(e.Data, &d)
		return fmt.Sprintf("%s: %s", d.Error.Code, d.Error.Message)
	case job.EventVODFileUpload:
		var d job.FileUploadedData
		_ = json.Unmarshal(e.Data, &d)
		s := "FileId " + d.FileID
		if d.ProcedureTaskID != "" {
			s += ", task flow " + d.ProcedureTaskID
		}
		return s
	}
	return excerpt(string(e.Data), 160)
}

func (c *Console) jobAction(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	id, action := r.PathValue("id"), r.PathValue("action")
	if !slices.Contains([]string{"pause", "resume", "cancel", "retry"}, action) {
		c.fail(w, r, http.StatusNotFound, "No such action: "+action)
		return
	}
	if _, err := c.ingest(o).Control(r.Context(), id, action); err != nil {
		c.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/jobs/"+url.PathEscape(id)+"?done="+action, http.StatusSeeOther)
}

// deadLettersData is the dead letters page's.
type deadLettersData struct {
	List  client.DeadLetterList
	First bool
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	list, err := c.ingest(o).DeadLetters(r.Context(), after, 50)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "deadletters", &page{Title: "Dead letters", Nav: "dead", Data: deadLettersData{List: list, First: after == 0}})
}

// deadLetterData is a dead letter's page's.
type deadLetterData struct {
	Entry   job.DeadLetterEntry
	Message string
}

// seqOf is the dead letter's number in the path; false once it has
// answered 400 for one that is not a positive integer.
func (c *Console) seqOf(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.fail(w, r, http.StatusBadRequest, "A dead letter's number is a positive integer.")
		return 0, false
	}
	return seq, true
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	seq, ok := c.seqOf(w, r)
	if !ok {
		return
	}
	e, err := c.ingest(o).DeadLetter(r.Context(), seq)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	d := deadLetterData{Entry: e}
	switch {
	case len(e.Message) > 0:
		d.Message = prettyJSON(e.Message)
	case len(e.RawMessage) > 0:
		d.Message = excerpt(string(e.RawMessage), 64<<10)
	}
	c.render(w, r, http.StatusOK, "deadletter", &page{Title: fmt.Sprintf("Dead letter %d", seq), Nav: "dead", Data: d})
}

func (c *Console) requeue(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	seq, ok := c.seqOf(w, r)
	if !ok {
		return
	}
	v, err := c.ingest(o).RequeueDeadLetter(r.Context(), seq)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/jobs/"+url.PathEscape(v.ID)+"?done=requeue", http.StatusSeeOther)
}

// webhooksData is the webhooks page's.
type webhooksData struct {
	Subs []client.Subscription
}

func (c *Console) webhooks(w http.ResponseWriter, r *http.Request) {
	n, err := c.notify(operatorFrom(r.Context()))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, err.Error())
		return
	}
	subs, err := n.Subscriptions(r.Context())
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "webhooks", &page{Title: "Webhooks", Nav: "webhooks", Data: webhooksData{Subs: subs}})
}

// webhookData is a subscription's page's.
type webhookData struct {
	Sub      client.Subscription
	Attempts []client.Attempt
}

func (c *Console) webhook(w http.ResponseWriter, r *http.Request) {
	n, err := c.notify(operatorFrom(r.Context()))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, err.Error())
		return
	}
	id := r.PathValue("id")
	sub, err := n.Subscription(r.Context(), id)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	attempts, err := n.Attempts(r.Context(), id, 50)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "webhook", &page{Title: "Webhook " + id, Nav: "webhooks", Data: webhookData{Sub: sub, Attempts: attempts}})
}

func (c *Console) webhookAction(w http.ResponseWriter, r *http.Request) {
	n, err := c.notify(operatorFrom(r.Context()))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, err.Error())
		return
	}
	id, action := r.PathValue("id"), r.PathValue("action")
	switch action {
	case "enable":
		_, err = n.EnableSubscription(r.Context(), id)
	case "disable":
		_, err = n.DisableSubscription(r.Context(), id)
	case "replay":
		seq, perr := strconv.ParseUint(r.PostFormValue("eventSeq"), 10, 64)
		if perr != nil || seq == 0 {
			c.fail(w, r, http.StatusBadRequest, "A replay names the event's sequence (eventSeq).")
			return
		}
		_, err = n.ReplayEvent(r.Context(), id, seq)
	default:
		c.fail(w, r, http.StatusNotFound, "No such action: "+action)
		return
	}
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/console/webhooks/"+url.PathEscape(id)+"?done="+action, http.StatusSeeOther)
}
