package httpapi

// The error codes of every vodpipe API, in one table: an answer's
// error.code is one of these, stable across versions, and
// docs/openapi.json lists them (a test keeps the two equal).
const (
	CodeBadBody              = "bad_body"               // the body could not be read
	CodeBadEvent             = "bad_event"              // a VOD event callback that is not a VOD event
	CodeBadJSON              = "bad_json"               // the body is not one JSON object
	CodeBadToken             = "bad_token"              // a VOD callback without the right token
	CodeBatchTooLarge        = "batch_too_large"        // more jobs in one batch than allowed
	CodeBodyTooLarge         = "body_too_large"         // the body is over the size limit
	CodeConflict             = "conflict"               // the job's state does not allow the action
	CodeForbidden            = "forbidden"              // the key lacks the scope, or a token its right
	CodeInternal             = "internal"               // a failure of vodpipe's own; the log has the detail
	CodeInvalidBatch         = "invalid_batch"          // a batch that cannot be split into jobs
	CodeInvalidField         = "invalid_field"          // a field's value is not valid (fields names it)
	CodeInvalidHeader        = "invalid_header"         // a request header's value is not valid
	CodeInvalidJob           = "invalid_job"            // the job message is not valid (fields names the fields)
	CodeInvalidParameter     = "invalid_parameter"      // a query parameter is not valid (fields names it)
	CodeInvalidPath          = "invalid_path"           // the path's id is not valid
	CodeInvalidQuery         = "invalid_query"          // query parameters are not valid (fields names them)
	CodeInvalidRequest       = "invalid_request"        // the body does not decode into the request (fields names the field when known)
	CodeNotFound             = "not_found"              // no such route, job or dead letter
	CodePolicyRefused        = "policy_refused"         // the signing policy refuses a value (fields names it)
	CodeQueueUnavailable     = "queue_unavailable"      // the job queue cannot take the job now; retry
	CodeRateLimited          = "rate_limited"           // too many requests; Retry-After says when to try again
	CodeSDKNotInstalled      = "sdk_not_installed"      // the upload page's web SDK is missing from the install
	CodeSubDisabled          = "subscription_disabled"  // the subscription is disabled
	CodeSubNotFound          = "subscription_not_found" // no such subscription
	CodeTooManyReplays       = "too_many_replays"       // too many replays in flight
	CodeTooManyStreams       = "too_many_streams"       // too many event streams are open; retry later
	CodeTooManySubscriptions = "too_many_subscriptions" // the subscription limit is reached
	CodeUnauthenticated      = "unauthenticated"        // no API key, or one that is not valid
	CodeUnavailable          = "unavailable"            // the message store cannot be reached now; retry
	CodeUnknownField         = "unknown_field"          // the body has a field the request does not know (fields names it)
	CodeUnsupportedMediaType = "unsupported_media_type" // the body's Content-Type is not one the route takes
	CodeUploadTokensOff      = "upload_tokens_off"      // upload tokens are not configured
)

// Codes lists every code, sorted.
func Codes() []string {
	return []string{CodeBadBody, CodeBadEvent, CodeBadJSON, CodeBadToken, CodeBatchTooLarge, CodeBodyTooLarge,
		CodeConflict, CodeForbidden, CodeInternal, CodeInvalidBatch, CodeInvalidField, CodeInvalidHeader,
		CodeInvalidJob, CodeInvalidParameter, CodeInvalidPath, CodeInvalidQuery, CodeInvalidRequest, CodeNotFound,
		CodePolicyRefused, CodeQueueUnavailable, CodeRateLimited, CodeSDKNotInstalled, CodeSubDisabled,
		CodeSubNotFound, CodeTooManyReplays, CodeTooManyStreams, CodeTooManySubscriptions, CodeUnauthenticated, CodeUnavailable,
		CodeUnknownField, CodeUnsupportedMediaType, CodeUploadTokensOff}
}
