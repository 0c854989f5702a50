// Package redact hides the secret parts of URLs before they are logged or
// shown to someone who may not see them: the user:password of userinfo and
// the query, where signed URLs and callbacks carry their tokens.
package redact

import "net/url"

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
