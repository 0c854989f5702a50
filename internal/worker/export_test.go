package worker

import "github.com/vodpipe/vodpipe/pkg/job"

// SetControlView sets this worker's view of a job's control, as its watch
// of the control bucket would: a test makes the view lag behind the bucket.
func (w *Worker) SetControlView(jobID string, c job.Control) { w.setControl(jobID, c) }
