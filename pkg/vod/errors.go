package vod

import (
	"errors"
	"fmt"
	"time"
)

// Errors of signature handling, locally and as answered by VOD. Match with errors.Is.
var (
	ErrSignatureMalformed    = errors.New("vod: signature malformed")
	ErrSignatureInvalid      = errors.New("vod: signature invalid")
	ErrSignatureExpired      = errors.New("vod: signature expired")
	ErrSignatureTooLongLived = errors.New("vod: signature lifetime too long")
	ErrSignatureNotYetValid  = errors.New("vod: signature timestamp in the future")
	ErrSignatureFieldInvalid = errors.New("vod: signature field invalid")
	ErrSignatureUsed         = errors.New("vod: one-time signature already used")
	ErrUnknownSecretID       = errors.New("vod: unknown secretId")
	ErrMissingSecretKey      = errors.New("vod: no SecretKey configured")
)

// Errors of the client-upload API, each the match of one or more codes in Codes.
var (
	ErrInvalidParameter   = errors.New("vod: invalid parameter")
	ErrSessionExpired     = errors.New("vod: upload session unknown or expired")
	ErrRegionNotAllowed   = errors.New("vod: storage region not allowed")
	ErrProcedureNotFound  = errors.New("vod: task flow (procedure) not found")
	ErrUploadIncomplete   = errors.New("vod: uploaded object missing or of the wrong size")
	ErrFileNotFound       = errors.New("vod: media file not found")
	ErrInternal           = errors.New("vod: internal error")
	ErrUnexpectedResponse = errors.New("vod: unexpected response")
	ErrTransport          = errors.New("vod: transport failure")
)

// Code is a non-zero `code` in a VOD client-upload answer.
type Code int

// The codes vodsim answers. The real service's codes were not confirmed
// (assumed, see vod-protocol.md §2): this table is the one place that maps
// codes to meaning, so a corrected code is a one-line change.
const (
	CodeOK                  Code = 0
	CodeInternal            Code = 500
	CodeInvalidParameter    Code = 10001
	CodeSignatureInvalid    Code = 10002
	CodeSignatureExpired    Code = 10003
	CodeSignatureUsed       Code = 10004
	CodeSessionExpired      Code = 10005
	CodeRegionNotAllowed    Code = 10006
	CodeProcedureNotFound   Code = 10007
	CodeUploadIncomplete    Code = 10008
	CodeFileNotFound        Code = 10009
	CodeSignatureFromFuture Code = 10010
)

// CodeInfo describes one code: what it matches and whether a retry of the same
// request may succeed.
type CodeInfo struct {
	Err       error
	Retryable bool
	Message   string
}

// Codes is the table of VOD answer codes.
var Codes = map[Code]CodeInfo{
	CodeInternal:            {ErrInternal, true, "internal error"},
	CodeInvalidParameter:    {ErrInvalidParameter, false, "invalid parameter"},
	CodeSignatureInvalid:    {ErrSignatureInvalid, false, "signature invalid"},
	CodeSignatureExpired:    {ErrSignatureExpired, false, "signature expired"},
	CodeSignatureUsed:       {ErrSignatureUsed, false, "one-time signature already used"},
	CodeSessionExpired:      {ErrSessionExpired, false, "upload session unknown or expired"},
	CodeRegionNotAllowed:    {ErrRegionNotAllowed, false, "storage region not allowed"},
	CodeProcedureNotFound:   {ErrProcedureNotFound, false, "task flow not found"},
	CodeUploadIncomplete:    {ErrUploadIncomplete, false, "uploaded object missing or of the wrong size"},
	CodeFileNotFound:        {ErrFileNotFound, false, "media file not found"},
	CodeSignatureFromFuture: {ErrSignatureNotYetValid, false, "signature timestamp in the future"},
}

// SignatureRefused reports whether err is VOD refusing the signature itself
// (invalid or of an unknown key, expired, a one-time one used, issued in
// its future): the request itself may go through with another signature.
func SignatureRefused(err error) bool {
	for _, c := range []Code{CodeSignatureInvalid, CodeSignatureExpired, CodeSignatureUsed, CodeSignatureFromFuture} {
		if errors.Is(err, Codes[c].Err) {
			return true
		}
	}
	return false
}

// CodeFor returns the code VOD answers for err, CodeInternal when err matches none.
func CodeFor(err error) Code {
	// Order matters where sentinels overlap: the most specific first.
	for _, c := range []Code{CodeSignatureUsed, CodeSignatureExpired, CodeSignatureFromFuture,
		CodeSessionExpired, CodeRegionNotAllowed, CodeProcedureNotFound, CodeUploadIncomplete,
		CodeFileNotFound, CodeInvalidParameter} {
		if errors.Is(err, Codes[c].Err) {
			return c
		}
	}
	switch {
	case errors.Is(err, ErrSignatureInvalid), errors.Is(err, ErrSignatureMalformed),
		errors.Is(err, ErrUnknownSecretID):
		return CodeSignatureInvalid
	case errors.Is(err, ErrSignatureTooLongLived), errors.Is(err, ErrSignatureFieldInvalid):
		return CodeInvalidParameter
	}
	return CodeInternal
}

// APIError is a non-zero code answered by VOD.
type APIError struct {
	Action    string
	Code      Code
	Message   string
	RequestID string
	// ServerTime is VOD's clock when it answered (its Date header; zero
	// when it sent none): a refusal of a signature's times is told
	// against it.
	ServerTime time.Time
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("vod %s: code %d: %s (request id %s)", e.Action, e.Code, e.Message, e.RequestID)
}

// Is matches the sentinel of e's code, so callers write errors.Is(err, vod.ErrSignatureUsed).
func (e *APIError) Is(target error) bool {
	info, ok := Codes[e.Code]
	return ok && info.Err == target
}

// Retryable reports whether the same request may succeed later.
func (e *APIError) Retryable() bool {
	info, ok := Codes[e.Code]
	return !ok || info.Retryable
}

// FieldError names one bad field and why it is bad.
type FieldError struct {
	Field  string
	Reason string
	Err    error
}

// Error implements error.
func (e *FieldError) Error() string { return e.Field + " " + e.Reason }

// Unwrap returns the sentinel the field error belongs to.
func (e *FieldError) Unwrap() error { return e.Err }
