package chaos

import (
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// receiver is the webhook endpoint of the run: it verifies every delivery's
// signature and remembers, per job, the webhook ids of its job.completed and
// vod.file_uploaded deliveries (a redelivery repeats the id; a second event
// would not). It answers 503 to the first delivery of every tenth
// job.completed event (the first one included), so that notify redelivers
// those and the checks see whether a redelivery keeps the webhook id.
type receiver struct {
	mu        sync.Mutex
	secret    string
	ids       map[string]map[string]int // job id → webhook id → deliveries, refused ones included
	refused   map[string]string         // webhook id of a refused job.completed → its job id
	bodies    map[string][]string       // job id → body of each distinct job.completed
	uploaded  map[string]map[string]int // job id → webhook id → deliveries of vod.file_uploaded
	orphans   map[string]bool           // webhook ids of vod.file_uploaded events naming no job
	distinct  int                       // distinct job.completed webhook ids seen
	firstDone map[string]time.Time      // job id → first job.completed delivery (a refused one included)
	bad       int                       // deliveries that failed verification
	srv       *http.Server
	URL       string
	lastError string
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{ids: map[string]map[string]int{}, refused: map[string]string{}, bodies: map[string][]string{},
		uploaded: map[string]map[string]int{}, orphans: map[string]bool{}, firstDone: map[string]time.Time{}, URL: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id, err := webhook.Verify(r.secret, req.Header, body, time.Now(), 0)
	if err != nil {
		r.bad++
		r.lastError = err.Error()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	e, err := job.DecodeEvent(body)
	if err != nil {
		r.bad++
		r.lastError = err.Error()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case e.Type == job.EventCompleted:
		m := r.ids[e.JobID]
		if m == nil {
			m = map[string]int{}
			r.ids[e.JobID] = m
		}
		first := m[id] == 0
		if _, seen := r.firstDone[e.JobID]; !seen {
			r.firstDone[e.JobID] = time.Now()
		}
		if first {
			r.bodies[e.JobID] = append(r.bodies[e.JobID], string(body))
			r.distinct++
		}
		m[id]++
		if first && r.distinct%refuseEvery == 1 {
			r.refused[id] = e.JobID
			http.Error(w, "refused once on purpose: deliver it again", http.StatusServiceUnavailable)
			return
		}
	case e.Type == job.EventVODFileUpload && e.JobID == "":
		r.orphans[id] = true
	case e.Type == job.EventVODFileUpload:
		m := r.uploaded[e.JobID]
		if m == nil {
			m = map[string]int{}
			r.uploaded[e.JobID] = m
		}
		m[id]++
	}
	w.WriteHeader(http.StatusNoContent)
}

// refuseEvery: the receiver refuses the first delivery of one job.completed
// event in this many.
const refuseEvery = 10

// redeliveries reports the job.completed events whose first delivery the
// receiver refused: how many, and the jobs of those that never came again
// under the same webhook id.
func (r *receiver) redeliveries() (refused int, notAgain []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, jobID := range r.refused {
		if r.ids[jobID][id] < 2 {
			notAgain = append(notAgain, jobID)
		}
	}
	sort.Strings(notAgain)
	return len(r.refused), notAgain
}

// completed is, per job, the number of distinct job.completed webhook ids
// and of deliveries.
func (r *receiver) completed(jobID string) (events, deliveries int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.ids[jobID] {
		events++
		deliveries += n
	}
	return events, deliveries
}

// fileUploaded is, per job, the number of distinct vod.file_uploaded webhook
// ids naming it; orphaned the number that named no job.
func (r *receiver) fileUploaded(jobID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.uploaded[jobID])
}

func (r *receiver) orphaned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.orphans)
}

// events are the bodies of the distinct job.completed events of a job.
func (r *receiver) events(jobID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies[jobID]...)
}

// doneAt is when the first job.completed of each job in ids arrived
// (absent: none yet).
func (r *receiver) doneAt(ids []string) map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		if t, ok := r.firstDone[id]; ok {
			out[id] = t
		}
	}
	return out
}

// doneCount is the number of jobs with a job.completed.
func (r *receiver) doneCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.firstDone)
}

func (r *receiver) close() { _ = r.srv.Close() }
