package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/chaos"
)

// The chaos run starts its NATS nodes as processes of this very binary;
// such a process becomes a node here, before main (or a test's TestMain)
// looks at its arguments.
func init() { chaos.MaybeRunNATSNode() }

// runChaos runs issue 10's chaos run and exits non-zero on any violation.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("chaos", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var o chaos.Options
	fs.IntVar(&o.Jobs, "jobs", 200, "number of jobs")
	fs.Int64Var(&o.MinSize, "min-size", 1<<10, "smallest job in bytes")
	fs.Int64Var(&o.MaxSize, "max-size", 0, "largest job in bytes (default 64 MiB; 1 MiB in a soak)")
	fs.DurationVar(&o.Duration, "duration", 0, "limit of the whole run (default 10m, plus the soak's length)")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of sizes, mix and victims (0: from the clock)")
	fs.DurationVar(&o.KillEvery, "kill-every", 3*time.Second, "pause between worker SIGKILLs")
	fs.Int64Var(&o.Bandwidth, "bandwidth", 32<<20, "bytes per second vodsim reads, all uploads together (negative: unlimited)")
	fs.Float64Var(&o.FaultRate, "fault-rate", 0.05, "fraction of vodsim requests failed (half errors, half resets)")
	fs.StringVar(&o.Redis, "redis", "sentinel", "Redis of the run: sentinel (the primary is killed mid-run) or cluster (the jobs' slots move mid-run)")
	fs.DurationVar(&o.Soak, "soak", 0, "run a soak this long instead: jobs all along, faults repeating, services' goroutines, heap, open files, RSS, JetStream consumers and job latency sampled (fails on growth or drift)")
	fs.StringVar(&o.SoakPlot, "soak-plot", "chaos-soak.svg", "where the soak's plot of every sampled series goes")
	upgrade := fs.Bool("upgrade", false, "run a rolling upgrade instead: build the previous version (the commit CHANGELOG.md names, git worktree), "+
		"start every service on it and replace each with this build while jobs flow, then back")
	from := fs.String("from", "", "with --upgrade: the released version to start from (default: the one before this)")
	fs.StringVar(&o.Dir, "dir", "", "keep the run's files (logs of nodes, workers, Redis) in this folder")
	quiet := fs.Bool("quiet", false, "print only the summary")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.MinSize <= 0 || (o.MaxSize != 0 && o.MaxSize < o.MinSize) || o.Jobs <= 0 {
		fmt.Fprintln(stderr, "chaos: need --jobs > 0 and 0 < --min-size <= --max-size")
		return 2
	}
	if *upgrade && o.Soak > 0 {
		fmt.Fprintln(stderr, "chaos: --upgrade and --soak are separate runs")
		return 2
	}
	if !*quiet {
		o.Log = stdout
	}
	if *upgrade {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		logf := func(format string, args ...any) {
			if o.Log != nil {
				fmt.Fprintf(o.Log, format+"\n", args...)
			}
		}
		prev, err := chaos.BuildPrevious(ctx, ".", filepath.Join(cache, "vodpipe", "previous"), *from, logf)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %s\n", oneLine(err))
			return 1
		}
		o.Previous = &prev
	}
	// The run's own Redis probes dial nodes it has just killed: go-redis
	// would print each failed dial on stderr.
	redis.SetLogger(discardRedisLog{})
	rep, err := chaos.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %s\n", oneLine(err))
		return 1
	}
	rep.Print(stdout)
	if len(rep.Violations) > 0 {
		return 1
	}
	return 0
}

// discardRedisLog drops go-redis's own log lines.
type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}
