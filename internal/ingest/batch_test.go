package ingest

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// A batch body of millions of tiny elements is refused once it holds more
// than the bound, not after all of them are split out: [0,0,0,...] in the
// body's 16 MiB made 8 million raw messages, hundreds of MiB a request.
func TestSplitBatchStopsPastTheBound(t *testing.T) {
	const n = 2_000_000
	array := append([]byte("["), bytes.Repeat([]byte("0,"), n)...)
	array = append(array[:len(array)-1], ']')
	ndjson := bytes.Repeat([]byte("0\n"), n)
	for _, c := range []struct {
		name, ctype string
		body        []byte
	}{{"array", "application/json", array}, {"ndjson", "application/x-ndjson", ndjson}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		raws, err := splitBatch(c.body, c.ctype, 1000)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errBatchTooLarge) || raws != nil {
			t.Fatalf("%s of %d elements: %d raws, %v; want errBatchTooLarge", c.name, n, len(raws), err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Errorf("%s of %d elements: %d bytes allocated to refuse it; want it refused at the 1,001st", c.name, n, alloc)
		}
	}
	// Within the bound, as before; trailing data after an array is refused.
	if raws, err := splitBatch([]byte(`[{"a":1}, {"b":2}]`), "application/json", 2); err != nil || len(raws) != 2 {
		t.Fatalf("two jobs: %d, %v", len(raws), err)
	}
	if _, err := splitBatch([]byte(`[{"a":1}] x`), "application/json", 2); err == nil || !strings.Contains(err.Error(), "not a JSON array") {
		t.Fatalf("trailing data: %v", err)
	}
}
