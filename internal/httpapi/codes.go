package httpapi

// The error codes of every vodpipe API: an answer's error.code is one of
// these, stable across versions. Catalog says what each means.
const (
	CodeBadBody              = "bad_body"
	CodeBadEvent             = "bad_event"
	CodeBadJSON              = "bad_json"
	CodeBadToken             = "bad_token"
	CodeBatchTooLarge        = "batch_too_large"
	CodeBodyTooLarge         = "body_too_large"
	CodeConflict             = "conflict"
	CodeForbidden            = "forbidden"
	CodeInternal             = "internal"
	CodeInvalidBatch         = "invalid_batch"
	CodeInvalidField         = "invalid_field"
	CodeInvalidHeader        = "invalid_header"
	CodeInvalidJob           = "invalid_job"
	CodeInvalidParameter     = "invalid_parameter"
	CodeInvalidPath          = "invalid_path"
	CodeInvalidQuery         = "invalid_query"
	CodeInvalidRequest       = "invalid_request"
	CodeNotFound             = "not_found"
	CodePolicyRefused        = "policy_refused"
	CodeQueueUnavailable     = "queue_unavailable"
	CodeRateLimited          = "rate_limited"
	CodeSDKNotInstalled      = "sdk_not_installed"
	CodeStorageFull          = "storage_full"
	CodeSubDisabled          = "subscription_disabled"
	CodeSubNotFound          = "subscription_not_found"
	CodeTooManyReplays       = "too_many_replays"
	CodeTooManyStreams       = "too_many_streams"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeUnauthenticated      = "unauthenticated"
	CodeUnavailable          = "unavailable"
	CodeUnknownField         = "unknown_field"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUploadTokensOff      = "upload_tokens_off"
)

// CodeInfo is one error code and what it means.
type CodeInfo struct {
	Code, Meaning string
}

// Catalog is every code with its meaning, sorted: the one table that
// docs/errors.md is generated from and docs/openapi.json lists (tests keep
// both in sync).
func Catalog() []CodeInfo {
	return []CodeInfo{
		{CodeBadBody, "the body could not be read"},
		{CodeBadEvent, "a VOD event callback that is not a VOD event"},
		{CodeBadJSON, "the body is not one JSON object"},
		{CodeBadToken, "a VOD callback without the right token"},
		{CodeBatchTooLarge, "more jobs in one batch than allowed"},
		{CodeBodyTooLarge, "the body is over the size limit"},
		{CodeConflict, "the job's state does not allow the action"},
		{CodeForbidden, "the key lacks the scope, or a token its right"},
		{CodeInternal, "a failure of vodpipe's own; the log has the detail"},
		{CodeInvalidBatch, "a batch that cannot be split into jobs"},
		{CodeInvalidField, "a field's value is not valid (fields names it)"},
		{CodeInvalidHeader, "a request header's value is not valid"},
		{CodeInvalidJob, "the job message is not valid (fields names the fields)"},
		{CodeInvalidParameter, "a query parameter is not valid (fields names it)"},
		{CodeInvalidPath, "the path's id is not valid"},
		{CodeInvalidQuery, "query parameters are not valid (fields names them)"},
		{CodeInvalidRequest, "the body does not decode into the request (fields names the field when known)"},
		{CodeNotFound, "no such route, job or dead letter"},
		{CodePolicyRefused, "the signing policy refuses a value (fields names it)"},
		{CodeQueueUnavailable, "the job queue cannot take the job now; retry"},
		{CodeRateLimited, "too many requests; Retry-After says when to try again"},
		{CodeSDKNotInstalled, "the upload page's web SDK is missing from the install"},
		{CodeStorageFull, "NATS JetStream storage is full: the job was not queued; Retry-After says when to try again"},
		{CodeSubDisabled, "the subscription is disabled"},
		{CodeSubNotFound, "no such subscription"},
		{CodeTooManyReplays, "too many replays in flight"},
		{CodeTooManyStreams, "too many event streams are open; retry later"},
		{CodeTooManySubscriptions, "the subscription limit is reached"},
		{CodeUnauthenticated, "no API key, or one that is not valid"},
		{CodeUnavailable, "the message store cannot be reached now; retry"},
		{CodeUnknownField, "the body has a field the request does not know (fields names it)"},
		{CodeUnsupportedMediaType, "the body's Content-Type is not one the route takes"},
		{CodeUploadTokensOff, "upload tokens are not configured"},
	}
}

// Codes lists every code, sorted.
func Codes() []string {
	var out []string
	for _, c := range Catalog() {
		out = append(out, c.Code)
	}
	return out
}
