package notify_test

import (
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestProcedureChangeBeforeTheFileIdRecordNamesItsJob: a
// ProcedureStateChanged is correlated by FileId like a NewFileUpload, and
// waits for the worker's record as one does (there is no media URL to fall
// back on). Until 0.10 it did not wait: one that reached notify a moment
// before the worker recorded the FileId was published without jobId, and
// its dedupe marker kept VOD's repeats that way.
func TestProcedureChangeBeforeTheFileIdRecordNamesItsJob(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.CorrelationWait = 1500 * time.Millisecond })
	in := e.start()
	ctx := t.Context()
	time.AfterFunc(150*time.Millisecond, func() { _ = e.q.Files.Record(ctx, "proc-late", "job-proc-late") })
	body := `{"EventType":"ProcedureStateChanged","ProcedureStateChangeEvent":{"TaskId":"t-late","Status":"PROCESSING","FileId":"proc-late"}}`
	code, res, _ := postCallback(t, in, "?token="+testCallbackToken, []byte(body))
	if code != 200 || res.Type != job.EventVODProcedure {
		t.Fatalf("%d %+v", code, res)
	}
	if res.JobID != "job-proc-late" {
		t.Fatalf("vod.procedure_changed published with jobId %q; the FileId was recorded 150 ms after the callback arrived (a NewFileUpload waits for it)", res.JobID)
	}
}
