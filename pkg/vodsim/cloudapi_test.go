package vodsim_test

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// The requests of these tests are made and signed by Tencent Cloud's own Go
// SDK (its common package's generic CommonRequest, since the vod package is
// not served by the module proxy), so vodsim's TC3-HMAC-SHA256 verifier is
// checked against an implementation it shares no code with.

const cloudHost = "vod.tencentcloudapi.com"

// cloudClient returns an unmodified SDK client for vod.tencentcloudapi.com
// over plain HTTP whose every connection dials vodsim. tune changes the
// profile; tamper, if set, changes each request after the SDK signed it.
func cloudClient(v *testharness.Vodsim, cred common.CredentialIface, region string,
	tune func(*profile.ClientProfile), tamper func(*http.Request)) *common.Client {
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme = "HTTP"
	cpf.HttpProfile.ReqTimeout = 10
	if tune != nil {
		tune(cpf)
	}
	var transport http.RoundTripper = vod.DialOverride(v.Addr)
	if tamper != nil {
		base := transport
		transport = roundTripFunc(func(r *http.Request) (*http.Response, error) { tamper(r); return base.RoundTrip(r) })
	}
	return common.NewCommonClient(cred, region, cpf).WithHttpTransport(transport)
}

func appClient(v *testharness.Vodsim) *common.Client {
	return cloudClient(v, common.NewCredential(testharness.VodsimSecretID, testharness.VodsimSecretKey), "", nil, nil)
}

// cloudCall sends one VOD action through the SDK and returns the raw answer.
func cloudCall(t *testing.T, c *common.Client, version, action string, params map[string]any) ([]byte, error) {
	t.Helper()
	req := tchttp.NewCommonRequest("vod", version, action)
	if params != nil {
		if err := req.SetActionParameters(params); err != nil {
			t.Fatal(err)
		}
	}
	req.SetContext(t.Context())
	resp := tchttp.NewCommonResponse()
	if err := c.Send(req, resp); err != nil {
		return nil, err
	}
	return resp.GetBody(), nil
}

// sdkCode is the Cloud API error code of an SDK error, "" for nil.
func sdkCode(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *tcerr.TencentCloudSDKError
	if !errors.As(err, &e) {
		t.Fatalf("not an SDK error: %v", err)
	}
	if e.Code != "" && !strings.HasPrefix(e.Code, "ClientError") && !uuidRE.MatchString(e.RequestId) {
		t.Errorf("%s answered without a UUID RequestId: %q", e.Code, e.RequestId)
	}
	return e.Code
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func pullEvents(t *testing.T, c *common.Client) []vod.Event {
	t.Helper()
	b, err := cloudCall(t, c, "2018-07-17", "PullEvents", nil)
	if err != nil {
		t.Fatalf("PullEvents: %v", err)
	}
	var a vod.PullEventsResponse
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("PullEvents answer %s: %v", b, err)
	}
	if a.Response.EventSet == nil || !uuidRE.MatchString(a.Response.RequestID) {
		t.Fatalf("PullEvents answer = %s", b)
	}
	return a.Response.EventSet
}

func confirmEvents(t *testing.T, c *common.Client, handles ...string) error {
	t.Helper()
	b, err := cloudCall(t, c, "2018-07-17", "ConfirmEvents", map[string]any{"EventHandles": handles})
	if err != nil {
		return err
	}
	var a vod.ConfirmEventsResponse
	if err := json.Unmarshal(b, &a); err != nil || !uuidRE.MatchString(a.Response.RequestID) {
		t.Fatalf("ConfirmEvents answer %s: %v", b, err)
	}
	return nil
}

// commitUpload runs apply → COS put → commit and returns the FileId.
func commitUpload(t *testing.T, v *testharness.Vodsim, sourceContext string) string {
	t.Helper()
	a := apply(t, v, vod.SignatureParams{SourceContext: sourceContext},
		vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(2))})
	if _, err := v.COSClient(a).Object.Put(t.Context(), a.Video.Key(), strings.NewReader("hi"), nil); err != nil {
		t.Fatalf("put: %v", err)
	}
	cm, err := v.VODClient().Commit(t.Context(), v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return cm.FileID
}

func TestCloudAPIPullEventsUntilConfirmed(t *testing.T) {
	v := testharness.StartVodsim(t) // no callback URL: reliable (pull) mode
	c := appClient(v)
	if evs := pullEvents(t, c); len(evs) != 0 {
		t.Fatalf("pull before any upload = %+v", evs)
	}
	fileID := commitUpload(t, v, "cloud-pull")

	var handle string
	for range 2 { // an unconfirmed event comes back
		evs := pullEvents(t, c)
		if len(evs) != 1 {
			t.Fatalf("pull = %+v", evs)
		}
		f, ok := evs[0].FileUpload()
		if !ok || f.FileID != fileID || f.SourceContext != "cloud-pull" || f.MediaURL == "" || evs[0].EventHandle == "" {
			t.Fatalf("event = %+v, %+v", evs[0], f)
		}
		if handle != "" && evs[0].EventHandle != handle {
			t.Fatalf("handle changed between pulls: %s, %s", handle, evs[0].EventHandle)
		}
		handle = evs[0].EventHandle
	}
	// Unknown handles alongside a known one are ignored.
	if err := confirmEvents(t, c, handle, "no-such-handle"); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if evs := pullEvents(t, c); len(evs) != 0 {
		t.Fatalf("confirmed event came back: %+v", evs)
	}
	if ev := v.Events(); len(ev) != 1 || !ev[0].Confirmed {
		t.Fatalf("events = %+v", ev)
	}
	// A retried confirmation (its first answer lost) succeeds.
	if err := confirmEvents(t, c, handle); err != nil {
		t.Fatalf("second confirm: %v", err)
	}
	// Only unknown handles is the real API's parameter error.
	if code := sdkCode(t, confirmEvents(t, c, "no-such-handle")); code != "InvalidParameterValue" {
		t.Fatalf("confirm of an unknown handle: code %q", code)
	}
}

func TestCloudAPIPullsAtMost16(t *testing.T) {
	v := testharness.StartVodsim(t)
	c := appClient(v)
	for i := range 17 {
		commitUpload(t, v, "n="+strconv.Itoa(i))
	}
	evs := pullEvents(t, c)
	if len(evs) != 16 {
		t.Fatalf("pulled %d events, want 16", len(evs))
	}
	handles := make([]string, len(evs))
	for i, e := range evs {
		handles[i] = e.EventHandle
	}
	if err := confirmEvents(t, c, handles...); err != nil {
		t.Fatalf("confirm 16: %v", err)
	}
	if evs := pullEvents(t, c); len(evs) != 1 || evs[0].FileUploadEvent.MediaBasicInfo.SourceInfo.SourceContext != "n=16" {
		t.Fatalf("second pull = %+v", evs)
	}
}

func TestCloudAPIRefusals(t *testing.T) {
	id, key := testharness.VodsimSecretID, testharness.VodsimSecretKey
	cases := []struct {
		name            string
		cred            common.CredentialIface
		region          string
		clock           time.Duration // vodsim's clock moves by this before the call
		version, action string
		params          map[string]any
		tune            func(*profile.ClientProfile)
		tamper          func(*http.Request)
		want            string // "" = success
	}{
		{name: "app key", want: ""},
		{name: "app key with region", region: "ap-guangzhou", want: ""},
		{name: "unsigned payload", tune: func(p *profile.ClientProfile) { p.UnsignedPayload = true }, want: ""},
		{name: "SubAppId and ExtInfo", params: map[string]any{"SubAppId": 1500000001, "ExtInfo": "x"}, want: ""},
		{name: "clock 4m ahead", clock: 4 * time.Minute, want: ""},
		{name: "wrong key", cred: common.NewCredential(id, key+"x"), want: "AuthFailure.SignatureFailure"},
		{name: "unknown secret id", cred: common.NewCredential("AKIDnobody", key), want: "AuthFailure.SecretIdNotFound"},
		{name: "stale timestamp", clock: 6 * time.Minute, want: "AuthFailure.SignatureExpire"},
		{name: "future timestamp", clock: -6 * time.Minute, want: "AuthFailure.SignatureExpire"},
		{name: "temporary token", cred: common.NewTokenCredential(id, key, "tok"), want: "AuthFailure.TokenFailure"},
		{name: "body changed after signing", tamper: func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(`{"ExtInfo":"y"}`)), 15
		}, want: "AuthFailure.SignatureFailure"},
		{name: "host changed after signing", tamper: func(r *http.Request) { r.Host = "vod.ap-guangzhou.tencentcloudapi.com" },
			want: "AuthFailure.SignatureFailure"},
		{name: "GET", tune: func(p *profile.ClientProfile) { p.HttpProfile.ReqMethod = "GET" }, want: "UnsupportedOperation"},
		{name: "unsupported action", action: "DescribeMediaInfos", want: "InvalidAction"},
		{name: "unknown version", version: "2017-01-01", want: "NoSuchVersion"},
		{name: "unknown parameter", params: map[string]any{"Limit": 1}, want: "UnknownParameter"},
		{name: "parameter names are case-sensitive", action: "ConfirmEvents", params: map[string]any{"eventHandles": []string{"h"}},
			want: "UnknownParameter"},
		{name: "SubAppId not an integer", params: map[string]any{"SubAppId": "one"}, want: "InvalidParameter"},
		{name: "confirm without handles", action: "ConfirmEvents", params: map[string]any{}, want: "MissingParameter"},
		{name: "confirm 17 handles", action: "ConfirmEvents", params: map[string]any{"EventHandles": make([]string, 17)},
			want: "InvalidParameterValue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := testharness.StartVodsim(t)
			v.Clock().Advance(tc.clock)
			cred := tc.cred
			if cred == nil {
				cred = common.NewCredential(id, key)
			}
			c := cloudClient(v, cred, tc.region, tc.tune, tc.tamper)
			_, err := cloudCall(t, c, cmp.Or(tc.version, "2018-07-17"), cmp.Or(tc.action, "PullEvents"), tc.params)
			if got := sdkCode(t, err); got != tc.want {
				t.Fatalf("code %q, want %q (err %v)", got, tc.want, err)
			}
		})
	}
}

func TestCloudAPIInjectedFault(t *testing.T) {
	v := testharness.StartVodsim(t)
	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpPullEvents, FailNth: 1, Code: "RequestLimitExceeded"}}}); err != nil {
		t.Fatal(err)
	}
	c := appClient(v)
	_, err := cloudCall(t, c, "2018-07-17", "PullEvents", nil)
	if code := sdkCode(t, err); code != "RequestLimitExceeded" {
		t.Fatalf("first pull: code %q, want RequestLimitExceeded", code)
	}
	if evs := pullEvents(t, c); len(evs) != 0 {
		t.Fatalf("second pull = %+v", evs)
	}
}

// TestCloudAPIMalformedRequests covers requests the SDK never makes, sent by hand.
func TestCloudAPIMalformedRequests(t *testing.T) {
	v := testharness.StartVodsim(t)
	hc := v.HTTPClient()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	date := time.Now().UTC().Format(time.DateOnly)
	good := "TC3-HMAC-SHA256 Credential=" + testharness.VodsimSecretID + "/" + date + "/vod/tc3_request, SignedHeaders=content-type;host, Signature=" + strings.Repeat("0", 64)
	cases := []struct {
		name   string
		header map[string]string // "" value deletes the header
		want   string
	}{
		{"no Authorization", map[string]string{"Authorization": ""}, "AuthFailure.InvalidAuthorization"},
		{"v1 algorithm", map[string]string{"Authorization": "HmacSHA256 Credential=x"}, "AuthFailure.InvalidAuthorization"},
		{"host not signed", map[string]string{"Authorization": strings.Replace(good, "content-type;host", "content-type", 1)},
			"AuthFailure.InvalidAuthorization"},
		{"wrong service in scope", map[string]string{"Authorization": strings.Replace(good, "/vod/", "/cvm/", 1)},
			"AuthFailure.SignatureFailure"},
		{"zero signature", nil, "AuthFailure.SignatureFailure"},
		{"timestamp not a number", map[string]string{"X-TC-Timestamp": "soon"}, "InvalidParameter"},
		{"no action", map[string]string{"X-TC-Action": ""}, "MissingParameter"},
		{"no version", map[string]string{"X-TC-Version": ""}, "MissingParameter"},
		{"no timestamp", map[string]string{"X-TC-Timestamp": ""}, "MissingParameter"},
		{"text body", map[string]string{"Content-Type": "text/plain"}, "InvalidParameter"},
		{"form body (v1)", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "UnsupportedOperation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+cloudHost+"/", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			for k, val := range map[string]string{"Content-Type": "application/json", "X-TC-Action": "PullEvents",
				"X-TC-Version": "2018-07-17", "X-TC-Timestamp": ts, "Authorization": good} {
				req.Header.Set(k, val)
			}
			for k, val := range tc.header {
				if val == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, val)
				}
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var a vod.PullEventsResponse
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || a.Response.Error == nil || a.Response.Error.Code != tc.want ||
				!uuidRE.MatchString(a.Response.RequestID) {
				t.Fatalf("status %d, answer %+v, want code %s", resp.StatusCode, a.Response, tc.want)
			}
		})
	}
}
