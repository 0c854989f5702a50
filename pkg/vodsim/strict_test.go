package vodsim_test

// Behaviour the real service has (or that vodsim's protocol document
// promises), found missing by a strictness review of vodsim against
// Tencent's sources; each test failed before 0.10.

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// reencode returns sig written differently (a non-zero unused bit in its
// last base64 character before the padding) but decoding, with Go's
// lenient StdEncoding, to the same bytes; ok is false when sig has no
// padding and so no unused bits.
func reencode(sig string) (string, bool) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	trimmed := strings.TrimRight(sig, "=")
	if len(trimmed) == len(sig) || len(trimmed) == 0 {
		return "", false
	}
	i := strings.IndexByte(alphabet, trimmed[len(trimmed)-1])
	if i < 0 || i&1 != 0 {
		return "", false
	}
	return trimmed[:len(trimmed)-1] + string(alphabet[i|1]) + sig[len(trimmed):], true
}

// TestStrictOneTimeSignatureCannotBeReusedReencoded: vod-protocol.md §1
// says a oneTimeValid=1 signature "is accepted by exactly one
// ApplyUploadUGC". pkg/vod decodes a signature with the lenient
// base64.StdEncoding, so the same signature written with a different unused
// padding bit passes the HMAC check; vodsim counted uses by the string, and
// accepted it a second time. Uses are counted by the signed bytes now: the
// second apply is refused.
func TestStrictOneTimeSignatureCannotBeReusedReencoded(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	media := vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(1))}
	sign := v.Signer(vod.SignatureParams{OneTimeValid: true})
	var sig, twin string
	for range 64 {
		s, err := sign(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if alt, ok := reencode(s); ok {
			sig, twin = s, alt
			break
		}
	}
	if sig == "" {
		t.Fatal("no signature with padding bits in 64 tries")
	}
	a, errA := base64.StdEncoding.DecodeString(sig)
	b, errB := base64.StdEncoding.DecodeString(twin)
	if errA != nil || errB != nil || !bytes.Equal(a, b) || sig == twin {
		t.Fatalf("test setup: re-encoding does not decode to the same bytes (%v, %v)", errA, errB)
	}
	fixed := func(s string) vod.SignatureFunc { return func(context.Context) (string, error) { return s, nil } }
	if _, err := v.VODClient().Apply(ctx, fixed(sig), media); err != nil {
		t.Fatalf("first use of the one-time signature: %v", err)
	}
	if _, err := v.VODClient().Apply(ctx, fixed(twin), media); err == nil {
		t.Fatal("the same one-time signature, re-encoded, opened a second upload session")
	}
}

// TestStrictUnknownSubAppIsRefused: Tencent's VOD refuses a sub-application
// the account does not have (ApplyUpload and CommitUpload in
// tencentcloud-sdk-go vod/v20180717 list InvalidParameterValue.SubAppId
// among their errors), and a session is its sub-application's. vodsim took
// any vodSubAppId until 0.10; it takes those of Config.SubApps.
func TestStrictUnknownSubAppIsRefused(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	media := vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(3))}
	t.Run("apply", func(t *testing.T) {
		_, err := v.VODClient().Apply(ctx, v.Signer(vod.SignatureParams{VodSubAppID: 1500009999}), media)
		if err == nil {
			t.Fatal("apply with a signature for a sub-application that does not exist was accepted")
		}
	})
	t.Run("commit of a main-app session with another sub-app's signature", func(t *testing.T) {
		a := apply(t, v, vod.SignatureParams{}, media)
		if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("abc"), nil); err != nil {
			t.Fatal(err)
		}
		_, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{VodSubAppID: 1500009999}), a.VodSessionKey)
		if err == nil {
			t.Fatal("a session opened in the main app was committed with a signature for another sub-application")
		}
	})
}
