package upload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// The policy a job's signature says, read back from a signature the
// signature service's own code made for it, is the job's policy: a job
// finds exactly the signatures of its policy, and jobs that differ in any
// field of it find none of each other's.
func TestSignedPolicyIsTheJobsPolicy(t *testing.T) {
	s, err := signer.New("AKIDexample", "secret", signer.Policy{MaxValidity: time.Hour,
		Procedures: signer.Allow{signer.Any}, StorageRegions: signer.Allow{signer.Any}, ClassIDs: signer.Allow{signer.Any},
		SubAppIDs: signer.Allow{signer.Any}})
	if err != nil {
		t.Fatal(err)
	}
	base := job.Job{V: job.Version, ID: "j", Source: "file:///x.mp4"}
	variants := []func(*job.Job){
		func(*job.Job) {},
		func(j *job.Job) { j.Procedure = "A" },
		func(j *job.Job) { j.Procedure = "B" },
		func(j *job.Job) { j.StorageRegion = "ap-chengdu" },
		func(j *job.Job) { j.ClassID = 2 },
		func(j *job.Job) { j.SubAppID = 1400000002 },
		func(j *job.Job) { j.SourceContext = "ctx-1" },
		func(j *job.Job) { j.SessionContext = "sess-1" },
		func(j *job.Job) { j.Priority = 3 },
		func(j *job.Job) { j.Priority = -2 },
		func(j *job.Job) {
			j.Procedure, j.StorageRegion, j.ClassID, j.SubAppID = "A", "ap-guangzhou", 1, 1400000001
			j.SourceContext, j.SessionContext, j.Priority = "c", "s", 10
		},
	}
	seen := map[sigPolicy]int{}
	for i, v := range variants {
		j := base
		v(&j)
		resp, err := s.Sign(signer.ForJob(&j, 0))
		if err != nil {
			t.Fatalf("variant %d: %v", i, err)
		}
		sig, err := vod.ParseSignature(resp.Signature)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := signedPolicy(sig.Params)
		if !ok || got != jobPolicy(&j) {
			t.Fatalf("variant %d: signature says %+v (shareable %v), the job %+v", i, got, ok, jobPolicy(&j))
		}
		if k, dup := seen[got]; dup {
			t.Fatalf("variants %d and %d share a policy key", k, i)
		}
		seen[got] = i
	}
	// What a job cannot ask for is never shared.
	for _, p := range []vod.SignatureParams{{TaskNotifyMode: "Finish"}, {HasTaskPriority: true},
		{Extra: map[string][]string{"x": {"1"}}}} {
		if _, ok := signedPolicy(p); ok {
			t.Errorf("%+v shared", p)
		}
	}
}

// The share keeps one signature per policy while it is valid for the
// margin, never a one-time one, forgets one VOD refused, and holds at
// most maxSharedPolicies, making room from those it no longer hands out.
func TestSigShare(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	params := func(ctx string, expires time.Time) vod.SignatureParams {
		return vod.SignatureParams{SourceContext: ctx, CurrentTimeStamp: now.Unix(), ExpireTime: expires.Unix()}
	}
	s := newSigShare()
	s.put("sig-a", params("a", now.Add(time.Hour)), now)
	if k, ok := s.get(sigPolicy{sourceContext: "a"}, now, time.Minute); !ok || k.sig != "sig-a" || !k.at.Equal(now) {
		t.Fatalf("get a = %+v, %v", k, ok)
	}
	if _, ok := s.get(sigPolicy{sourceContext: "b"}, now, time.Minute); ok {
		t.Fatal("another policy found a's signature")
	}
	if _, ok := s.get(sigPolicy{sourceContext: "a"}, now.Add(59*time.Minute+1), time.Minute); ok {
		t.Fatal("a signature within the margin of its expiry was handed out")
	}
	if _, ok := s.get(sigPolicy{sourceContext: "a"}, now.Add(shareFor-time.Second), time.Minute); !ok {
		t.Fatal("a signature signed less than shareFor ago was not handed out")
	}
	if _, ok := s.get(sigPolicy{sourceContext: "a"}, now.Add(shareFor), time.Minute); ok {
		t.Fatal("a signature signed shareFor ago was handed out (a narrowed signing policy would wait for its expiry)")
	}
	one := params("o", now.Add(time.Hour))
	one.OneTimeValid = true
	s.put("sig-o", one, now)
	if _, ok := s.get(sigPolicy{sourceContext: "o"}, now, time.Minute); ok {
		t.Fatal("a one-time signature was shared")
	}
	s.drop("sig-a")
	if _, ok := s.get(sigPolicy{sourceContext: "a"}, now, time.Minute); ok {
		t.Fatal("a dropped signature is still shared")
	}

	for i := range maxSharedPolicies {
		s.put(fmt.Sprint("sig-", i), params(fmt.Sprint("p", i), now.Add(2*time.Minute+time.Duration(i+1)*time.Second)), now)
	}
	s.put("sig-late", params("late", now.Add(time.Hour)), now)
	if _, ok := s.get(sigPolicy{sourceContext: "late"}, now, 0); ok {
		t.Fatal("kept past the bound while every one kept was still handed out")
	}
	// The first 10 are within sigReuseMargin of their expiry: no longer handed out.
	later := now.Add(2*time.Minute + 10*time.Second - sigReuseMargin)
	s.put("sig-late", params("late", later.Add(time.Hour)), later)
	if _, ok := s.get(sigPolicy{sourceContext: "late"}, later, 0); !ok || len(s.m) != maxSharedPolicies-10+1 {
		t.Fatalf("after expiries: late kept %v, %d kept", ok, len(s.m))
	}
}

// countSigner mints signatures with the signature service's code and
// counts them.
type countSigner struct {
	s      *signer.Signer
	calls  int
	minted []string
}

func (c *countSigner) SignJob(_ context.Context, j *job.Job) (string, error) {
	c.calls++
	r, err := c.s.Sign(signer.ForJob(j, 0))
	c.minted = append(c.minted, r.Signature)
	return r.Signature, err
}

// rotatedKey is a share holding a signature of a key rotated away since,
// for job j's policy: VOD refuses it. current mints with the key of now.
type rotatedKey struct {
	j       *job.Job
	old     string // the stale signature, shared
	stale   *signer.Signer
	current *signer.Signer
	sigs    *sigShare
}

func newRotatedKey(t *testing.T) rotatedKey {
	t.Helper()
	policy := signer.Policy{MaxValidity: time.Hour}
	stale, err := signer.New("AKIDexample", "rotated-away", policy)
	if err != nil {
		t.Fatal(err)
	}
	current, err := signer.New("AKIDexample", "current", policy)
	if err != nil {
		t.Fatal(err)
	}
	j := &job.Job{V: job.Version, ID: "j1", Source: "file:///x.mp4"}
	old, _ := stale.Sign(signer.ForJob(j, 0))
	parsed, err := vod.ParseSignature(old.Signature)
	if err != nil {
		t.Fatal(err)
	}
	sigs := newSigShare()
	sigs.put(old.Signature, parsed.Params, time.Now())
	return rotatedKey{j: j, old: old.Signature, stale: stale, current: current, sigs: sigs}
}

// A signature a run took from the share and VOD refused for any reason
// (here: its key, rotated since) is dropped for every job, and the run
// goes on with one minted for it; a run that had one refused takes no
// other from the share. A refusal of a signature minted for the run
// itself gets no second try unless it is "used" or "expired", as before.
func TestRefusedSharedSignatureIsRenewedAndDropped(t *testing.T) {
	rk := newRotatedKey(t)
	j, sigs, stale := rk.j, rk.sigs, rk.stale
	minted := &countSigner{s: rk.current}
	u := &Uploader{signer: minted, sigs: sigs, obs: nopObserver{}}
	// VOD as it would answer: the rotated key's signatures are invalid.
	bad := &countSigner{s: stale}
	call := func(r *run) func(vod.SignatureFunc) error {
		return func(sign vod.SignatureFunc) error {
			sig, err := sign(t.Context())
			if err != nil {
				return err
			}
			if sig == rk.old || slices.Contains(bad.minted, sig) {
				return fmt.Errorf("vod: code 10002: %w", vod.ErrSignatureInvalid)
			}
			return nil
		}
	}
	r := &run{u: u, j: j}
	if err := r.withRenewal(t.Context(), call(r)); err != nil {
		t.Fatalf("a refused shared signature: %v, want the call made again with a fresh one", err)
	}
	if minted.calls != 1 {
		t.Fatalf("%d signatures minted, want 1 (the renewal)", minted.calls)
	}
	if k, ok := sigs.get(jobPolicy(j), time.Now(), sigReuseMargin); !ok || k.sig == rk.old {
		t.Fatalf("the share holds %+v (%v): want the refused one gone, the fresh one kept", k, ok)
	}

	// A fresh signature refused as invalid: no second try, and the share
	// loses it too.
	u2 := &Uploader{signer: bad, sigs: newSigShare(), obs: nopObserver{}}
	r2 := &run{u: u2, j: j}
	if err := r2.withRenewal(t.Context(), call(r2)); !errors.Is(err, vod.ErrSignatureInvalid) || bad.calls != 1 {
		t.Fatalf("a fresh signature refused: %v after %d minted, want ErrSignatureInvalid after 1", err, bad.calls)
	}
	if _, ok := u2.sigs.get(jobPolicy(j), time.Now(), sigReuseMargin); ok {
		t.Fatal("a refused signature is still shared")
	}
	if !r2.noShare {
		t.Fatal("a run that had a signature refused may still take one from the share")
	}
}

// The run an abort makes knows its job by id alone: it never takes a
// signature from the share (matched against a job's policy, which it does
// not have), it has one minted for the recorded job.
func TestAbortRunMintsItsSignature(t *testing.T) {
	s, err := signer.New("AKIDexample", "secret", signer.Policy{MaxValidity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := s.Sign(signer.Request{})
	parsed, _ := vod.ParseSignature(other.Signature)
	minted := &countSigner{s: s}
	u := &Uploader{signer: minted, sigs: newSigShare(), obs: nopObserver{}}
	u.sigs.put(other.Signature, parsed.Params, time.Now()) // the zero policy's, as the abort's job looks
	sig, _, err := u.abortRun(Lease{JobID: "j1"}, &State{}).sign(t.Context())
	if err != nil || sig == other.Signature || minted.calls != 1 {
		t.Fatalf("abort's signature: shared %v, %d minted, %v; want one minted", sig == other.Signature, minted.calls, err)
	}
}

// Two calls of one run refused for the same shared signature, the second
// answered after the first renewed it: the second forgets the refused
// signature only, keeps the one the first had minted (in the run and in
// the share) and goes on with it, minting nothing more.
func TestSecondRefusalKeepsTheFirstRenewal(t *testing.T) {
	rk := newRotatedKey(t)
	j, sigs := rk.j, rk.sigs
	minted := &countSigner{s: rk.current}
	r := &run{u: &Uploader{signer: minted, sigs: sigs, obs: nopObserver{}}, j: j}
	refuse := func(sig string) error {
		if sig == rk.old {
			return fmt.Errorf("vod: code 10002: %w", vod.ErrSignatureInvalid)
		}
		return nil
	}
	once := func(sign vod.SignatureFunc) error {
		sig, err := sign(t.Context())
		if err != nil {
			return err
		}
		return refuse(sig)
	}
	first := true
	second := func(sign vod.SignatureFunc) error {
		sig, err := sign(t.Context())
		if err != nil {
			return err
		}
		if first { // the other call is refused and renews while this one waits for VOD
			first = false
			if err := r.withRenewal(t.Context(), once); err != nil {
				t.Fatalf("the first call: %v", err)
			}
		}
		return refuse(sig)
	}
	if err := r.withRenewal(t.Context(), second); err != nil {
		t.Fatalf("the second call: %v, want it made again with the first call's renewal", err)
	}
	if minted.calls != 1 {
		t.Fatalf("%d signatures minted, want 1 (the first call's renewal)", minted.calls)
	}
	k, ok := sigs.get(jobPolicy(j), time.Now(), sigReuseMargin)
	if !ok || k.sig != minted.minted[0] || r.sig != minted.minted[0] {
		t.Fatalf("the renewal is kept in the share %v and in the run %v, want both", ok && k.sig == minted.minted[0], r.sig == minted.minted[0])
	}
}
