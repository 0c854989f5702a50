package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The console's target, from the console issue: pages in under 200 ms with
// 1,000,000 jobs stored.
const (
	consolePageP99  = 200 * time.Millisecond
	consoleRequests = 50 // per page and level
)

// consolePages times the operations console's pages against an ingest with
// level jobs stored: the overview, the jobs table (all and running), and a
// random job's page (its timeline read from the events stream), signed in
// with key. It returns P7's console row.
func consolePages(ctx context.Context, base, key string, level int, rng *rand.Rand) (Result, error) {
	jar := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := jar.PostForm(base+"/console/login", url.Values{"key": {key}})
	if err != nil {
		return Result{}, err
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "vodpipe_console" {
			cookie = c
		}
	}
	if cookie == nil {
		return Result{}, fmt.Errorf("console sign-in: %d, no session", resp.StatusCode)
	}
	pages := []struct{ name, path string }{
		{"overview", "/console"}, {"jobs", "/console/jobs"}, {"running", "/console/jobs?state=running"}, {"job", ""},
	}
	var parts []string
	samples := map[string]float64{"console_jobs": float64(level)} // not "jobs": the listing plot reads those rows
	worst := time.Duration(0)
	for _, p := range pages {
		var took []time.Duration
		for range consoleRequests {
			path := p.path
			if path == "" {
				path = fmt.Sprintf("/console/jobs/p7-%07d", rng.IntN(level))
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			if err != nil {
				return Result{}, err
			}
			req.AddCookie(cookie)
			start := time.Now()
			resp, err := jar.Do(req)
			if err != nil {
				return Result{}, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took = append(took, time.Since(start))
			if resp.StatusCode != http.StatusOK {
				return Result{}, fmt.Errorf("GET %s: %d", path, resp.StatusCode)
			}
		}
		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[len(took)*99/100]
		worst = max(worst, p99)
		parts = append(parts, fmt.Sprintf("%s p99 %s (p50 %s)", p.name, ms1(p99), ms1(p50)))
		samples[p.name+"_p99_ms"] = msOf(p99)
	}
	verdict := Met
	if worst > consolePageP99 {
		verdict = Missed
	}
	return Result{
		ID: fmt.Sprintf("P7 console %s", countWord(level)), What: fmt.Sprintf("console pages at %d jobs stored", level),
		Measured: strings.Join(parts, "; "), Ratio: math.NaN(), Target: fmt.Sprintf("every page's p99 ≤ %s", ms1(consolePageP99)),
		Verdict: verdict,
		Setup: fmt.Sprintf("%d requests per page, one at a time, signed in with a read key; a job page reads the job's timeline "+
			"from the events stream", consoleRequests),
		Samples: samples,
	}, nil
}
