package vod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// Actions of the client-upload API.
const (
	ActionApply   = "ApplyUploadUGC"
	ActionCommit  = "CommitUploadUGC"
	ActionPrepare = "PrepareUploadUGC"
)

// DefaultEndpoint is VOD's production client-upload endpoint.
const DefaultEndpoint = "https://vod2.qcloud.com"

// BackupEndpoint is the host the official web SDK switches to when the main one fails.
const BackupEndpoint = "https://vod2.dnsv1.com"

// Client calls ApplyUploadUGC and CommitUploadUGC. Each call takes a
// signature: with one-time signatures every attempt needs a fresh one, so the
// client asks its SignatureFunc for one per attempt.
type Client struct {
	endpoint   string
	httpClient *http.Client
	attempts   int
	backoff    time.Duration
	delay      func(failures int) time.Duration // nil: backoff doubled per failure, ± half
	timeout    time.Duration
}

// SignatureFunc returns a signature for one attempt of one call.
type SignatureFunc func(ctx context.Context) (string, error)

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithEndpoint sets the VOD endpoint, e.g. http://127.0.0.1:8190 for vodsim.
func WithEndpoint(u string) ClientOption {
	return func(c *Client) { c.endpoint = strings.TrimRight(u, "/") }
}

// WithHTTPClient sets the HTTP client (for example one that dials vodsim).
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.httpClient = h } }

// WithRetry sets how many attempts a transient failure gets and the first back-off (doubled per attempt).
func WithRetry(attempts int, backoff time.Duration) ClientOption {
	return func(c *Client) { c.attempts, c.backoff = max(attempts, 1), backoff }
}

// WithBackoff sets the delay before the next attempt after n failures
// (n ≥ 1), for a caller with a retry policy of its own; by default it is
// WithRetry's back-off doubled per failure, each ± half at random, so that
// clients that failed together do not retry together.
func WithBackoff(delay func(failures int) time.Duration) ClientOption {
	return func(c *Client) { c.delay = delay }
}

// WithTimeout bounds each attempt.
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// NewClient returns a client for the production endpoint unless options say otherwise.
func NewClient(opts ...ClientOption) *Client {
	c := &Client{endpoint: DefaultEndpoint, httpClient: http.DefaultClient, attempts: 4, backoff: 500 * time.Millisecond, timeout: 15 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

// ApplyRequest opens an upload session, or resumes one with VodSessionKey.
type ApplyRequest struct {
	VideoName     string `json:"videoName,omitempty"`
	VideoType     string `json:"videoType,omitempty"`
	VideoSize     *int64 `json:"videoSize,omitempty"`
	CoverName     string `json:"coverName,omitempty"`
	CoverType     string `json:"coverType,omitempty"`
	CoverSize     *int64 `json:"coverSize,omitempty"`
	VodSessionKey string `json:"vodSessionKey,omitempty"`
	FileID        string `json:"fileId,omitempty"`
}

// StorageObject is where one object of the upload goes.
type StorageObject struct {
	StorageSignature string `json:"storageSignature"`
	StoragePath      string `json:"storagePath"`
}

// Key is the COS object key: the storage path without its leading slash.
func (o *StorageObject) Key() string {
	if o == nil {
		return ""
	}
	return strings.TrimPrefix(o.StoragePath, "/")
}

// TempCertificate is a temporary COS credential.
type TempCertificate struct {
	SecretID    string `json:"secretId"`
	SecretKey   string `json:"secretKey"`
	Token       string `json:"token"`
	ExpiredTime int64  `json:"expiredTime"`
}

// Expires is when the credential stops working.
func (t TempCertificate) Expires() time.Time { return time.Unix(t.ExpiredTime, 0) }

// String hides the secret parts, so a credential never reaches a log.
func (t TempCertificate) String() string {
	return fmt.Sprintf("TempCertificate{expires %s}", t.Expires().UTC().Format(time.RFC3339))
}

// LogValue hides the secret parts from slog.
func (t TempCertificate) LogValue() any { return t.String() }

// ApplyResponse is the data of a successful ApplyUploadUGC.
type ApplyResponse struct {
	Video           *StorageObject  `json:"video"`
	Cover           *StorageObject  `json:"cover"`
	StorageAppID    int64           `json:"storageAppId"`
	StorageBucket   string          `json:"storageBucket"`
	StorageRegion   string          `json:"storageRegion"`
	StorageRegionV5 string          `json:"storageRegionV5"`
	Domain          string          `json:"domain"`
	VodSessionKey   string          `json:"vodSessionKey"`
	TempCertificate TempCertificate `json:"tempCertificate"`
	AppID           int64           `json:"appId"`
	Timestamp       int64           `json:"timestamp"`
}

// Bucket is the COS bucket name: storageBucket-storageAppId.
func (a *ApplyResponse) Bucket() string { return fmt.Sprintf("%s-%d", a.StorageBucket, a.StorageAppID) }

// BucketURL is the COS bucket URL in production form; scheme is "http" or "https".
func (a *ApplyResponse) BucketURL(scheme string) string {
	return fmt.Sprintf("%s://%s.cos.%s.myqcloud.com", scheme, a.Bucket(), a.StorageRegionV5)
}

// CommitResponse is the data of a successful CommitUploadUGC.
type CommitResponse struct {
	Video *struct {
		URL string `json:"url"`
	} `json:"video"`
	Cover *struct {
		URL string `json:"url"`
	} `json:"cover"`
	FileID string `json:"fileId"`
}

// MediaURL is the video URL, or "".
func (c *CommitResponse) MediaURL() string {
	if c.Video == nil {
		return ""
	}
	return c.Video.URL
}

// CoverURL is the cover URL, or "".
func (c *CommitResponse) CoverURL() string {
	if c.Cover == nil {
		return ""
	}
	return c.Cover.URL
}

// Apply calls ApplyUploadUGC. Transient failures are retried, each attempt with a new signature.
func (c *Client) Apply(ctx context.Context, sign SignatureFunc, req ApplyRequest) (*ApplyResponse, error) {
	var out ApplyResponse
	err := c.call(ctx, ActionApply, sign, func(sig string) any {
		return struct {
			Signature string `json:"signature"`
			ApplyRequest
		}{sig, req}
	}, &out)
	if err != nil {
		return nil, err
	}
	if out.VodSessionKey == "" || out.TempCertificate.SecretID == "" || out.StorageBucket == "" || out.StorageRegionV5 == "" {
		return nil, fmt.Errorf("vod %s: %w: answer lacks session, credential or bucket", ActionApply, ErrUnexpectedResponse)
	}
	return &out, nil
}

// Commit calls CommitUploadUGC for a session. Committing twice returns the same FileId.
func (c *Client) Commit(ctx context.Context, sign SignatureFunc, vodSessionKey string) (*CommitResponse, error) {
	var out CommitResponse
	err := c.call(ctx, ActionCommit, sign, func(sig string) any {
		return map[string]string{"signature": sig, "vodSessionKey": vodSessionKey}
	}, &out)
	if err != nil {
		return nil, err
	}
	if out.FileID == "" {
		return nil, fmt.Errorf("vod %s: %w: answer lacks fileId", ActionCommit, ErrUnexpectedResponse)
	}
	return &out, nil
}

// answer is VOD's envelope. Data holds the caller's pointer before
// decoding, so the answer is decoded in one pass straight into it.
type answer struct {
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Data      any    `json:"data"`
}

// nextDelay is the wait after n failures.
func (c *Client) nextDelay(n int) time.Duration {
	if c.delay != nil {
		return c.delay(n)
	}
	d := c.backoff << min(n-1, 20)
	return d/2 + rand.N(d+1) // d ± half
}

func (c *Client) call(ctx context.Context, action string, sign SignatureFunc, body func(sig string) any, out any) error {
	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(c.nextDelay(attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(ctx.Err(), last)
			case <-t.C:
			}
		}
		sig, err := sign(ctx)
		if err != nil {
			return fmt.Errorf("vod %s: get signature: %w", action, err)
		}
		err = c.once(ctx, action, body(sig), out)
		if err == nil {
			return nil
		}
		last = err
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return last
}

func retryable(err error) bool {
	var api *APIError
	if errors.As(err, &api) {
		return api.Retryable()
	}
	return errors.Is(err, ErrTransport)
}

func (c *Client) once(ctx context.Context, action string, body any, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("vod %s: %w", action, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"/v3/index.php?Action="+action, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("vod %s: %w", action, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		// The error text holds the URL only, never the body with the signature.
		return fmt.Errorf("vod %s: %w: %v", action, ErrTransport, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("vod %s: %w: read answer: %v", action, ErrTransport, err)
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("vod %s: %w: HTTP %d", action, ErrTransport, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vod %s: %w: HTTP %d", action, ErrUnexpectedResponse, resp.StatusCode)
	}
	// A fresh out for every attempt: an earlier answer must not leave fields behind.
	reflect.ValueOf(out).Elem().SetZero()
	a := answer{Data: out}
	err = json.Unmarshal(raw, &a)
	if err != nil {
		// The data of a refusal need not have the shape of a success's: the envelope alone decides.
		var e answer
		if json.Unmarshal(raw, &e) == nil && e.Code != CodeOK {
			return &APIError{Action: action, Code: e.Code, Message: e.Message, RequestID: e.RequestID, ServerTime: serverTime(resp)}
		}
		return fmt.Errorf("vod %s: %w: %v", action, ErrUnexpectedResponse, err)
	}
	if a.Code != CodeOK {
		return &APIError{Action: action, Code: a.Code, Message: a.Message, RequestID: a.RequestID, ServerTime: serverTime(resp)}
	}
	return nil
}

// serverTime is the answer's Date, or zero.
func serverTime(resp *http.Response) time.Time {
	t, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// DialOverride returns a transport that connects every request to addr while
// keeping URLs and Host headers as they are, so production bucket URLs and
// signatures reach a local vodsim byte for byte.
// perHost sizes its idle pool as NewTransport does (64 when not given); its
// connections too take request bodies 256 KiB at a time.
func DialOverride(addr string, perHost ...int) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	n := 64
	if len(perHost) > 0 {
		n = perHost[0]
	}
	t := NewTransport(n)
	t.Proxy = nil
	t.DialContext = bulkWrites(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	})
	return t
}

// NewTransport is http.DefaultTransport with room for perHost idle
// connections to one host. The default keeps 2: an uploader with more
// requests in flight to VOD or one COS bucket would close the rest after
// every request and pay a new TCP and TLS handshake for the next. Its
// connections take request bodies 256 KiB at a time (see bulkWrites).
func NewTransport(perHost int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(perHost, 2)
	t.MaxIdleConns = max(t.MaxIdleConns, 2*perHost)
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = bulkWrites(d.DialContext)
	return t
}
