package signer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

const (
	testID  = "AKIDsignerTest"
	testKey = "signer-test-secret-key-never-logged"
)

// jobs is the signature service's view of the jobs: what a worker may sign for.
type jobs map[string]*job.Job

func (m jobs) SigningJob(_ context.Context, id string) (*job.Job, error) {
	if j, ok := m[id]; ok {
		return j, nil
	}
	return nil, fmt.Errorf("%w: %s", job.ErrNotActive, id)
}

func TestSignatureServiceOverNATS(t *testing.T) {
	n := testharness.StartNATS(t)
	var logs bytes.Buffer
	s, err := signer.New(testID, testKey, signer.Policy{
		Procedures: []string{"LongVideoPreset"}, StorageRegions: []string{"ap-guangzhou"}, MaxValidity: time.Hour, ForceOneTime: true})
	if err != nil {
		t.Fatal(err)
	}
	running := jobs{
		"j1":        {ID: "j1", Procedure: "LongVideoPreset", StorageRegion: "ap-guangzhou", SourceContext: "job=1"},
		"procedure": {ID: "procedure", Procedure: "Other"},
		"region":    {ID: "region", StorageRegion: "ap-beijing"},
		"class":     {ID: "class", ClassID: 7},
		"subApp":    {ID: "subApp", SubAppID: 1500009999},
		"long":      {ID: "long", SourceContext: strings.Repeat("x", 251)},
	}
	serving := n.Connect(t)
	svc, err := s.Serve(serving, running, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	c := signer.NewClient(n.Connect(t), 2*time.Second)
	ctx := t.Context()

	// The job's own policy is signed, whatever the request names.
	sig, err := c.Sign(ctx, signer.Request{JobID: "j1", Procedure: "Other", StorageRegion: "ap-beijing", SourceContext: "user=victim", ClassID: 77})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := vod.Verifier{Keys: vod.StaticKeys{testID: testKey}}.Verify(sig)
	if err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	p := parsed.Params
	if !p.OneTimeValid || p.Procedure != "LongVideoPreset" || p.StorageRegion != "ap-guangzhou" || p.ClassID != 0 ||
		p.SourceContext != "job=1" || p.Lifetime() != time.Hour {
		t.Fatalf("params = %+v", p)
	}
	refusals := []struct {
		req    signer.Request
		target error
		field  string
	}{
		{signer.Request{JobID: "procedure"}, signer.ErrPolicy, "procedure"},
		{signer.Request{JobID: "region"}, signer.ErrPolicy, "storageRegion"},
		{signer.Request{JobID: "class"}, signer.ErrPolicy, "classId"},
		{signer.Request{JobID: "subApp"}, signer.ErrPolicy, "subAppId"},
		{signer.Request{JobID: "j1", Validity: 2 * time.Hour}, signer.ErrPolicy, "validity"},
		{signer.Request{JobID: "long"}, signer.ErrInvalid, ""},
		{signer.Request{JobID: "unknown", Procedure: "LongVideoPreset"}, signer.ErrJobNotActive, "jobId"},
		{signer.Request{Procedure: "LongVideoPreset", SourceContext: "user=victim"}, signer.ErrInvalid, "jobId"},
	}
	for _, r := range refusals {
		_, err := c.Sign(ctx, r.req)
		var se *signer.Error
		if !errors.Is(err, r.target) || !errors.As(err, &se) || se.Field != r.field {
			t.Errorf("job %q: err = %v, want %v naming %q", r.req.JobID, err, r.target, r.field)
		}
	}
	if strings.Contains(logs.String(), testKey) || strings.Contains(logs.String(), sig) {
		t.Fatal("logs carry the key or a signature")
	}
	if !strings.Contains(logs.String(), "signature refused") {
		t.Fatalf("refusals not logged: %s", logs.String())
	}
	if info := svc.Info(); info.Name != signer.ServiceName {
		t.Fatalf("service info = %+v", info)
	}
	// The requests are spread over the service's endpoints; together they
	// count every one (an endpoint counts a request once its handler has
	// returned, which can be just after the client has its answer).
	// A requester picks the reply subject: one that is not an inbox (the
	// jobs subject, a KV key) gets no answer, so the service publishes
	// nothing there with its rights.
	watcher := n.Connect(t)
	landed, err := watcher.SubscribeSync("vodpipe.jobs.submit")
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	requester := n.Connect(t)
	if err := requester.PublishRequest(signer.Subject, "vodpipe.jobs.submit", []byte(`{"jobId":"j1"}`)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "the service's stats to count 10 requests", func() bool {
		var requests int
		for _, e := range svc.Stats().Endpoints {
			requests += e.NumRequests
		}
		return requests >= 10
	})
	if err := serving.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if pending, _, err := landed.Pending(); err != nil || pending != 0 {
		t.Fatalf("the service answered onto the jobs subject: %d messages (%v)", pending, err)
	}
	if !strings.Contains(logs.String(), "reply subject is not an inbox") {
		t.Fatalf("the refusal is not logged: %s", logs.String())
	}
	for _, e := range svc.Stats().Endpoints {
		if e.Subject != signer.Subject {
			t.Errorf("endpoint %s on %q, want %q", e.Name, e.Subject, signer.Subject)
		}
	}
}

func TestClientWithoutServiceIsUnavailable(t *testing.T) {
	n := testharness.StartNATS(t)
	_, err := signer.NewClient(n.Connect(t), time.Second).Sign(t.Context(), signer.Request{})
	if !errors.Is(err, signer.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestPolicyIsClosedByDefault(t *testing.T) {
	anyOf := signer.Allow{signer.Any}
	tests := []struct {
		name   string
		policy signer.Policy
		req    signer.Request
		field  string // refused, or "" for signed
	}{
		{"defaults only", signer.Policy{}, signer.Request{}, ""},
		{"empty procedures allow none", signer.Policy{}, signer.Request{Procedure: "LongVideoPreset"}, "procedure"},
		{"empty regions allow only the default", signer.Policy{}, signer.Request{StorageRegion: "ap-shanghai"}, "storageRegion"},
		{"empty classes allow only 0", signer.Policy{}, signer.Request{ClassID: 77}, "classId"},
		{"empty sub-apps allow only the main app", signer.Policy{}, signer.Request{SubAppID: 1500009999}, "subAppId"},
		{"listed procedure", signer.Policy{Procedures: signer.Allow{"A", "B"}}, signer.Request{Procedure: "B"}, ""},
		{"unlisted procedure", signer.Policy{Procedures: signer.Allow{"A"}}, signer.Request{Procedure: "B"}, "procedure"},
		{"listed sub-app", signer.Policy{SubAppIDs: signer.Allow{"1500000001"}}, signer.Request{SubAppID: 1500000001}, ""},
		{"unlisted sub-app", signer.Policy{SubAppIDs: signer.Allow{"1500000001"}}, signer.Request{SubAppID: 1500009999}, "subAppId"},
		{"listed class", signer.Policy{ClassIDs: signer.Allow{"3"}}, signer.Request{ClassID: 3}, ""},
		{"any is explicit", signer.Policy{Procedures: anyOf, StorageRegions: anyOf, ClassIDs: anyOf, SubAppIDs: anyOf},
			signer.Request{Procedure: "X", StorageRegion: "ap-shanghai", ClassID: 77, SubAppID: 1500009999}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := signer.New(testID, testKey, tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Sign(tt.req)
			var se *signer.Error
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.field != "" && (!errors.Is(err, signer.ErrPolicy) || !errors.As(err, &se) || se.Field != tt.field):
				t.Fatalf("err = %v, want a policy refusal naming %s", err, tt.field)
			}
		})
	}
}

func TestPolicyRefusesBadIDs(t *testing.T) {
	for _, p := range []signer.Policy{{ClassIDs: signer.Allow{"three"}}, {SubAppIDs: signer.Allow{"-1"}}, {Procedures: signer.Allow{" "}}} {
		if _, err := signer.New(testID, testKey, p); err == nil {
			t.Errorf("policy %+v accepted", p)
		}
	}
}
