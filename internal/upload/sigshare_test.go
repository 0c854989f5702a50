package upload

import (
	"fmt"
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
// most maxSharedPolicies, making room from expired ones only.
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
		s.put(fmt.Sprint("sig-", i), params(fmt.Sprint("p", i), now.Add(time.Duration(i+1)*time.Second)), now)
	}
	s.put("sig-late", params("late", now.Add(time.Hour)), now)
	if _, ok := s.get(sigPolicy{sourceContext: "late"}, now, 0); ok {
		t.Fatal("kept past the bound while none had expired")
	}
	later := now.Add(10 * time.Second) // the first 10 have expired
	s.put("sig-late", params("late", later.Add(time.Hour)), later)
	if _, ok := s.get(sigPolicy{sourceContext: "late"}, later, 0); !ok || len(s.m) != maxSharedPolicies-10+1 {
		t.Fatalf("after expiries: late kept %v, %d kept", ok, len(s.m))
	}
}
