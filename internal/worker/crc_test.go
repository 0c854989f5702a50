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
// worker's check of the answer (summed, the SDK's own check done with the
// carry-less CRC) refuses it and the worker re-sends the part, whose new copy
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
	for i := 0; corrupted(t, e.sim.URL, vodsim.OpUploadPart) == 0; i++ {
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
	corrupted := corrupted(t, e.sim.URL, vodsim.OpUploadPart)
	t.Logf("%d bytes of sources, %d parts corrupted, %d bytes received", total, corrupted, e.sim.BytesReceived())
	if got, want := e.sim.BytesReceived(), total+corrupted*partSize; got < want {
		t.Fatalf("vodsim received %d bytes; want at least %d (%d of sources, %d corrupted parts re-sent)", got, want, total, corrupted)
	}
	if n := len(e.sim.Uploads()); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
}

// A small file goes up in one PutObject, and its cover in another: a body
// stored corrupted is refused by the same check and sent again.
func TestCorruptedPutsAreResent(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) {
		c.Faults = vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpPutObject, CorruptRate: 0.4}}}
	})
	e.startWorker("w1")
	// Two puts a job (video, cover) at 0.4: untouched 36% of the time.
	for i := 0; corrupted(t, e.sim.URL, vodsim.OpPutObject) == 0; i++ {
		if i == 8 {
			t.Fatalf("%d jobs of two puts and not one put corrupted at rate 0.4", i)
		}
		id := fmt.Sprintf("put-crc-%d", i)
		src, data := e.source(id+".mp4", 200<<10)
		cover, coverData := e.source(id+".jpg", 3<<10)
		e.submit(&job.Job{ID: id, Source: src, Cover: cover})
		s := e.waitState(id, job.StateCompleted, 60*time.Second)
		e.storedEquals(s, data)
		e.coverEquals(s, coverData)
	}
}

// corrupted reads vodsim's count of op requests it corrupted.
func corrupted(t *testing.T, simURL, op string) int64 {
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
	series := `vodsim_injected_faults_total{kind="corrupt",op="` + op + `"} `
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
