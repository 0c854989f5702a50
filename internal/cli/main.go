// Package cli is the vodpipe command: the operator's command line (demo, up,
// submit, jobs, status, dead letters, sign, config, bench, chaos) and, with a
// role as its first argument, any one service. cmd/vodpipe only calls Main.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vodpipe/vodpipe/internal/service"
)

// Main runs the command named by os.Args until it ends or SIGINT/SIGTERM
// stops it, and exits with its code.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if service.IsRole(args[0]) {
		// One binary plays every service (benchmarks and chaos runs start them so).
		return service.RunRole(ctx, args[0], stderr)
	}
	switch args[0] {
	case "config":
		return runConfigDoc(stdout)
	case "nats-config":
		return runNATSConfig(stdout, stderr)
	case "sign":
		return runSign(args[1:], stdout, stderr, time.Now)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "chaos":
		return runChaos(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "up":
		return runUp(ctx, args[1:], stdout, stderr)
	case "submit":
		return runSubmit(ctx, args[1:], stdout, stderr)
	case "status", "jobs", "pause", "resume", "cancel":
		return runJobCommand(ctx, args[0], args[1:], stdout, stderr)
	case "dead-letters", "dead-letter":
		return runDeadLetters(ctx, args[0], args[1:], stdout, stderr)
	case "version", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "vodpipe: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: vodpipe <command> [flags]

commands:
  demo    run the pipeline end to end on embedded defaults
  up      run the whole system in this process until Ctrl-C
  worker  run one worker configured by the environment (as cmd/worker)
  ingest, notify, vodsim
          run that service configured by the environment (as cmd/ingest, ...)
  chaos   crash, fault and restart everything under load, then check nothing was lost
  bench   measure throughput, memory and resume (P1..P6), write BENCHMARKS.md
  submit  submit files, folders or URLs as jobs (--watch shows progress bars)
  status  show one job          jobs    list jobs
  pause   pause a job           resume  resume a paused job
  cancel  cancel a job
  dead-letters  list dead letters (job, code, reason); dead-letter SEQ shows one with its message;
          dead-letters requeue SEQ runs its job again
  sign    make an upload signature, or decode one with --decode
  config  list every environment variable of every service (Markdown)
  nats-config  print the nats-server accounts and users of ingest, worker, notify and publishers
  version print this binary's version (--output json for a JSON object)
  help    this text
`)
}

// oneLine flattens a (possibly joined) error into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
