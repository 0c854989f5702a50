package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestListingsOfEveryPageWriteAPageAtATime: `vodpipe jobs --all` and
// `vodpipe dead-letters`, as a table or JSON, write each page's rows before
// they ask for the next, so that listing a million jobs holds a page, not
// every row (until 0.10 nothing reached stdout before the last page). A
// stand-in for ingest's API serves three pages and looks, when asked for
// the last, at what the command has written.
func TestListingsOfEveryPageWriteAPageAtATime(t *testing.T) {
	const pages, perPage = 3, 4
	var out atomic.Pointer[lockedBuffer] // the command's stdout of the moment
	var sawFirstPage atomic.Bool
	lastAsked := func(page int) {
		if page == pages-1 {
			sawFirstPage.Store(strings.Contains(out.Load().String(), "row-0-0"))
		}
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/jobs:counts":
			_ = json.NewEncoder(w).Encode(client.CountsResponse{All: pages * perPage, States: map[job.State]uint64{job.StateQueued: pages * perPage}})
		case "/v1/jobs":
			page, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Query().Get("cursor"), "c"))
			lastAsked(page)
			var resp client.ListResponse
			for i := range perPage {
				resp.Jobs = append(resp.Jobs, client.JobView{ID: fmt.Sprintf("row-%d-%d", page, i), State: job.StateQueued})
			}
			if page+1 < pages {
				resp.NextCursor = fmt.Sprintf("c%d", page+1)
			}
			_ = json.NewEncoder(w).Encode(resp)
		case "/v1/dead-letters":
			after, _ := strconv.Atoi(r.URL.Query().Get("after"))
			page := after / perPage
			lastAsked(page)
			var resp client.DeadLetterList
			for i := range perPage {
				resp.DeadLetters = append(resp.DeadLetters, job.DeadLetterEntry{Seq: uint64(after + i + 1), DeadLetter: job.DeadLetter{
					Time: time.Now(), JobID: fmt.Sprintf("row-%d-%d", page, i), Code: "bad_source", Reason: "r"}})
			}
			if page+1 < pages {
				resp.Next = uint64(after + perPage)
			}
			_ = json.NewEncoder(w).Encode(resp)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(api.Close)
	for _, args := range [][]string{
		{"jobs", "--all"}, {"jobs", "--all", "-o", "json"}, {"dead-letters"}, {"dead-letters", "-o", "json"},
	} {
		stdout := &lockedBuffer{}
		out.Store(stdout)
		sawFirstPage.Store(false)
		var errOut lockedBuffer
		argv := append(args, "--api", api.URL, "--api-key", "k", "--limit", strconv.Itoa(perPage))
		if code := run(t.Context(), argv, stdout, &errOut); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut.String())
		}
		if !sawFirstPage.Load() {
			t.Errorf("%v: the first page's rows were not written when the last page was asked for", args)
		}
		for p := range pages {
			if !strings.Contains(stdout.String(), fmt.Sprintf("row-%d-%d", p, perPage-1)) {
				t.Errorf("%v: page %d missing:\n%s", args, p, stdout.String())
			}
		}
		if args[len(args)-1] == "json" {
			var v map[string]any
			if err := json.Unmarshal([]byte(stdout.String()), &v); err != nil {
				t.Errorf("%v: not one JSON object: %v\n%s", args, err, stdout.String())
			}
		}
	}
}
