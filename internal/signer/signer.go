// Package signer is the upload-signature service: its policy, the NATS
// micro service that ingest runs (it alone holds the SecretKey), and the
// client workers use to ask it for signatures.
package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Subject is the NATS subject of the signature service.
const Subject = "vodpipe.sign"

// ServiceName is the micro service's name, as `nats micro ls` shows it.
const ServiceName = "vodpipe-sign"

// Request asks for one signature with an upload policy.
type Request struct {
	Procedure      string `json:"procedure,omitempty"`
	StorageRegion  string `json:"storageRegion,omitempty"`
	ClassID        int64  `json:"classId,omitempty"`
	SubAppID       uint64 `json:"subAppId,omitempty"`
	SourceContext  string `json:"sourceContext,omitempty"`
	SessionContext string `json:"sessionContext,omitempty"`
	OneTime        bool   `json:"oneTime,omitempty"`
	TaskPriority   *int   `json:"taskPriority,omitempty"`
	// Validity asks for a lifetime; the policy caps it.
	Validity time.Duration `json:"validity,omitempty"`
	// JobID names the job a worker signs for: the service signs only for a
	// job a worker is processing, with that job's own policy (see Jobs).
	JobID string `json:"jobId,omitempty"`
}

// Response carries a signature or an error.
type Response struct {
	Signature  string `json:"signature,omitempty"`
	ExpireTime int64  `json:"expireTime,omitempty"`
	Error      *Error `json:"error,omitempty"`
}

// Error is a refusal by the signature service.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field refused, when one is.
	Field string `json:"field,omitempty"`
	// cause is what refused the request in this process (vod's field errors).
	cause error
}

// Unwrap returns the refusal's cause, when it was made in this process.
func (e *Error) Unwrap() error { return e.cause }

// Error codes.
const (
	CodePolicy       = "policy_refused"
	CodeInvalid      = "invalid_request"
	CodeUnavailable  = "unavailable"
	CodeJobNotActive = "job_not_active"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrPolicy means the request is outside the signing policy: permanent.
	ErrPolicy = errors.New("signer: request outside the signing policy")
	// ErrInvalid means the request itself is malformed: permanent.
	ErrInvalid = errors.New("signer: invalid signature request")
	// ErrUnavailable means no signature service answered: transient.
	ErrUnavailable = errors.New("signer: signature service unavailable")
	// ErrJobNotActive means the job named is unknown, or no worker may be
	// processing it now (queued, paused, finished): nothing is signed for it.
	ErrJobNotActive = errors.New("signer: job not active")
)

// Error implements error.
func (e *Error) Error() string { return "signer: " + e.Code + ": " + e.Message }

// SignRefusal is the job error code of a refusal that no retry changes (the
// policy, a malformed request), "" for others: how the uploader tells them
// apart without importing this package.
func (e *Error) SignRefusal() string {
	switch e.Code {
	case CodePolicy:
		return "policy_refused"
	case CodeInvalid:
		return "signature_request_invalid"
	}
	return ""
}

// Is maps codes to sentinels.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodePolicy:
		return target == ErrPolicy
	case CodeInvalid:
		return target == ErrInvalid
	case CodeUnavailable:
		return target == ErrUnavailable
	case CodeJobNotActive:
		return target == ErrJobNotActive
	}
	return false
}

// Policy bounds what the service signs. It is closed by default: a list
// allows its values, the value "*" allows any, and an empty list allows only
// the default (no task flow, the account's default region, class 0, the
// main application).
type Policy struct {
	Procedures     Allow         `envconfig:"SIGN_PROCEDURES" desc:"task flows signatures may name, comma-separated; * for any; empty: none"`
	StorageRegions Allow         `envconfig:"SIGN_STORAGE_REGIONS" desc:"storage regions signatures may name; * for any; empty: only the default region"`
	ClassIDs       Allow         `envconfig:"SIGN_CLASS_IDS" desc:"class ids signatures may name; * for any; empty: only class 0"`
	SubAppIDs      Allow         `envconfig:"SIGN_SUB_APP_IDS" desc:"VOD sub-application ids signatures may name; * for any; empty: only the main application"`
	MaxValidity    time.Duration `envconfig:"SIGN_MAX_VALIDITY" default:"2h" desc:"longest signature lifetime handed out"`
	ForceOneTime   bool          `envconfig:"SIGN_FORCE_ONE_TIME" desc:"make every signature one-time"`
}

// Any is the allow-list value that allows every value.
const Any = "*"

// Allow is one allow-list of a Policy.
type Allow []string

// Allows reports whether v is on the list, or the list allows any value.
func (a Allow) Allows(v string) bool { return slices.Contains(a, Any) || slices.Contains(a, v) }

// String describes the list for the startup log.
func (a Allow) String() string {
	switch {
	case slices.Contains(a, Any):
		return "any"
	case len(a) == 0:
		return "default only"
	}
	return strings.Join(a, ",")
}

// Validate refuses a policy whose id lists hold a value that is not an id or "*".
func (p Policy) Validate() error {
	for _, l := range []struct {
		name string
		ids  Allow
	}{{"VODPIPE_SIGN_CLASS_IDS", p.ClassIDs}, {"VODPIPE_SIGN_SUB_APP_IDS", p.SubAppIDs}} {
		for _, v := range l.ids {
			if _, err := strconv.ParseUint(v, 10, 64); err != nil && v != Any {
				return fmt.Errorf("signer: %s: %q is neither an id nor %q", l.name, v, Any)
			}
		}
	}
	for _, v := range slices.Concat(p.Procedures, p.StorageRegions) {
		if strings.TrimSpace(v) == "" {
			return errors.New("signer: an empty value in VODPIPE_SIGN_PROCEDURES or VODPIPE_SIGN_STORAGE_REGIONS")
		}
	}
	return nil
}

// LogAttrs describe the policy in force, for the startup log.
func (p Policy) LogAttrs() []any {
	return []any{"procedures", p.Procedures.String(), "storage_regions", p.StorageRegions.String(),
		"class_ids", p.ClassIDs.String(), "sub_app_ids", p.SubAppIDs.String(),
		"max_validity", p.MaxValidity.String(), "force_one_time", p.ForceOneTime}
}

// Jobs finds the job a worker asks to sign for. SigningJob returns the job
// while a worker may be processing it (running, or being canceled, which
// needs credentials to abort its multipart upload) and otherwise an error
// wrapping job.ErrNotActive.
type Jobs interface {
	SigningJob(ctx context.Context, jobID string) (*job.Job, error)
}

// Signer makes signatures under a policy. It holds the SecretKey.
type Signer struct {
	secretID  string
	secretKey string
	policy    Policy
	now       func() time.Time
}

// Option configures a Signer.
type Option func(*Signer)

// WithClock makes the signer read the time from now (a clock of its own,
// as a machine whose clock is off has: the clock-skew tests).
func WithClock(now func() time.Time) Option { return func(s *Signer) { s.now = now } }

// New returns a Signer. secretKey never leaves it.
func New(secretID, secretKey string, p Policy, opts ...Option) (*Signer, error) {
	if secretID == "" || secretKey == "" {
		return nil, fmt.Errorf("signer: %w", vod.ErrMissingSecretKey)
	}
	if p.MaxValidity <= 0 {
		p.MaxValidity = 2 * time.Hour
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	s := &Signer{secretID: secretID, secretKey: secretKey, policy: p, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Check refuses a request outside the policy, before anything is signed,
// naming the field refused.
func (s *Signer) Check(r Request) error {
	for _, f := range []struct {
		field, value string
		set          bool
		allow        Allow
	}{
		{"procedure", r.Procedure, r.Procedure != "", s.policy.Procedures},
		{"storageRegion", r.StorageRegion, r.StorageRegion != "", s.policy.StorageRegions},
		{"classId", strconv.FormatInt(r.ClassID, 10), r.ClassID != 0, s.policy.ClassIDs},
		{"subAppId", strconv.FormatUint(r.SubAppID, 10), r.SubAppID != 0, s.policy.SubAppIDs},
	} {
		if f.set && !f.allow.Allows(f.value) {
			return &Error{Code: CodePolicy, Field: f.field, Message: fmt.Sprintf("%s %q is not allowed by the signing policy", f.field, f.value)}
		}
	}
	if r.Validity > s.policy.MaxValidity {
		return &Error{Code: CodePolicy, Field: "validity", Message: fmt.Sprintf("validity %s exceeds the maximum %s", r.Validity, s.policy.MaxValidity)}
	}
	return nil
}

// ForJob is the request for a signature of job j: its own policy, the
// lifetime asked for.
func ForJob(j *job.Job, validity time.Duration) Request {
	r := Request{Procedure: j.Procedure, StorageRegion: j.StorageRegion, ClassID: j.ClassID,
		SubAppID: j.SubAppID, SourceContext: j.SourceContext, SessionContext: j.SessionContext,
		OneTime: j.OneTimeSignature, JobID: j.ID, Validity: validity}
	if j.Priority != 0 {
		p := j.Priority
		r.TaskPriority = &p
	}
	return r
}

// Sign checks the policy and signs.
func (s *Signer) Sign(r Request) (Response, error) {
	if err := s.Check(r); err != nil {
		return Response{}, err
	}
	validity := r.Validity
	if validity <= 0 {
		validity = s.policy.MaxValidity
	}
	now := s.now()
	p := vod.SignatureParams{
		SecretID: s.secretID, CurrentTimeStamp: now.Unix(), ExpireTime: now.Add(validity).Unix(), Random: vod.NewRandom(),
		Procedure: r.Procedure, StorageRegion: r.StorageRegion, ClassID: r.ClassID, VodSubAppID: r.SubAppID,
		SourceContext: r.SourceContext, SessionContext: r.SessionContext, OneTimeValid: r.OneTime || s.policy.ForceOneTime,
	}
	if r.TaskPriority != nil {
		p.TaskPriority, p.HasTaskPriority = *r.TaskPriority, true
	}
	sig, err := vod.Sign(s.secretKey, p)
	if err != nil {
		return Response{}, &Error{Code: CodeInvalid, Message: err.Error(), cause: err}
	}
	return Response{Signature: sig, ExpireTime: p.ExpireTime}, nil
}

// ServiceReplyPrefix starts the reply subjects the server maps a request
// from another account onto (a service import's responses).
const ServiceReplyPrefix = "_R_."

// Serve registers the signature micro service on nc (queue group, so several
// ingest replicas share the load) and returns it; Stop it on shutdown. It
// signs only for a job jobs says a worker may be processing, with that job's
// policy: whatever else a request names is ignored, so a NATS client that
// may request this subject still cannot choose a policy.
func (s *Signer) Serve(nc *nats.Conn, jobs Jobs, log *slog.Logger) (micro.Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if jobs == nil {
		return nil, errors.New("signer: Serve needs the jobs it signs for")
	}
	handle := micro.HandlerFunc(func(req micro.Request) {
		if !strings.HasPrefix(req.Reply(), "_INBOX") && !strings.HasPrefix(req.Reply(), ServiceReplyPrefix) {
			// A requester chooses the reply subject: answering a KV key or
			// the jobs subject would publish there with ingest's rights. A
			// worker's request comes from its own account, its reply
			// subject mapped by the server (ServiceReplyPrefix).
			log.Warn("signature request refused: its reply subject is not an inbox")
			return
		}
		var r Request
		if err := json.Unmarshal(req.Data(), &r); err != nil {
			_ = req.Error("400", CodeInvalid, nil)
			return
		}
		resp, err := s.signForJob(jobs, r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Code: CodeInvalid, Message: err.Error()}
			}
			// Only the reason is logged: never the signature or the key.
			log.Info("signature refused", "job_id", r.JobID, "code", e.Code, "reason", e.Message)
			_ = req.RespondJSON(Response{Error: e})
			return
		}
		_ = req.RespondJSON(resp)
	})
	// An endpoint is one subscription whose handler runs one request at a
	// time; under load requests would queue behind it while CPUs are free.
	// signHandlers endpoints on the one subject share a queue group, so NATS
	// spreads the requests over them and each answers on its own goroutine
	// (micro's stats and Stop stay exact: each request ends in its handler).
	svc, err := micro.AddService(nc, micro.Config{
		Name: ServiceName, Version: "1.0.0", Description: "vodpipe upload signatures",
		Endpoint: &micro.EndpointConfig{Subject: Subject, Handler: handle},
	})
	if err != nil {
		return nil, err
	}
	for i := 1; i < signHandlers; i++ {
		if err := svc.AddEndpoint(fmt.Sprintf("sign-%d", i), handle, micro.WithEndpointSubject(Subject)); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	// The subscriptions reach the server before Serve returns: a request
	// made right after finds a responder.
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

// jobLookupTimeout bounds the status read behind one NATS signature request.
const jobLookupTimeout = 5 * time.Second

// signForJob signs for the job r names, with the job's own policy.
func (s *Signer) signForJob(jobs Jobs, r Request) (Response, error) {
	if r.JobID == "" {
		return Response{}, &Error{Code: CodeInvalid, Field: "jobId", Message: "jobId is required: signatures over NATS are for jobs"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), jobLookupTimeout)
	defer cancel()
	j, err := jobs.SigningJob(ctx, r.JobID)
	switch {
	case errors.Is(err, job.ErrNotActive):
		return Response{}, &Error{Code: CodeJobNotActive, Field: "jobId", Message: fmt.Sprintf("job %q is not being processed", r.JobID)}
	case err != nil:
		return Response{}, &Error{Code: CodeUnavailable, Message: "the job's status cannot be read"}
	}
	return s.Sign(ForJob(j, r.Validity))
}

// signHandlers is how many signature requests one service instance answers at once.
const signHandlers = 8

// Client asks the signature service over NATS.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewClient returns a client; timeout bounds one request.
func NewClient(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{nc: nc, timeout: timeout}
}

// SignJob returns a fresh signature for job j, with its policy (ForJob):
// the uploader's signer (upload.Signer).
func (c *Client) SignJob(ctx context.Context, j *job.Job) (string, error) {
	return c.Sign(ctx, ForJob(j, 0))
}

// Sign returns a fresh signature for r. Transport failures wrap ErrUnavailable.
func (c *Client) Sign(ctx context.Context, r Request) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, Subject, b)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return "", &Error{Code: CodeInvalid, Message: "service error " + code + ": " + m.Header.Get(micro.ErrorHeader)}
	}
	var resp Response
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return "", fmt.Errorf("%w: bad answer: %v", ErrUnavailable, err)
	}
	if resp.Error != nil {
		return "", resp.Error
	}
	if resp.Signature == "" {
		return "", fmt.Errorf("%w: empty answer", ErrUnavailable)
	}
	return resp.Signature, nil
}
