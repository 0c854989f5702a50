// Package cli is the vodpipe command: the operator's command line (demo, up,
// submit, jobs, status, dead letters, sign, config, bench, chaos) and, with a
// role as its first argument, any one service. cmd/vodpipe only calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/gctune"
	"github.com/vodpipe/vodpipe/internal/service"
)

// Main runs the command named by os.Args until it ends or SIGINT/SIGTERM
// stops it, and exits with its code.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runServing(ctx, os.Args[1:], os.Stdout, os.Stderr, func(fixed bool) {
		if fixed {
			gctune.Fix(os.Getenv)
			return
		}
		gctune.Tune(os.Getenv)
	})
	stop()
	os.Exit(code)
}

// run runs the command args names (cobra: commands, --help, completion)
// and returns its exit code (documented in docs/operations.md, "The command
// line"): 0 done, 1 failed, 2 a usage error (an unknown command or flag, a
// missing argument), 3 not found (dead-letter, status of an unknown job).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runServing(ctx, args, stdout, stderr, nil)
}

// runServing is run, calling serving (when not nil) first in the commands
// that run vodpipe's services in this process (a role, demo, up, bench,
// chaos): Main tunes the GC for them there (gctune.Tune), or fixes its
// target for the bench, whose figures are measured at one (fixed true,
// gctune.Fix). The client
// commands keep Go's default: their live heap is what they follow (a key
// per job for `submit --watch`), and at the services' target the heap
// could grow to five times that.
func runServing(ctx context.Context, args []string, stdout, stderr io.Writer, serving func(fixed bool)) int {
	code := 0
	root := &cobra.Command{
		Use:   "vodpipe",
		Short: "vodpipe: bulk uploads into Tencent Cloud VOD through a queue of jobs",
		Long: "vodpipe runs the upload pipeline (demo, up, one service by its role), submits and follows jobs, " +
			"and measures and tortures the system (bench, chaos). Flags go anywhere among the arguments; " +
			"every command has --help.",
		SilenceUsage: true, SilenceErrors: true,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, a []string) error {
			if len(a) > 0 {
				fmt.Fprintf(stderr, "vodpipe: unknown command %q\n", a[0])
			}
			usage(stderr)
			code = 2
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	// A command with flags of its own parses them itself (pflag: anywhere,
	// --help exits 0), so cobra passes its arguments through.
	own := func(use, short string, f func(args []string) int) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, a []string) error { code = f(a); return nil }}
	}
	plain := func(use, short string, f func() int) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { code = f(); return nil }}
	}
	// servesAt marks a command that runs services: serving first, with
	// the GC target fixed or tuned; serves tunes it.
	servesAt := func(fixed bool, c *cobra.Command) *cobra.Command {
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, a []string) error {
			if serving != nil {
				serving(fixed)
			}
			return run(cmd, a)
		}
		return c
	}
	serves := func(c *cobra.Command) *cobra.Command { return servesAt(false, c) }
	for _, r := range []struct{ name, what string }{{"ingest", "jobs API and signature service"}, {"worker", "one worker"},
		{"notify", "webhooks, event stream and VOD's callback"}, {"vodsim", "the VOD and COS emulator"}} {
		// One binary plays every service (benchmarks and chaos runs start them so).
		root.AddCommand(serves(plain(r.name, "run "+r.what+", configured by the environment (as cmd/"+r.name+")",
			func() int { return service.RunRole(ctx, r.name, stderr) })))
	}
	jobCmd := func(name, short string) *cobra.Command {
		return own(name+" ID", short, func(a []string) int { return runJobCommand(ctx, name, a, stdout, stderr) })
	}
	root.AddCommand(
		serves(own("demo", "run the pipeline end to end on embedded defaults", func(a []string) int { return runDemo(ctx, a, stdout, stderr) })),
		serves(own("up", "run the whole system in this process until Ctrl-C", func(a []string) int { return runUp(ctx, a, stdout, stderr) })),
		own("submit SOURCE...", "submit files, folders or URLs as jobs (--watch shows progress bars)",
			func(a []string) int { return runSubmit(ctx, a, stdout, stderr) }),
		jobCmd("status", "show one job"),
		own("jobs", "count jobs by state and list them a page at a time", func(a []string) int { return runJobCommand(ctx, "jobs", a, stdout, stderr) }),
		jobCmd("pause", "pause a job"),
		jobCmd("resume", "resume a paused job"),
		jobCmd("cancel", "cancel a job"),
		own("dead-letters", "list dead letters (job, code, reason); dead-letters requeue SEQ runs one's job again",
			func(a []string) int { return runDeadLetters(ctx, "dead-letters", a, stdout, stderr) }),
		own("dead-letter SEQ", "show one dead letter with its message", func(a []string) int { return runDeadLetters(ctx, "dead-letter", a, stdout, stderr) }),
		own("sign", "make an upload signature, or decode one with --decode", func(a []string) int { return runSign(a, stdout, stderr, time.Now) }),
		servesAt(true, own("bench", "measure throughput, memory and resume (P1..P7), write BENCHMARKS.md", func(a []string) int { return runBench(ctx, a, stdout, stderr) })),
		serves(own("chaos", "crash, fault and restart everything under load, then check nothing was lost", func(a []string) int { return runChaos(ctx, a, stdout, stderr) })),
		own("version", "print this binary's version (--output json for a JSON object)", func(a []string) int { return runVersion(a, stdout, stderr) }),
		own("subscriptions", "webhook subscriptions: list, create URL, delete ID, attempts ID, replay ID --since T",
			func(a []string) int { return runSubscriptions(ctx, a, stdout, stderr) }),
		own("events", "follow notify's event stream, one JSON event per line (--type job.*, --after ID)",
			func(a []string) int { return runEvents(ctx, a, stdout, stderr) }),
		plain("config", "list every environment variable of every service (Markdown)", func() int { return runConfigDoc(stdout) }),
		plain("nats-config", "print the nats-server accounts and users of ingest, worker, notify and publishers",
			func() int { return runNATSConfig(stdout, stderr) }),
	)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "vodpipe:", err)
		return 2
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: vodpipe <command> [flags] (flags anywhere; vodpipe <command> --help)

commands:
  demo    run the pipeline end to end on embedded defaults
  up      run the whole system in this process until Ctrl-C
  worker  run one worker configured by the environment (as cmd/worker)
  ingest, notify, vodsim
          run that service configured by the environment (as cmd/ingest, ...)
  chaos   crash, fault and restart everything under load, then check nothing was lost
  bench   measure throughput, memory and resume (P1..P7), write BENCHMARKS.md
  submit  submit files, folders or URLs as jobs (--watch shows progress bars)
  status  show one job          jobs    list jobs
  pause   pause a job           resume  resume a paused job
  cancel  cancel a job
  dead-letters  list dead letters (job, code, reason); dead-letter SEQ shows one with its message;
          dead-letters requeue SEQ runs its job again
  sign    make an upload signature, or decode one with --decode
  config  list every environment variable of every service (Markdown)
  nats-config  print the nats-server accounts and users of ingest, worker, notify and publishers
  subscriptions  webhook subscriptions: list, create URL, delete ID, attempts ID, replay ID --since T
  events  follow notify's event stream, one JSON event per line
  version print this binary's version (--output json for a JSON object)
  completion  shell completion (bash, zsh, fish, powershell)
  help    this text, or a command's
`)
}

// oneLine flattens a (possibly joined) error into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// parseFlags parses a command's flags, anywhere among its arguments
// (pflag): ok false ends the command with code, 0 after --help (the
// usage printed), 2 for a flag it does not know or cannot read.
func parseFlags(fs *pflag.FlagSet, args []string) (code int, ok bool) {
	switch err := fs.Parse(args); {
	case err == nil:
		return 0, true
	case errors.Is(err, pflag.ErrHelp):
		return 0, false
	default:
		return 2, false
	}
}
