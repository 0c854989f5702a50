package worker_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// A part whose bytes reach COS corrupted is answered with another CRC-64; the
// SDK refuses the answer and the worker re-sends the part, whose new copy
// replaces the corrupted one, so the committed object is the source.
func TestCorruptedPartsAreResent(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) {
		c.Faults = vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpUploadPart, CorruptRate: 0.2}}}
	})
	e.startWorker("w1")
	const size, partSize = 12 << 20, 1 << 20
	// A 12-part job goes untouched by a 0.2 rate 7% of the time: run jobs
	// until one has been corrupted, each of them checked.
	var total int64
	for i := 0; corruptedParts(t, e.sim.URL) == 0; i++ {
		if i == 4 {
			t.Fatalf("%d jobs of %d parts and not one part corrupted at rate 0.2", i, size/partSize)
		}
		id := fmt.Sprintf("crc-%d", i)
		src, data := e.source(id+".mp4", size)
		e.submit(&job.Job{ID: id, Source: src})
		s := e.waitState(id, job.StateCompleted, 60*time.Second)
		e.storedEquals(s, data)
		total += size
	}
	// Every UploadPart body is counted once it is read: the sources, plus one
	// part per corruption the SDK caught and the worker sent again.
	corrupted := corruptedParts(t, e.sim.URL)
	t.Logf("%d bytes of sources, %d parts corrupted, %d bytes received", total, corrupted, e.sim.BytesReceived())
	if got, want := e.sim.BytesReceived(), total+corrupted*partSize; got < want {
		t.Fatalf("vodsim received %d bytes; want at least %d (%d of sources, %d corrupted parts re-sent)", got, want, total, corrupted)
	}
	if n := len(e.sim.Uploads()); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
}

// corruptedParts reads vodsim's count of UploadPart requests it corrupted.
func corruptedParts(t *testing.T, simURL string) int64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, simURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	const series = `vodsim_injected_faults_total{kind="corrupt",op="UploadPart"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return int64(n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}
