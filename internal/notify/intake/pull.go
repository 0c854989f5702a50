package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Cloud API 3.0 facts of VOD's reliable callback.
const (
	cloudService = "vod"
	cloudVersion = "2018-07-17"
	// maxPullWait covers PullEvents' long poll (up to 5 s) with room to spare.
	maxPullWait = 15
)

// puller calls VOD's PullEvents and ConfirmEvents through Tencent Cloud's
// own SDK (its generic CommonRequest), signed with the pull key pair.
type puller struct {
	client   *common.Client
	subAppID uint64
	interval time.Duration
}

func newPuller(c PullConfig) (*puller, error) {
	if c.PullAPIKeyFile == "" {
		return nil, errors.New("notify: VODPIPE_PULL_API_ID is set but VODPIPE_PULL_API_KEY_FILE is not")
	}
	key, err := config.ReadSecretFile("PULL_API_KEY_FILE", c.PullAPIKeyFile)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	u, err := url.Parse(c.PullEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("notify: VODPIPE_PULL_ENDPOINT %q is not an http(s) URL of a host", c.PullEndpoint)
	}
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Scheme = strings.ToUpper(u.Scheme)
	cpf.HttpProfile.Endpoint = u.Host
	cpf.HttpProfile.ReqMethod = http.MethodPost
	cpf.HttpProfile.ReqTimeout = maxPullWait
	cpf.SignMethod = "TC3-HMAC-SHA256"
	var transport http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if c.PullDialAddr != "" {
		transport = vod.DialOverride(c.PullDialAddr)
	}
	cl := common.NewCommonClient(common.NewCredential(c.PullAPIID, key), c.PullRegion, cpf).WithHttpTransport(transport)
	return &puller{client: cl, subAppID: c.PullSubAppID, interval: c.PullInterval}, nil
}

func (p *puller) call(ctx context.Context, action string, params map[string]any, out any) error {
	if p.subAppID != 0 {
		params["SubAppId"] = p.subAppID
	}
	req := tchttp.NewCommonRequest(cloudService, cloudVersion, action)
	if err := req.SetActionParameters(params); err != nil {
		return err
	}
	req.SetContext(ctx)
	resp := tchttp.NewCommonResponse()
	if err := p.client.Send(req, resp); err != nil {
		return fmt.Errorf("notify: %s: %w", action, err)
	}
	if err := json.Unmarshal(resp.GetBody(), out); err != nil {
		return fmt.Errorf("notify: %s answer: %w", action, err)
	}
	return nil
}

func (p *puller) pull(ctx context.Context) ([]vod.Event, error) {
	var a vod.PullEventsResponse
	if err := p.call(ctx, "PullEvents", map[string]any{}, &a); err != nil {
		return nil, err
	}
	if a.Response.Error != nil {
		return nil, a.Response.Error
	}
	return a.Response.EventSet, nil
}

func (p *puller) confirm(ctx context.Context, handles []string) error {
	var a vod.ConfirmEventsResponse
	if err := p.call(ctx, "ConfirmEvents", map[string]any{"EventHandles": handles}, &a); err != nil {
		return err
	}
	if a.Response.Error != nil {
		return a.Response.Error
	}
	return nil
}

// RunPull polls VOD until ctx ends: pull, publish each event, confirm the
// ones that are published (or can never be). An event that failed to
// publish stays unconfirmed, and VOD hands it out again.
func (in *Intake) RunPull(ctx context.Context) {
	backoff := retry.Restart.New()
	for ctx.Err() == nil {
		evs, err := in.puller.pull(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			in.metrics.pulls.WithLabelValues("PullEvents", "error").Inc()
			d := backoff.NextBackOff()
			in.log.Warn("PullEvents failed", "err", err, "retry_in", d)
			retry.Sleep(ctx, d)
			continue
		}
		backoff.Reset()
		in.metrics.pulls.WithLabelValues("PullEvents", "ok").Inc()
		if len(evs) == 0 {
			retry.Sleep(ctx, in.puller.interval)
			continue
		}
		handles := in.ingestPulled(ctx, evs)
		if len(handles) > 0 {
			if err := in.puller.confirm(ctx, handles); err != nil {
				// The events come back and are recognised as repeats.
				in.metrics.pulls.WithLabelValues("ConfirmEvents", "error").Inc()
				in.log.Warn("ConfirmEvents failed", "err", err)
			} else {
				in.metrics.pulls.WithLabelValues("ConfirmEvents", "ok").Inc()
			}
		}
		if len(handles) < len(evs) {
			retry.Sleep(ctx, in.puller.interval)
		}
	}
}

// ingestPulled publishes pulled events concurrently (each may wait for its
// job mapping) and returns the handles to confirm.
func (in *Intake) ingestPulled(ctx context.Context, evs []vod.Event) []string {
	var mu sync.Mutex
	var handles []string
	var wg sync.WaitGroup
	for _, e := range evs {
		if e.EventHandle == "" {
			continue
		}
		wg.Go(func() {
			ok := in.ingestPulledOne(ctx, e)
			if ok {
				mu.Lock()
				handles = append(handles, e.EventHandle)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return handles
}

// ingestPulledOne reports whether the event may be confirmed.
func (in *Intake) ingestPulledOne(ctx context.Context, e vod.Event) bool {
	// Validated as a callback body is, so both modes accept the same events.
	b, err := json.Marshal(e)
	if err != nil {
		return false
	}
	ev, err := vod.ParseEvent(b)
	if err == nil {
		_, err = in.ingestVODEvent(ctx, ev, "pull")
	} else {
		in.metrics.vodEvents.WithLabelValues("pull", vodInvalid).Inc()
		err = fmt.Errorf("%w: %v", errVODEventInvalid, err)
	}
	if errors.Is(err, errVODEventInvalid) {
		// It will never publish; confirming it stops it coming back.
		in.log.Error("confirming a VOD event that cannot be published", "handle", e.EventHandle, "type", e.EventType, "err", err)
		return true
	}
	return err == nil
}
