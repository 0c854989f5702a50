package chaos

// The services of a chaos run: ingest, notify and vodsim as child processes,
// started, crashed, restarted and asked about their state.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/netfault"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// services are vodsim, ingest and notify, each a process of its own, and
// the webhook receiver, in the driving process (it is the application).
type services struct {
	simAddr, ingestURL, notifyURL string
	natsURL, apiKey               string
	callbackAttempts              int
	exe, dir                      string
	js                            jetstream.JetStream // the driver's own connection, for its checks
	nc                            *nats.Conn
	mu                            sync.Mutex // procs and vodEventsBefore: the fault loop restarts services
	procs                         []*serviceProcess
	vodEventsBefore               map[string]int // notify's VOD event counts read before its crashes and replacements
	recv                          *receiver
	// recvProxy stands between notify and the receiver (network faults).
	recvProxy *netfault.Proxy
}

// serviceProcess is one service's process, and how to start it again.
type serviceProcess struct {
	name  string
	exe   string // the vodpipe binary it runs ("": the services' own)
	env   []string
	ready string // the URL that answers 200 once it serves
	*child.Process
}

// TencentClockOffset is how far vodsim's clock (VOD's and COS's) is off
// every other process of the run: minutes, within what VOD tolerates of a
// signature's time (the signatures come 3 minutes from its future), so
// workers sign COS requests in Tencent's time, not their own.
const TencentClockOffset = -3 * time.Minute

// callbackAttempts: vodsim's callbacks get 11 attempts (about 3.5 minutes of
// back-off from 200 ms; waitWebhooks waits for them): a NATS node restart
// can refuse notify's intake for a while, and VOD itself keeps retrying a
// callback far longer than the default 8.
const callbackAttempts = 11

// startServices starts vodsim, ingest and notify as processes of exe (the
// vodpipe binary, re-executed with the role), each on a free loopback port
// with its log in dir, and the webhook receiver subscribed through notify.
//
// The driver's own connection uses driverURL (the nodes themselves); the
// services use servicesURL (through the network's proxies).
//
// ingest and notify run exe, or the previous version's binary in an
// upgrade run (vodsim, standing for Tencent, is always this one's).
func startServices(ctx context.Context, exe, dir, driverURL, servicesURL string, o Options) (_ *services, err error) {
	natsURL := servicesURL
	// s stays set on every return, so a failed start stops what it started
	// (the returns below hand back nil for the caller, not for this defer).
	s := &services{apiKey: "vp_chaos_" + fmt.Sprint(o.Seed), natsURL: natsURL, callbackAttempts: callbackAttempts, exe: exe, dir: dir}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// The driver's own connection to the cluster, for its checks (it
	// reconnects to another node while one is down).
	if s.nc, err = nats.Connect(driverURL, nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = child.FreePort(); err != nil {
			return nil, err
		}
	}
	s.simAddr = child.Loopback(ports[0])
	s.ingestURL, s.notifyURL = "http://"+child.Loopback(ports[1]), "http://"+child.Loopback(ports[2])
	secretID, secretKey := "AKIDchaos0123456789", "chaos-secret-key-0123456789"
	callbackToken := "chaos-callback-token-0123456789"
	webhookSecretKey := strings.Repeat("c4", 32) // hex: one key across notify's restarts
	// On top of the errors and resets, a fifth as many requests are carried
	// out with their answer lost: the client tries again what was done.
	faults := vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: "*", ErrorRate: o.FaultRate / 2, ResetRate: o.FaultRate / 2,
		LostAnswerRate: o.FaultRate / 5}}}
	if o.Bandwidth > 0 {
		faults.Bandwidth = o.Bandwidth
	}
	fj, err := json.Marshal(faults)
	if err != nil {
		return nil, err
	}
	// Every stream and bucket at 3 replicas; the jobs' ack wait (and the workers' lease) short, so a killed worker's job comes back in seconds.
	queueEnv := []string{"VODPIPE_NATS_URL=" + natsURL, "VODPIPE_NATS_REPLICAS=3", "VODPIPE_JOBS_ACK_WAIT=" + o.AckWait.String(),
		"VODPIPE_API_KEYS=chaos:" + s.apiKey}
	start := []struct {
		role, ready string
		env         []string
	}{
		{"vodsim", "http://" + s.simAddr + "/healthz", []string{
			"VODPIPE_VODSIM_ADDR=" + s.simAddr, "VODPIPE_VODSIM_APPS=" + secretID + ":" + secretKey, "VODPIPE_VODSIM_DISCARD=true",
			"VODPIPE_VODSIM_CALLBACK_URL=" + s.notifyURL + "/v1/vod/callback?token=" + callbackToken,
			"VODPIPE_VODSIM_CALLBACK_ATTEMPTS=" + strconv.Itoa(callbackAttempts), "VODPIPE_VODSIM_FAULTS=" + string(fj),
			"VODPIPE_VODSIM_CLOCK_OFFSET=" + TencentClockOffset.String()}},
		{"notify", s.notifyURL + "/readyz", append([]string{"VODPIPE_NOTIFY_HTTP_ADDR=" + child.Loopback(ports[2]),
			"VODPIPE_CALLBACK_TOKEN=" + callbackToken, "VODPIPE_WEBHOOK_SECRET_KEYS=" + webhookSecretKey,
			"VODPIPE_WEBHOOK_ALLOW_PRIVATE=true", "VODPIPE_WEBHOOK_TIMEOUT=5s",
			"VODPIPE_WEBHOOK_RETRY_SCHEDULE=500ms,1s,2s,5s,10s"}, queueEnv...)},
		{"ingest", s.ingestURL + "/readyz", append([]string{"VODPIPE_INGEST_HTTP_ADDR=" + child.Loopback(ports[1]),
			"VODPIPE_SECRET_ID=" + secretID, "VODPIPE_SECRET_KEY=" + secretKey, "VODPIPE_SIGN_MAX_VALIDITY=2h",
			"VODPIPE_BATCH_MAX=1000", "VODPIPE_MAX_BODY=67108864", "VODPIPE_SIGN_RATE=50", "VODPIPE_SIGN_BURST=100",
			"VODPIPE_SIGN_PROCEDURES=*", "VODPIPE_SIGN_STORAGE_REGIONS=*", "VODPIPE_SIGN_CLASS_IDS=*", "VODPIPE_SIGN_SUB_APP_IDS=*"},
			queueEnv...)},
	}
	// vodsim stands for Tencent, which is up before vodpipe is: it starts
	// first and is waited for. The services start at once, as pods of a
	// rollout do: notify, launched before ingest, waits for ingest to
	// create the layout it attaches to.
	for _, st := range start {
		sp := &serviceProcess{name: st.role, env: st.env, ready: st.ready}
		if o.Previous != nil && st.role != "vodsim" {
			sp.exe = o.Previous.Exe
		}
		if err := s.launch(sp); err != nil {
			return nil, err
		}
		s.procs = append(s.procs, sp)
		if st.role == "vodsim" {
			if err := sp.WaitHTTPReady(ctx, sp.ready, time.Minute); err != nil {
				return nil, fmt.Errorf("vodsim: %w\n%s", err, sp.LogTail(2048))
			}
		}
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}

	if s.recv, err = startReceiver(); err != nil {
		return nil, err
	}
	// notify delivers to the receiver through a proxy of the network.
	if s.recvProxy, err = netfault.Listen("webhook-receiver", strings.TrimSuffix(strings.TrimPrefix(s.recv.URL, "http://"), "/hook")); err != nil {
		return nil, err
	}
	secret, err := s.subscribe(ctx, "http://"+s.recvProxy.Addr()+"/hook")
	if err != nil {
		return nil, err
	}
	s.recv.setSecret(secret)
	return s, nil
}

// waitReady waits until every service answers ready, or one exits before it
// is: that one's reason ends the wait. A cluster that has just formed may
// still be electing the leaders of the streams a service opens: a minute, as
// a rollout would wait.
func (s *services) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(s.procs))
	for _, sp := range s.procs {
		go func() {
			if err := sp.WaitHTTPReady(ctx, sp.ready, time.Minute); err != nil {
				errs <- fmt.Errorf("%s: %w\n%s", sp.name, err, sp.LogTail(2048))
				return
			}
			errs <- nil
		}()
	}
	for range s.procs {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// launch starts (or starts again) the process of sp, its output appended to its log.
func (s *services) launch(sp *serviceProcess) error {
	exe := s.exe
	if sp.exe != "" {
		exe = sp.exe
	}
	cmd := exec.Command(exe, sp.name)
	cmd.Env = append(child.EnvWithout("VODPIPE_"), sp.env...)
	p, err := child.Start(cmd, filepath.Join(s.dir, sp.name+".log"))
	if err != nil {
		return fmt.Errorf("start %s: %w", sp.name, err)
	}
	sp.Process = p
	return nil
}

// crash SIGKILLs the service named role and starts it again at once on the
// same address, as a supervisor would.
func (s *services) crash(role string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, err := s.ending(role)
	if err != nil {
		return err
	}
	sp.Kill()
	return s.launch(sp)
}

// replace stops the service named role as a rollout does (SIGTERM, a grace
// period), starts exe in its place on the same address and waits until it
// is ready.
func (s *services) replace(ctx context.Context, role, exe string) error {
	s.mu.Lock()
	sp, err := s.ending(role)
	if err == nil {
		sp.Stop(30 * time.Second)
		sp.exe = exe
		err = s.launch(sp)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := sp.WaitHTTPReady(ctx, sp.ready, time.Minute); err != nil {
		return fmt.Errorf("%s: %w\n%s", role, err, sp.LogTail(2048))
	}
	return nil
}

// ending is the process of the service named role, about to end: notify's
// counters start again at 0 in its next process, so what they say is kept.
// s.mu is held.
func (s *services) ending(role string) (*serviceProcess, error) {
	for _, sp := range s.procs {
		if sp.name != role {
			continue
		}
		if role == "notify" {
			if m, err := s.vodEvents(); err == nil {
				if s.vodEventsBefore == nil {
					s.vodEventsBefore = map[string]int{}
				}
				for k, v := range m {
					s.vodEventsBefore[k] += v
				}
			}
		}
		return sp, nil
	}
	return nil, fmt.Errorf("no service %s", role)
}

// exited names the services whose process ended by itself, with the last
// line of its log.
func (s *services) exited() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.procs {
		if p.Exited() {
			out = append(out, fmt.Sprintf("%s (%v: %s)", p.name, p.Cmd.ProcessState, lastLine(p.LogTail(512))))
		}
	}
	return out
}

// simGet reads one of vodsim's admin lists (GET /vodsim/...) into v.
func (s *services) simGet(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.simAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("vodsim %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vodsim %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("vodsim %s: %w", path, err)
	}
	return nil
}

// simState is what vodsim holds at the end of a run.
type simState struct {
	files      []vodsim.File
	objects    []vodsim.Object
	uploads    []vodsim.UploadView
	events     []vodsim.EventRecord
	traffic    []vodsim.ObjectTraffic
	received   int64          // object body bytes read, bodies cut short included
	faultKinds map[string]int // injected faults by kind
}

// simState reads vodsim's state through its admin API and metrics.
func (s *services) simState() (*simState, error) {
	var st simState
	for _, g := range []struct {
		path string
		v    any
	}{{"/vodsim/files", &st.files}, {"/vodsim/objects", &st.objects}, {"/vodsim/uploads", &st.uploads},
		{"/vodsim/events", &st.events}, {"/vodsim/traffic", &st.traffic}} {
		if err := s.simGet(g.path, g.v); err != nil {
			return nil, err
		}
	}
	fams, err := metricFamilies("http://" + s.simAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	read, ok := fams["vodsim_body_bytes_read_total"] // always exported: its absence is a renamed metric
	if !ok {
		return nil, errors.New("vodsim exports no vodsim_body_bytes_read_total")
	}
	st.received = int64(sumByLabel(read, "")[""])
	st.faultKinds = sumByLabel(fams["vodsim_injected_faults_total"], "kind")
	return &st, nil
}

// vodEvents is notify's count of VOD events by outcome, from its metrics.
func (s *services) vodEvents() (map[string]int, error) {
	fams, err := metricFamilies(s.notifyURL + "/metrics")
	if err != nil {
		return nil, err
	}
	return sumByLabel(fams["vodpipe_notify_vod_events_total"], "outcome"), nil
}

// simEvents is vodsim's list of events (nil when it cannot be read).
func (s *services) simEvents() []vodsim.EventRecord {
	var ev []vodsim.EventRecord
	if s.simGet("/vodsim/events", &ev) != nil {
		return nil
	}
	return ev
}

// close stops the services (SIGTERM, then SIGKILL after a grace) and the receiver.
func (s *services) close() {
	if s.recv != nil {
		s.recv.close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(10 * time.Second)
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.recvProxy != nil {
		_ = s.recvProxy.Close()
	}
}

// subscribe creates the receiver's subscription (job.completed and
// vod.file_uploaded) through notify's
// API, trying again for up to half a minute while notify answers 503: the
// subscriptions bucket of a cluster that has just formed may still be electing
// its leader, which notify reports as unavailable, as any client would see.
func (s *services) subscribe(ctx context.Context, url string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		secret, retry, err := s.subscribeOnce(ctx, url)
		if err == nil || !retry || time.Now().After(deadline) {
			return secret, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// subscribeOnce makes one try; retry says whether the refusal was 503.
func (s *services) subscribeOnce(ctx context.Context, url string) (secret string, retry bool, err error) {
	body, _ := json.Marshal(map[string]any{"url": url, "eventTypes": []string{job.EventCompleted, job.EventVODFileUpload}, "description": "chaos receiver"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.notifyURL+"/v1/subscriptions", bytes.NewReader(body))
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Authorization", "Bearer "+s.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("create subscription: %s: %s", resp.Status, b)
	}
	var sub fanout.Subscription
	if err := json.Unmarshal(b, &sub); err != nil {
		return "", false, err
	}
	if sub.Secret == "" {
		return "", false, errors.New("create subscription: no secret in the answer")
	}
	return sub.Secret, false, nil
}

// waitNotifyIdle waits, within ctx, until every consumer of notify's
// subscriptions has no event left pending or unacknowledged.
func (s *services) waitNotifyIdle(ctx context.Context) error {
	for {
		busy, err := notifyBacklog(ctx, s.js)
		if err == nil && busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("notify still had %d events to deliver when the run's time was up (%v)", busy, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notifyBacklog is the number of events notify's subscription consumers
// have yet to deliver or to have acknowledged.
func notifyBacklog(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(rctx, queue.EventsStream)
	if err != nil {
		return 0, err
	}
	var busy uint64
	l := st.ListConsumers(rctx)
	for info := range l.Info() {
		if strings.HasPrefix(info.Name, "notify_") {
			busy += info.NumPending + uint64(info.NumAckPending)
		}
	}
	return busy, l.Err()
}

// streamReplicas reads back every stream (key-value buckets included) and
// returns their names by replica count.
func (s *services) streamReplicas(ctx context.Context) (map[int][]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	byReplicas := map[int][]string{}
	l := s.js.ListStreams(rctx)
	for info := range l.Info() {
		byReplicas[info.Config.Replicas] = append(byReplicas[info.Config.Replicas], info.Config.Name)
	}
	return byReplicas, l.Err()
}

// inEventsStream reports whether VODPIPE_EVENTS holds a job.completed of
// jobID, to tell a lost event from an undelivered one.
func (s *services) inEventsStream(jobID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, queue.EventsStream)
	if err != nil {
		return "unknown: " + err.Error()
	}
	m, err := st.GetLastMsgForSubject(ctx, queue.EventFilterSubject(job.EventCompleted, jobID))
	if err != nil {
		return "not in " + queue.EventsStream + " (" + err.Error() + ")"
	}
	return fmt.Sprintf("in %s at seq %d, %s", queue.EventsStream, m.Sequence, m.Time.Format(time.RFC3339Nano))
}

// jobStarts reads every job.started event of the run.
func (s *services) jobStarts() ([]jobStart, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.js.OrderedConsumer(ctx, queue.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{queue.EventFilterSubject(job.EventStarted, "")}})
	if err != nil {
		return nil, err
	}
	var out []jobStart
	for {
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		if info.NumPending == 0 {
			return out, nil
		}
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			e, err := job.DecodeEvent(m.Data())
			if err != nil {
				continue
			}
			var d job.StartedData
			if json.Unmarshal(e.Data, &d) == nil {
				out = append(out, jobStart{job: e.JobID, worker: d.Worker, at: e.Time})
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("job.started events pending, none fetched")
		}
	}
}

// simFaults changes vodsim's fault injection in force with f.
func (s *services) simFaults(f func(*vodsim.FaultConfig)) error {
	var cfg vodsim.FaultConfig
	if err := s.simGet("/vodsim/faults", &cfg); err != nil {
		return err
	}
	f(&cfg)
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+s.simAddr+"/vodsim/faults", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("vodsim faults: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("vodsim faults: %s", resp.Status)
	}
	return nil
}

// simStorageRefusals counts vodsim's answers of a full store (507 InsufficientStorage).
func (s *services) simStorageRefusals() (int, error) {
	fams, err := metricFamilies("http://" + s.simAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	return sumByLabel(fams["vodsim_requests_total"], "code")["InsufficientStorage"], nil
}
