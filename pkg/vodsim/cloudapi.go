package vodsim

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vodpipe/vodpipe/pkg/vod"
)

// VOD's Tencent Cloud API 3.0 endpoint, as far as the reliable callback needs
// it: PullEvents and ConfirmEvents, POSTed as JSON to / on
// vod.tencentcloudapi.com and signed with TC3-HMAC-SHA256 (tc3.go). Every
// answer, success or refusal, is HTTP 200 with a {"Response":{…,"RequestId"}}
// body, refusals carrying Response.Error with a Cloud API error code.
//
// Where vodsim knowingly differs from the real service:
//   - PullEvents answers at once, also when there is nothing to pull (the real
//     API holds the request up to 5 s waiting for an event), and an
//     unconfirmed event comes back on every pull (the real API hides a pulled
//     event for 30 s). Consumers see more redeliveries, never fewer.
//   - A handle can be confirmed at any time after it was pulled (the real API
//     refuses handles older than 30 s with InvalidParameterValue).
//   - SubAppId is checked for type and otherwise ignored: vodsim keeps one
//     event queue for the whole app.
//   - Only POST application/json with TC3-HMAC-SHA256 is served; GET,
//     form-encoded v1 signatures and X-TC-Token (temporary keys) are refused.

// cloudAPIHost matches VOD's Cloud API hosts: vod.tencentcloudapi.com and its
// regional (vod.ap-guangzhou.…) and international (vod.intl.…) forms.
var cloudAPIHost = regexp.MustCompile(`^vod(\.[a-z0-9-]+)?\.tencentcloudapi\.com$`)

// Cloud API 3.0 facts vodsim enforces.
const (
	cloudAPIService = "vod"
	cloudAPIVersion = "2018-07-17"
	// maxPullEvents and maxConfirmHandles are the API's per-call limits.
	maxPullEvents     = 16
	maxConfirmHandles = 16
	// maxCloudBody is the body limit of a TC3-signed POST.
	maxCloudBody = 10 << 20
	// cloudOpOther labels metrics of requests for actions vodsim does not serve.
	cloudOpOther = "CloudAPI"
)

// Cloud API 3.0 error codes vodsim answers; all are common codes of the
// real API or listed for ConfirmEvents.
const (
	cloudInvalidAuthorization = "AuthFailure.InvalidAuthorization"
	cloudSecretIDNotFound     = "AuthFailure.SecretIdNotFound"
	cloudSignatureExpire      = "AuthFailure.SignatureExpire"
	cloudSignatureFailure     = "AuthFailure.SignatureFailure"
	cloudTokenFailure         = "AuthFailure.TokenFailure"
	cloudInternalError        = "InternalError"
	cloudInvalidAction        = "InvalidAction"
	cloudInvalidParameter     = "InvalidParameter"
	cloudInvalidParamValue    = "InvalidParameterValue"
	cloudMissingParameter     = "MissingParameter"
	cloudNoSuchVersion        = "NoSuchVersion"
	cloudRequestSizeExceeded  = "RequestSizeLimitExceeded"
	cloudUnknownParameter     = "UnknownParameter"
	cloudUnsupportedOperation = "UnsupportedOperation"
	cloudUnsupportedProtocol  = "UnsupportedProtocol"
)

// cloudError is a Cloud API refusal.
type cloudError struct{ code, msg string }

func refuseCloud(code, format string, args ...any) *cloudError {
	return &cloudError{code: code, msg: fmt.Sprintf(format, args...)}
}

// cloudErrorAnswer is the body of every refusal.
type cloudErrorAnswer struct {
	Response struct {
		Error     vod.CloudError `json:"Error"`
		RequestID string         `json:"RequestId"`
	} `json:"Response"`
}

// serveCloudAPI handles one Cloud API 3.0 request. The checks run in the
// order a client meets them: request form, common parameters (version,
// action), injected faults, body size, signature (tc3.go), then the
// action's own parameters.
func (s *Server) serveCloudAPI(w http.ResponseWriter, r *http.Request) {
	reqID := newCloudRequestID()
	action := r.Header.Get("X-TC-Action")
	op := action
	if op != OpPullEvents && op != OpConfirmEvents {
		op = cloudOpOther // keeps the metric's label set bounded
	}
	if cerr := checkCloudRequest(r, action); cerr != nil {
		s.writeCloud(w, op, reqID, nil, cerr)
		return
	}

	d, ok := s.injectFaults(w, r, op, true)
	if !ok {
		return
	}
	if d.fail {
		s.metrics.faults.WithLabelValues(op, "error").Inc()
		if d.status >= 500 {
			// An HTTP-level failure, as a broken gateway would answer.
			s.metrics.requests.WithLabelValues(op, strconv.Itoa(d.status)).Inc()
			http.Error(w, "injected failure", d.status)
			return
		}
		// A rule's code is the Cloud API error code to answer, e.g.
		// RequestLimitExceeded; InternalError by default.
		code := cmp.Or(d.code, cloudInternalError)
		s.writeCloud(w, op, reqID, nil, refuseCloud(code, "injected failure"))
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxCloudBody+1))
	if err != nil {
		return
	}
	if len(body) > maxCloudBody {
		s.writeCloud(w, op, reqID, nil, refuseCloud(cloudRequestSizeExceeded, "body larger than %d bytes", maxCloudBody))
		return
	}
	v := TC3Verifier{Service: cloudAPIService, Keys: s.cfg.Apps, Now: s.now}
	if _, err := v.Verify(r, body); err != nil {
		s.writeCloud(w, op, reqID, nil, refuseCloud(tc3Code(err), "%s", strings.TrimPrefix(err.Error(), "vodsim: ")))
		return
	}
	if r.Header.Get("X-TC-Token") != "" {
		s.writeCloud(w, op, reqID, nil, refuseCloud(cloudTokenFailure,
			"vodsim accepts only the permanent keys of its apps; X-TC-Token (temporary credentials) is not supported"))
		return
	}

	var out any
	var cerr *cloudError
	switch action {
	case OpPullEvents:
		out, cerr = s.cloudPullEvents(body, reqID)
	case OpConfirmEvents:
		out, cerr = s.cloudConfirmEvents(body, reqID)
	}
	s.writeCloud(w, op, reqID, out, cerr)
}

// checkCloudRequest checks what the gateway checks before the signature:
// method, path, Content-Type and the common parameters Action, Version and
// Timestamp.
func checkCloudRequest(r *http.Request, action string) *cloudError {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		return refuseCloud(cloudUnsupportedOperation, "vodsim serves Cloud API requests only as POST with application/json")
	default:
		return refuseCloud(cloudUnsupportedProtocol, "method %s: only GET and POST requests are supported", r.Method)
	}
	if r.URL.Path != "/" {
		return refuseCloud(cloudUnsupportedOperation, "path %q: Cloud API requests go to /", r.URL.Path)
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err == nil && mt == "application/json":
	case err == nil && (mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"):
		return refuseCloud(cloudUnsupportedOperation,
			"Content-Type %s: vodsim serves only application/json with TC3-HMAC-SHA256 signatures", mt)
	default:
		return refuseCloud(cloudInvalidParameter, "Content-Type %q: POST bodies must be application/json", ct)
	}
	for _, p := range []string{"Action", "Version", "Timestamp"} {
		if r.Header.Get("X-TC-"+p) == "" {
			return refuseCloud(cloudMissingParameter, "the request is missing the required parameter `%s` (header X-TC-%s)", p, p)
		}
	}
	if v := r.Header.Get("X-TC-Version"); v != cloudAPIVersion {
		return refuseCloud(cloudNoSuchVersion, "the version `%s` of service `%s` does not exist; use %s", v, cloudAPIService, cloudAPIVersion)
	}
	if action != OpPullEvents && action != OpConfirmEvents {
		return refuseCloud(cloudInvalidAction, "the action `%s` is not served: vodsim's Cloud API has only %s and %s",
			action, OpPullEvents, OpConfirmEvents)
	}
	return nil
}

// tc3Code maps a TC3Verifier error to its Cloud API error code.
func tc3Code(err error) string {
	switch {
	case errors.Is(err, ErrTC3AuthMalformed):
		return cloudInvalidAuthorization
	case errors.Is(err, ErrTC3TimestampInvalid):
		return cloudInvalidParameter
	case errors.Is(err, ErrTC3SignatureExpired):
		return cloudSignatureExpire
	case errors.Is(err, ErrTC3SecretIDNotFound):
		return cloudSecretIDNotFound
	default:
		return cloudSignatureFailure
	}
}

// cloudPullEvents answers PullEvents {SubAppId?, ExtInfo?} with up to
// maxPullEvents unconfirmed events, each with its EventHandle.
func (s *Server) cloudPullEvents(body []byte, reqID string) (any, *cloudError) {
	params, cerr := decodeCloudParams(body, "SubAppId", "ExtInfo")
	if cerr != nil {
		return nil, cerr
	}
	if cerr := checkCommonVODParams(params); cerr != nil {
		return nil, cerr
	}
	var a vod.PullEventsResponse
	a.Response.EventSet = s.PullEvents(maxPullEvents)
	if a.Response.EventSet == nil {
		a.Response.EventSet = []vod.Event{}
	}
	a.Response.RequestID = reqID
	return a, nil
}

// cloudConfirmEvents answers ConfirmEvents {EventHandles, SubAppId?, ExtInfo?}.
// Known handles are confirmed (again, harmlessly, if already confirmed, so a
// retried call succeeds). Unknown handles are ignored as long as one handle
// in the call is known; when none is, the call fails with
// InvalidParameterValue, the code the real API gives for handles it no
// longer accepts.
func (s *Server) cloudConfirmEvents(body []byte, reqID string) (any, *cloudError) {
	params, cerr := decodeCloudParams(body, "EventHandles", "SubAppId", "ExtInfo")
	if cerr != nil {
		return nil, cerr
	}
	if cerr := checkCommonVODParams(params); cerr != nil {
		return nil, cerr
	}
	var handles []string
	if raw, ok := params["EventHandles"]; ok {
		if err := json.Unmarshal(raw, &handles); err != nil {
			return nil, refuseCloud(cloudInvalidParameter, "EventHandles must be an array of strings")
		}
	}
	switch {
	case len(handles) == 0:
		return nil, refuseCloud(cloudMissingParameter, "the request is missing the required parameter `EventHandles`")
	case len(handles) > maxConfirmHandles:
		return nil, refuseCloud(cloudInvalidParamValue, "EventHandles has %d elements, at most %d are allowed", len(handles), maxConfirmHandles)
	}
	if unknown := s.ConfirmEvents(handles); len(unknown) == len(handles) {
		return nil, refuseCloud(cloudInvalidParamValue, "no EventHandles is a handle of a pulled event: %s", strings.Join(unknown, ","))
	}
	var a vod.ConfirmEventsResponse
	a.Response.RequestID = reqID
	return a, nil
}

// decodeCloudParams decodes a JSON object body into its raw parameters.
// Names are matched case-sensitively, as at Cloud API; one the action does
// not define is UnknownParameter. An empty body is an empty object.
func decodeCloudParams(body []byte, allowed ...string) (map[string]json.RawMessage, *cloudError) {
	params := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) == 0 {
		return params, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&params); err != nil {
		return nil, refuseCloud(cloudInvalidParameter, "the body is not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, refuseCloud(cloudInvalidParameter, "the body has data after its JSON object")
	}
	for name := range params {
		if !slices.Contains(allowed, name) {
			return nil, refuseCloud(cloudUnknownParameter, "the parameter `%s` is not recognized", name)
		}
	}
	return params, nil
}

// checkCommonVODParams type-checks SubAppId and ExtInfo, which every VOD
// action takes.
func checkCommonVODParams(params map[string]json.RawMessage) *cloudError {
	if raw, ok := params["SubAppId"]; ok {
		var id uint64
		if err := json.Unmarshal(raw, &id); err != nil {
			return refuseCloud(cloudInvalidParameter, "SubAppId must be an unsigned integer")
		}
	}
	if raw, ok := params["ExtInfo"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return refuseCloud(cloudInvalidParameter, "ExtInfo must be a string")
		}
	}
	return nil
}

// writeCloud writes a Cloud API answer: out on success, else the refusal.
func (s *Server) writeCloud(w http.ResponseWriter, op, reqID string, out any, cerr *cloudError) {
	code := "OK"
	if cerr != nil {
		code = cerr.code
		var a cloudErrorAnswer
		a.Response.Error = vod.CloudError{Code: cerr.code, Message: cerr.msg}
		a.Response.RequestID = reqID
		out = a
		s.log.Info("cloud api refused", "op", op, "code", cerr.code, "reason", cerr.msg, "requestId", reqID)
	}
	s.metrics.requests.WithLabelValues(op, code).Inc()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// newCloudRequestID returns a random UUID, the form of Cloud API RequestIds.
func newCloudRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
