package natsperm

import (
	"strings"
	"time"
)

// Why accounts. Within one NATS account, user permissions do not bound
// what the server itself publishes on a user's behalf: JetStream answers a
// request on its reply subject (a publish acknowledgement, a direct get's
// message, a pull consumer's messages) and a push consumer delivers on its
// deliver subject, and the server checks neither against the requester's
// rights. A user that may only publish jobs could name a status key as the
// reply subject of a job and have JetStream's acknowledgement overwrite
// that job's status; a worker could have a stored value of its own
// re-published on the jobs subject. So each role but ingest connects in an
// account of its own (see Accounts): what it sends reaches the shared
// account only through the imports its permissions name, and whatever the
// server answers comes back into its own account, on a reply subject the
// server maps, whatever subject the requester named.

// SharedAccount is the account that holds vodpipe's JetStream layout. Ingest
// connects in it; the other roles reach it through imports.
const SharedAccount = "VODPIPE"

// Account is the NATS account role's user belongs to.
func (r Role) Account() string {
	if r == Ingest {
		return SharedAccount
	}
	return SharedAccount + "_" + strings.ToUpper(string(r))
}

// Import is one subject a role's account takes from the shared account:
// a service (the role publishes or requests there; JetStream or ingest
// answers) or a stream (the role subscribes to what is published there).
type Import struct {
	Subject string
	Service bool
	// Responses is how long a service's answers may keep coming, when
	// they are more than one message (a batch of a direct get, the
	// messages of a pull request); zero for one answer.
	Responses time.Duration
}

// MultiResponseWindow bounds how long a request that is answered by many
// messages stays mapped: longer than any pull request or batched read of
// vodpipe's services (the worker's fetch waits a second; a batched read
// a few), short enough that the server's table of mapped replies stays
// small.
const MultiResponseWindow = 30 * time.Second

const accountInfo = "$JS.API.INFO"

// Imports lists what role's account imports from the shared account: one
// service per subject it may publish to, one stream per subject it may
// subscribe to, its own inbox aside (its replies are mapped back into its
// account by the server). Ingest imports nothing: it is in the shared
// account.
func Imports(r Role) ([]Import, error) {
	if r == Ingest {
		return nil, nil
	}
	p, err := build(r)
	if err != nil {
		return nil, err
	}
	own := r.Inbox() + ".>"
	// An account without JetStream of its own gets the server's "JetStream
	// not enabled" responder on every JetStream API subject, which would
	// race the shared account's answers, unless it imports the account
	// information request: then the server leaves JetStream's API to its
	// imports. (The role's user need not be allowed to send it.)
	out := []Import{{Subject: accountInfo, Service: true}}
	for _, s := range p.Publish {
		if s == accountInfo {
			continue
		}
		im := Import{Subject: s, Service: true}
		if multiResponse(s) {
			im.Responses = MultiResponseWindow
		}
		out = append(out, im)
	}
	for _, s := range p.Subscribe {
		// A push consumer (a key-value watch) delivers on the role's inbox
		// in the shared account, where it lives; other answers are mapped.
		if s == own && !p.push {
			continue
		}
		out = append(out, Import{Subject: s})
	}
	return out, nil
}

// multiResponse tells the subjects whose answers are many messages: a pull
// request, a batched direct get (on the stream's own API subject; a get by
// subject answers once).
func multiResponse(s string) bool {
	const next, direct = "$JS.API.CONSUMER.MSG.NEXT.", "$JS.API.DIRECT.GET."
	return strings.HasPrefix(s, next) || strings.HasPrefix(s, direct) && !strings.Contains(strings.TrimPrefix(s, direct), ".")
}
