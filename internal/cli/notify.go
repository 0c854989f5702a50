package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/pkg/client"
)

// notifyFlags are the flags of the commands that talk to notify.
type notifyFlags struct {
	api    apiFlags
	output *string
}

func (n *notifyFlags) register(fs *pflag.FlagSet, defOutput string) {
	n.api.register(fs)
	// notify's URL, under its own name: --api stays ingest's.
	fs.Lookup("api").Usage = "unused by this command: see --notify"
	fs.StringVar(&n.api.url, "notify", envOr("VODPIPE_NOTIFY_URL", "http://127.0.0.1:8081"), "notify's URL (VODPIPE_NOTIFY_URL)")
	n.output = fs.StringP("output", "o", defOutput, "table or json")
}

// runSubscriptions is `vodpipe subscriptions [list] | create URL | delete ID
// | attempts ID | replay ID --since T [--until T]`.
func runSubscriptions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("subscriptions", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf notifyFlags
	nf.register(fs, "table")
	types := fs.StringSlice("type", nil, "create: event types or patterns (job.completed, vod.*), repeated or comma-separated; default every type")
	jobID := fs.String("job", "", "create: only this job's events")
	desc := fs.String("description", "", "create: a note for people")
	limit := fs.Int("limit", 50, "attempts: how many, newest first")
	since := fs.String("since", "", "replay: from this time (RFC 3339, or a duration back from now such as 2h)")
	until := fs.String("until", "", "replay: up to this time (default now)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !outputOK(stderr, "subscriptions", *nf.output) {
		return 2
	}
	c, ok := nf.api.client(stderr)
	if !ok {
		return 2
	}
	sub, rest := "list", fs.Args()
	if len(rest) > 0 {
		sub, rest = rest[0], rest[1:]
	}
	need := map[string]int{"list": 0, "create": 1, "delete": 1, "attempts": 1, "replay": 1}
	if n, known := need[sub]; !known || len(rest) != n {
		fmt.Fprintln(stderr, "usage: vodpipe subscriptions [list] | create URL | delete ID | attempts ID | replay ID --since T [flags]")
		return 2
	}
	var (
		out any
		err error
	)
	switch sub {
	case "list":
		var subs []client.Subscription
		if subs, err = c.Subscriptions(ctx); err == nil && *nf.output == "table" {
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tEVENT TYPES\tJOB\tURL")
			for _, s := range subs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status, strings.Join(s.EventTypes, ","), orDash(s.JobID), oneLineText(s.URL, 120))
			}
			_ = tw.Flush()
			return 0
		}
		out = struct {
			Subscriptions []client.Subscription `json:"subscriptions"`
		}{append([]client.Subscription{}, subs...)}
	case "create":
		var s client.Subscription
		if s, err = c.CreateSubscription(ctx, client.SubscriptionRequest{URL: rest[0], EventTypes: *types, JobID: *jobID, Description: *desc}); err == nil && *nf.output == "table" {
			fmt.Fprintf(stdout, "subscription %s created; its signing secret, shown this once:\n%s\n", s.ID, s.Secret)
			return 0
		}
		out = s
	case "delete":
		if err = c.DeleteSubscription(ctx, rest[0]); err == nil {
			fmt.Fprintf(stdout, "subscription %s deleted\n", rest[0])
			return 0
		}
	case "attempts":
		var as []client.Attempt
		if as, err = c.Attempts(ctx, rest[0], *limit); err == nil && *nf.output == "table" {
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tEVENT\tTYPE\tATTEMPT\tOUTCOME\tSTATUS\tMS\tERROR")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%.0f\t%s\n", a.Time.UTC().Format(time.RFC3339), a.EventID, a.EventType, a.Attempt,
					a.Outcome, a.Status, a.DurationMS, orDash(oneLineText(a.Error, 120)))
			}
			_ = tw.Flush()
			return 0
		}
		out = struct {
			Attempts []client.Attempt `json:"attempts"`
		}{append([]client.Attempt{}, as...)}
	case "replay":
		from, perr := parseWhen(*since)
		to := time.Time{}
		if perr == nil && *until != "" {
			to, perr = parseWhen(*until)
		}
		if perr != nil || *since == "" {
			fmt.Fprintln(stderr, "vodpipe subscriptions replay: --since is a time (RFC 3339) or a duration back from now, such as 2h; --until too")
			return 2
		}
		var r client.Replay
		if r, err = c.ReplaySubscription(ctx, rest[0], from, to); err == nil && *nf.output == "table" {
			fmt.Fprintf(stdout, "replay %s started: at most %d events from %s to %s\n", r.ID, r.Pending,
				r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339))
			return 0
		}
		out = r
	}
	if err != nil {
		return apiFailed(stderr, "vodpipe subscriptions "+sub+":", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	return 0
}

// parseWhen reads a time: RFC 3339, or a duration back from now.
func parseWhen(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

// runEvents is `vodpipe events`: notify's event stream, one JSON event per
// line, until Ctrl-C (it reconnects after the last event seen when the
// connection breaks).
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("events", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var api apiFlags
	api.register(fs)
	fs.Lookup("api").Usage = "unused by this command: see --notify"
	fs.StringVar(&api.url, "notify", envOr("VODPIPE_NOTIFY_URL", "http://127.0.0.1:8081"), "notify's URL (VODPIPE_NOTIFY_URL)")
	types := fs.StringSlice("type", nil, "event types or patterns (job.*, vod.file_uploaded), repeated or comma-separated; default every type")
	after := fs.String("after", "", "start after this event id (its stream sequence; the last one printed), instead of from now")
	fs.BoolP("follow", "f", true, "follow the stream until Ctrl-C (always: the stream is live)")
	idle := fs.Duration("events-idle", client.DefaultEventStreamIdle, eventsIdleUsage)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !eventsIdleOK(stderr, "vodpipe events", *idle) {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vodpipe events: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	c, ok := api.client(stderr)
	if !ok {
		return 2
	}
	c = c.WithEventStreamIdle(*idle)
	es, err := c.Events(ctx, *types, *after)
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe events:", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	for e := range followEvents(ctx, "vodpipe events", c, es, *types, stderr) {
		if err := enc.Encode(e); err != nil {
			return 1
		}
	}
	return 0
}
