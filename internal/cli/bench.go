package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/bench"
)

// runBench measures P1..P6 side by side (internal/bench), prints the table
// and, with --write, records it with the date, machine and command.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "run only these measurements, comma-separated (e.g. P1,P3); default all of "+strings.Join(bench.IDs, ","))
	quick := fs.Bool("quick", false, "small sizes: a smoke run of seconds whose figures mean little")
	write := fs.String("write", "", "also write the results as Markdown to this file (e.g. BENCHMARKS.md)")
	dir := fs.String("dir", "", "folder for sources and data (default: a temporary one, removed at the end)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (P2 and P3 run inside it) to this file; P3 then measures no host reference, whose work the profile would hold")
	memProfile := fs.String("memprofile", "", "write an allocation profile of this process (P2 and P3 run inside it) to this file at the end")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vodpipe bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var ids []string
	for id := range strings.SplitSeq(*only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			// Ids are taken in any case: p3b is P3b.
			if i := slices.IndexFunc(bench.IDs, func(known string) bool { return strings.EqualFold(known, id) }); i >= 0 {
				id = bench.IDs[i]
			}
			ids = append(ids, id)
		}
	}
	if err := bench.Check(ids); err != nil {
		fmt.Fprintln(stderr, "vodpipe bench:", err)
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe bench: cannot find this binary to start workers:", err)
		return 1
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe bench:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			fmt.Fprintln(stderr, "vodpipe bench:", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(stderr, "vodpipe bench: CPU profile:", err)
			}
		}()
	}
	if *memProfile != "" {
		defer func() {
			if err := writeAllocProfile(*memProfile); err != nil {
				fmt.Fprintln(stderr, "vodpipe bench: allocation profile:", err)
			}
		}()
	}
	started := time.Now()
	results, err := bench.Run(ctx, bench.Options{Only: ids, Quick: *quick, Worker: []string{exe, "worker"}, Progress: stderr, Dir: *dir,
		NoHostReference: *cpuProfile != ""})
	wall := time.Since(started).Round(time.Second)
	code := 0
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe bench:", oneLine(err))
		code = 1
	}
	if len(results) == 0 {
		return 1
	}
	fmt.Fprintln(stdout)
	printBenchTable(stdout, results)
	fmt.Fprintf(stdout, "\nwall time %s\n", wall)
	if *write != "" {
		plot := ""
		if svg := p7Plot(results); svg != "" {
			path := strings.TrimSuffix(*write, filepath.Ext(*write)) + "-p7.svg"
			if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
				fmt.Fprintln(stderr, "vodpipe bench:", err)
				return 1
			}
			plot = filepath.Base(path)
		}
		doc := benchMarkdown(results, bench.ReadMachine(), benchCommand(args), started, wall, *quick, plot)
		if err := os.WriteFile(*write, []byte(doc), 0o644); err != nil {
			fmt.Fprintln(stderr, "vodpipe bench:", err)
			return 1
		}
		fmt.Fprintln(stdout, "wrote", *write)
	}
	return code
}

// writeAllocProfile writes every allocation sampled since the start
// (`go tool pprof -sample_index=alloc_space` or alloc_objects reads it).
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

var benchColumns = []string{"id", "what", "measured", "baseline", "ratio", "target", "ok?"}

func benchCells(r bench.Result) []string {
	ratio := "—"
	if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
		ratio = fmt.Sprintf("%.3f", r.Ratio)
	}
	ok := r.Verdict.String()
	if r.Err != nil {
		ok += ": " + oneLine(r.Err)
	}
	return []string{r.ID, r.What, r.Measured, r.Baseline, ratio, r.Target, ok}
}

func printBenchTable(w io.Writer, results []bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(benchColumns, "\t")))
	for _, r := range results {
		cells := benchCells(r)
		if len(cells[6]) > 200 {
			cells[6] = cells[6][:200] + "…"
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
}

// benchCommand is the command line as the operator typed it, as near as it can be told.
func benchCommand(args []string) string {
	prog := "vodpipe"
	if strings.Contains(os.Args[0], "go-build") { // a binary of `go run`
		prog = "go run ./cmd/vodpipe"
	}
	parts := []string{prog, "bench"}
	for _, a := range args {
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// benchMarkdown is BENCHMARKS.md: when, where and how, the table, and how each figure was measured.
// plot, when set, is the file of P7's plot, shown under the table.
func benchMarkdown(results []bench.Result, m bench.Machine, command string, at time.Time, wall time.Duration, quick bool, plot string) string {
	var b strings.Builder
	b.WriteString("# vodpipe benchmarks\n\n")
	b.WriteString("Written by `vodpipe bench` (internal/cli/bench.go, internal/bench): every figure measured side by side " +
		"in one run, each against a baseline measured in that same run, on loopback.\n\n")
	if quick {
		b.WriteString("**Quick run (`--quick`): small sizes for a smoke test; these figures are not the measurements.**\n\n")
	}
	fmt.Fprintf(&b, "- Date: %s\n", at.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", m)
	fmt.Fprintf(&b, "- Command: `%s` (wall time %s)\n\n", command, wall)
	b.WriteString("| " + strings.Join(benchColumns, " | ") + " |\n")
	b.WriteString(strings.Repeat("| --- ", len(benchColumns)) + "|\n")
	for _, r := range results {
		cells := benchCells(r)
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if plot != "" {
		fmt.Fprintf(&b, "\n![P7: listing latency against jobs stored; a flat line is the goal](%s)\n", plot)
	}
	b.WriteString("\n## How each figure was measured\n\n")
	seen := map[string]bool{}
	for _, r := range results {
		if r.Setup == "" || seen[r.Setup] {
			continue
		}
		seen[r.Setup] = true
		id := r.ID
		// P6 ×1, ×2, ×4 share one setup, and so do P7 10k, 100k, 1M.
		if head, tail, ok := strings.Cut(r.ID, " "); ok && (strings.HasPrefix(tail, "×") || tail[0] >= '0' && tail[0] <= '9') {
			id = head
		}
		fmt.Fprintf(&b, "- **%s**: %s.\n", id, r.Setup)
	}
	b.WriteString("\n`make bench` runs `go run ./cmd/vodpipe bench --write BENCHMARKS.md`, then the Go benchmarks " +
		"(`go test -run '^$' -bench . -benchmem ./...`: BenchmarkUpload1GiB in pkg/vodsim, " +
		"BenchmarkWorkerVsRawSDK1GiB in internal/worker). `vodpipe bench --only P1,P3` runs a subset; `--quick` a smoke run.\n")
	return b.String()
}
