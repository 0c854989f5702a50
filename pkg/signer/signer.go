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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

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
	// JobID is for logs and metrics only.
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
}

// Error codes.
const (
	CodePolicy      = "policy_refused"
	CodeInvalid     = "invalid_request"
	CodeUnavailable = "unavailable"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrPolicy means the request is outside the signing policy: permanent.
	ErrPolicy = errors.New("signer: request outside the signing policy")
	// ErrInvalid means the request itself is malformed: permanent.
	ErrInvalid = errors.New("signer: invalid signature request")
	// ErrUnavailable means no signature service answered: transient.
	ErrUnavailable = errors.New("signer: signature service unavailable")
)

// Error implements error.
func (e *Error) Error() string { return "signer: " + e.Code + ": " + e.Message }

// Is maps codes to sentinels.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodePolicy:
		return target == ErrPolicy
	case CodeInvalid:
		return target == ErrInvalid
	case CodeUnavailable:
		return target == ErrUnavailable
	}
	return false
}

// Policy bounds what the service signs. Empty lists allow anything.
type Policy struct {
	Procedures     []string      `envconfig:"SIGN_PROCEDURES" desc:"task flows signatures may name (empty: any)"`
	StorageRegions []string      `envconfig:"SIGN_STORAGE_REGIONS" desc:"storage regions signatures may name (empty: any)"`
	ClassIDs       []int64       `envconfig:"SIGN_CLASS_IDS" desc:"class ids signatures may name (empty: any)"`
	MaxValidity    time.Duration `envconfig:"SIGN_MAX_VALIDITY" default:"2h" desc:"longest signature lifetime handed out"`
	ForceOneTime   bool          `envconfig:"SIGN_FORCE_ONE_TIME" desc:"make every signature one-time"`
}

// Signer makes signatures under a policy. It holds the SecretKey.
type Signer struct {
	secretID  string
	secretKey string
	policy    Policy
	now       func() time.Time
}

// New returns a Signer. secretKey never leaves it.
func New(secretID, secretKey string, p Policy) (*Signer, error) {
	if secretID == "" || secretKey == "" {
		return nil, fmt.Errorf("signer: %w", vod.ErrMissingSecretKey)
	}
	if p.MaxValidity <= 0 {
		p.MaxValidity = 2 * time.Hour
	}
	return &Signer{secretID: secretID, secretKey: secretKey, policy: p, now: time.Now}, nil
}

// Check refuses a request outside the policy, before anything is signed.
func (s *Signer) Check(r Request) error {
	if r.Procedure != "" && len(s.policy.Procedures) > 0 && !slices.Contains(s.policy.Procedures, r.Procedure) {
		return &Error{Code: CodePolicy, Message: fmt.Sprintf("procedure %q is not allowed", r.Procedure)}
	}
	if r.StorageRegion != "" && len(s.policy.StorageRegions) > 0 && !slices.Contains(s.policy.StorageRegions, r.StorageRegion) {
		return &Error{Code: CodePolicy, Message: fmt.Sprintf("storageRegion %q is not allowed", r.StorageRegion)}
	}
	if r.ClassID != 0 && len(s.policy.ClassIDs) > 0 && !slices.Contains(s.policy.ClassIDs, r.ClassID) {
		return &Error{Code: CodePolicy, Message: fmt.Sprintf("classId %d is not allowed", r.ClassID)}
	}
	if r.Validity > s.policy.MaxValidity {
		return &Error{Code: CodePolicy, Message: fmt.Sprintf("validity %s exceeds the maximum %s", r.Validity, s.policy.MaxValidity)}
	}
	return nil
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
		return Response{}, &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return Response{Signature: sig, ExpireTime: p.ExpireTime}, nil
}

// Serve registers the signature micro service on nc (queue group, so several
// ingest replicas share the load) and returns it; Stop it on shutdown.
func (s *Signer) Serve(nc *nats.Conn, log *slog.Logger) (micro.Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	handle := micro.HandlerFunc(func(req micro.Request) {
		var r Request
		if err := json.Unmarshal(req.Data(), &r); err != nil {
			_ = req.Error("400", CodeInvalid, nil)
			return
		}
		resp, err := s.Sign(r)
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
