package upload

import (
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// A signature that is not one-time is valid for any number of uploads
// until it expires, and says nothing of the job it was asked for: only
// its policy. So a worker's jobs of the same policy share one (a
// library's bulk ingest, as a rule, is one policy), instead of a request
// to the signature service each. The policy compared is the one the
// signature says, field by field against the job's, so a job never
// uploads under another policy than its own. It grants the worker nothing
// it had not: it holds each signature it is given, and could use it for
// anything under that policy until it expires. A signature is handed to
// other jobs for shareFor after it was signed, so a narrowed signing
// policy (VODPIPE_SIGN_*) or a job the service would not sign any more
// reaches a worker's jobs within that, at the cost of a signature request
// per worker and policy each shareFor.

// sigPolicy is the policy of an upload signature: what a job chooses.
type sigPolicy struct {
	procedure, storageRegion, sourceContext, sessionContext string
	classID                                                 int64
	subAppID                                                uint64
	priority                                                int
}

// jobPolicy is the policy a job's signatures carry (signer.ForJob). A job
// without a priority leaves it out of its signature: priority 0 there.
func jobPolicy(j *job.Job) sigPolicy {
	return sigPolicy{procedure: j.Procedure, storageRegion: j.StorageRegion, sourceContext: j.SourceContext,
		sessionContext: j.SessionContext, classID: j.ClassID, subAppID: j.SubAppID, priority: j.Priority}
}

// signedPolicy is the policy a signature says; ok is false when it says
// more than a job chooses (a notify mode, parameters this package does
// not know) or carries the priority 0 explicitly: such a signature is not
// shared.
func signedPolicy(p vod.SignatureParams) (sigPolicy, bool) {
	if p.TaskNotifyMode != "" || len(p.Extra) > 0 || p.HasTaskPriority && p.TaskPriority == 0 {
		return sigPolicy{}, false
	}
	return sigPolicy{procedure: p.Procedure, storageRegion: p.StorageRegion, sourceContext: p.SourceContext,
		sessionContext: p.SessionContext, classID: p.ClassID, subAppID: p.VodSubAppID, priority: p.TaskPriority}, true
}

// sharedSig is a signature kept for its policy.
type sharedSig struct {
	sig     string
	at      time.Time // its currentTimeStamp
	expires time.Time
}

// maxSharedPolicies bounds the policies whose signature is kept: jobs of
// a policy each (a source context per file) then ask for their own.
const maxSharedPolicies = 1024

// shareFor is how long after its signing a signature is handed to other
// jobs of its policy.
const shareFor = 10 * time.Minute

// handedOut reports whether k is still handed out at now: signed less than
// shareFor ago and valid for margin more.
func (k sharedSig) handedOut(now time.Time, margin time.Duration) bool {
	return now.Sub(k.at) < shareFor && k.expires.Sub(now) > margin
}

// sigShare is the signatures kept by policy, for the Uploader's runs. A
// nil sigShare keeps none.
type sigShare struct {
	mu sync.Mutex
	m  map[sigPolicy]sharedSig
}

func newSigShare() *sigShare { return &sigShare{m: map[sigPolicy]sharedSig{}} }

// get returns the signature kept for p if it is still handed out, valid
// for margin more.
func (s *sigShare) get(p sigPolicy, now time.Time, margin time.Duration) (sharedSig, bool) {
	if s == nil {
		return sharedSig{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.m[p]
	if !ok || !k.handedOut(now, margin) {
		return sharedSig{}, false
	}
	return k, true
}

// put keeps a signature that is not one-time for the policy it says. When
// maxSharedPolicies are kept, those no longer handed out go; if none is,
// it is not kept.
func (s *sigShare) put(sig string, p vod.SignatureParams, now time.Time) {
	pol, ok := signedPolicy(p)
	if s == nil || !ok || p.OneTimeValid {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, kept := s.m[pol]; !kept && len(s.m) >= maxSharedPolicies {
		for k, v := range s.m {
			if !v.handedOut(now, sigReuseMargin) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= maxSharedPolicies {
			return
		}
	}
	s.m[pol] = sharedSig{sig: sig, at: time.Unix(p.CurrentTimeStamp, 0), expires: time.Unix(p.ExpireTime, 0)}
}

// drop forgets sig (VOD refused it as used or expired) wherever it is kept.
func (s *sigShare) drop(sig string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if v.sig == sig {
			delete(s.m, k)
		}
	}
}
