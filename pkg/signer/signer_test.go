package signer_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/signer"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

const (
	testID  = "AKIDsignerTest"
	testKey = "signer-test-secret-key-never-logged"
)

func TestSignatureServiceOverNATS(t *testing.T) {
	n := testharness.StartNATS(t)
	var logs bytes.Buffer
	s, err := signer.New(testID, testKey, signer.Policy{
		Procedures: []string{"LongVideoPreset"}, StorageRegions: []string{"ap-guangzhou"}, MaxValidity: time.Hour, ForceOneTime: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := s.Serve(n.Connect(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	c := signer.NewClient(n.Connect(t), 2*time.Second)
	ctx := t.Context()

	sig, err := c.Sign(ctx, signer.Request{Procedure: "LongVideoPreset", StorageRegion: "ap-guangzhou", SourceContext: "job=1", JobID: "j1"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := vod.Verifier{Keys: vod.StaticKeys{testID: testKey}}.Verify(sig)
	if err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	p := parsed.Params
	if !p.OneTimeValid || p.Procedure != "LongVideoPreset" || p.SourceContext != "job=1" || p.Lifetime() != time.Hour {
		t.Fatalf("params = %+v", p)
	}
	refusals := []struct {
		name string
		req  signer.Request
	}{
		{"procedure", signer.Request{Procedure: "Other"}},
		{"storageRegion", signer.Request{StorageRegion: "ap-beijing"}},
		{"validity", signer.Request{Validity: 2 * time.Hour}},
	}
	for _, r := range refusals {
		_, err := c.Sign(ctx, r.req)
		if !errors.Is(err, signer.ErrPolicy) || !strings.Contains(err.Error(), r.name) {
			t.Errorf("%s: err = %v", r.name, err)
		}
	}
	if _, err := c.Sign(ctx, signer.Request{SourceContext: strings.Repeat("x", 251)}); !errors.Is(err, signer.ErrInvalid) {
		t.Errorf("over-long sourceContext: %v", err)
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
	testharness.WaitFor(t, 5*time.Second, "the service's stats to count 5 requests", func() bool {
		var requests int
		for _, e := range svc.Stats().Endpoints {
			requests += e.NumRequests
		}
		return requests >= 5
	})
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
