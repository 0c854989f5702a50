package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSignThenDecodeRoundTrip(t *testing.T) {
	t.Setenv("VODPIPE_SECRET_ID", "AKIDroundtrip")
	t.Setenv("VODPIPE_SECRET_KEY", "roundtrip-key")
	code, out, errOut := runCmd(t, "sign", "--procedure", "LongVideoPreset", "--storage-region", "ap-chongqing",
		"--class-id", "7", "--source-context", "user 42", "--one-time", "--expire", "2h", "--sub-app-id", "1500000001")
	if code != 0 {
		t.Fatalf("sign exit %d: %s", code, errOut)
	}
	sig := strings.TrimSpace(out)
	if strings.ContainsAny(sig, " \n") || sig == "" {
		t.Fatalf("stdout is not the signature alone: %q", out)
	}
	code, out, errOut = runCmd(t, "sign", "--decode", sig)
	if code != 0 {
		t.Fatalf("decode exit %d: %s", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode output is not one JSON object: %v\n%s", err, out)
	}
	want := map[string]any{"secretId": "AKIDroundtrip", "procedure": "LongVideoPreset", "storageRegion": "ap-chongqing",
		"classId": 7.0, "sourceContext": "user 42", "oneTimeValid": 1.0, "vodSubAppId": 1500000001.0,
		"valid": true, "expired": false}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	life := got["expireTime"].(float64) - got["currentTimeStamp"].(float64)
	if life != 7200 {
		t.Errorf("lifetime = %v s, want 7200", life)
	}
	if _, ok := got["random"].(float64); !ok {
		t.Errorf("random missing: %v", got)
	}
	// With another key the HMAC check fails.
	t.Setenv("VODPIPE_SECRET_KEY", "other")
	_, out, _ = runCmd(t, "sign", "--decode", sig)
	if !strings.Contains(out, `"valid":false`) {
		t.Errorf("decode with wrong key: %s", out)
	}
}

func TestDecodeForeignSignature(t *testing.T) {
	// Made by testdata's Python implementation, long expired by now.
	b, err := os.ReadFile("../../pkg/vod/testdata/signatures/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		SecretKey string `json:"secretKey"`
		Vectors   []struct{ Name, Signature string }
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VODPIPE_SECRET_KEY", v.SecretKey)
	for _, vec := range v.Vectors {
		if vec.Name != "full_policy" {
			continue
		}
		code, out, errOut := runCmd(t, "sign", "--decode", vec.Signature)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got["valid"] != true || got["expired"] != true || got["sourceContext"] != "user=42&job=a b/ü" ||
			got["taskPriority"] != -3.0 || got["random"] != 4294967295.0 || got["taskNotifyMode"] != "Finish" {
			t.Fatalf("decoded = %v", got)
		}
		return
	}
	t.Fatal("vector full_policy missing")
}

func TestDecodeGarbageExitsNonZeroWithOneLine(t *testing.T) {
	for _, sig := range []string{"not-base64!!", "c2hvcnQ=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="} {
		code, out, errOut := runCmd(t, "sign", "--decode", sig)
		if code == 0 || out != "" {
			t.Fatalf("%q: exit %d, stdout %q", sig, code, out)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
			t.Fatalf("%q: stderr not one line: %q", sig, errOut)
		}
	}
}

func TestSignRefusals(t *testing.T) {
	t.Setenv("VODPIPE_SECRET_ID", "")
	t.Setenv("VODPIPE_SECRET_KEY", "")
	if code, _, errOut := runCmd(t, "sign"); code == 0 || !strings.Contains(errOut, "VODPIPE_SECRET_KEY") {
		t.Fatalf("no keys: exit %d %q", code, errOut)
	}
	t.Setenv("VODPIPE_SECRET_ID", "id")
	t.Setenv("VODPIPE_SECRET_KEY", "secret-never-printed")
	cases := map[string][]string{
		"sourceContext": {"--source-context", strings.Repeat("x", 251)},
		"expireTime":    {"--expire", (91 * 24 * time.Hour).String()},
		"taskPriority":  {"--task-priority", "11"},
	}
	for field, args := range cases {
		code, out, errOut := runCmd(t, append([]string{"sign"}, args...)...)
		if code == 0 || out != "" || !strings.Contains(errOut, field) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", field, code, out, errOut)
		}
		if strings.Contains(errOut, "secret-never-printed") {
			t.Errorf("%s: stderr carries the key", field)
		}
	}
}
