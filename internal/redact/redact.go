// Package redact hides the secret parts of URLs before they are logged or
// shown to someone who may not see them: the user:password of userinfo and
// the query, where signed URLs and callbacks carry their tokens.
package redact

import (
	"encoding/json"
	"errors"
	"net/url"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Mark replaces what was redacted.
const Mark = "REDACTED"

// URL returns raw with its userinfo and query replaced by Mark, and its
// fragment dropped: https://REDACTED@host/path?REDACTED. A URL without
// either comes back as it was; one that does not parse comes back as Mark.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Mark
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery {
		return raw
	}
	if u.User != nil {
		u.User = url.User(Mark)
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = Mark, false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Err drops the *url.Error wrapper of net/http and url.Parse errors, whose
// text repeats the whole URL, query (a signed URL's or a webhook's token)
// included; what went wrong stays.
func Err(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// QueuedJob returns the data of a job.queued event, the job message, with
// its source and cover redacted as URL does (a signed URL's query is its
// token); data that is not a job comes back as {}.
func QueuedJob(data json.RawMessage) json.RawMessage {
	var j job.Job
	if json.Unmarshal(data, &j) != nil {
		return json.RawMessage(`{}`)
	}
	j.Source, j.Cover = URL(j.Source), URL(j.Cover)
	b, err := json.Marshal(&j)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}
