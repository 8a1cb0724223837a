package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/loadtest"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load harnesses (docs/BENCHMARKS.md)",
	}
	cmd.AddCommand(newBenchPipelineCmd())
	return cmd
}

func newBenchPipelineCmd() *cobra.Command {
	var (
		cfg      loadtest.Config
		files    []string
		runs     int
		verbose  bool
		noBase   bool
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Measure the whole pipeline: `rcwatch run` fed by the replay server, beside a plain JetStream publish",
		Long: `Runs this binary as ` + "`rcwatch run`" + ` (embedded NATS with file storage in a temporary directory, the
default pack, enrichment off) fed by an in-process replay server serving --events distinct events (the
fixtures looped with a distinct meta.id each), --runs times. Each run first measures a plain JetStream
async publish of the same bytes to a fresh embedded server (file storage) on this machine, then prints
stored and evaluated events/s (first stored event to the last stored / to the rules consumer's ack
floor reaching it), their ratio to that baseline, the process's CPU per event and resident memory, and
every evaluator pause over --stall while events waited. With --rate and --duration it paces the replay
(memory over time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this executable: %w", err)
			}
			cfg.Binary = bin
			if len(files) == 0 {
				files, _ = filepath.Glob("testdata/fixtures/recentchange.*.jsonl")
				if len(files) == 0 {
					return errors.New("no --events-file given and no testdata/fixtures/recentchange.*.jsonl here")
				}
			}
			if cfg.Events, err = ingest.LoadEvents(files...); err != nil {
				return err
			}
			if duration > 0 && cfg.Rate > 0 {
				cfg.N = int(cfg.Rate * duration.Seconds())
			}
			cfg.Baseline = !noBase
			if verbose {
				cfg.Stderr = os.Stderr
			}
			return benchPipeline(cmd, cfg, runs)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&cfg.N, "events", 200_000, "distinct events per run")
	fs.IntVar(&runs, "runs", 1, "runs")
	fs.Float64Var(&cfg.Rate, "rate", 0, "events/s of the replay (0: as fast as possible)")
	fs.DurationVar(&duration, "duration", 0, "with --rate: run this long (sets --events)")
	fs.IntVar(&cfg.Workers, "workers", 0, "evaluator workers (0: rcwatch run's default)")
	fs.IntVar(&cfg.RulesCopies, "rules-copies", 1, "load the default pack this many times (rule ids renamed)")
	fs.DurationVar(&cfg.Stall, "stall", 2*time.Second, "report evaluator pauses longer than this while events wait")
	fs.DurationVar(&cfg.MemEvery, "mem-every", 10*time.Second, "sample resident memory this often")
	fs.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "give up on a run after this long")
	fs.StringSliceVar(&files, "events-file", nil, "recorded events (.jsonl, .sse, .json); default testdata/fixtures/recentchange.*.jsonl")
	fs.BoolVar(&noBase, "no-baseline", false, "skip the plain publish baseline")
	fs.BoolVar(&verbose, "verbose", false, "show rcwatch run's log (warnings and errors)")
	fs.StringArrayVar(&cfg.Args, "run-arg", nil, "extra flag for rcwatch run (repeatable)")
	fs.StringArrayVar(&cfg.Env, "run-env", nil, "extra environment of rcwatch run, KEY=value (repeatable), e.g. GOMEMLIMIT=256MiB or GODEBUG=gctrace=1")
	fs.DurationVar(&cfg.DumpOnStall, "dump-on-stall", 0, "diagnosis: SIGQUIT rcwatch run (goroutine dump with --verbose) when a stall passes this, and stop")
	return cmd
}

func benchPipeline(cmd *cobra.Command, cfg loadtest.Config, runs int) error {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "pipeline: %d events/run, rate %s, workers %s, rules ×%d, stall threshold %v\n",
		cfg.N, orDefault(cfg.Rate, "full speed"), orDefault(float64(cfg.Workers), "default"), max(cfg.RulesCopies, 1), cfg.Stall)
	if len(cfg.Env) > 0 {
		fmt.Fprintf(out, "rcwatch run environment: %s\n", strings.Join(cfg.Env, " "))
	}
	fmt.Fprintln(out, "run  baseline ev/s  stored ev/s  evaluated ev/s  eval/baseline  cpu µs/ev  rss MiB (end)  load (1 5 15 min, end)  stalls > threshold")
	var ratios, evals []float64
	stalls := 0
	for i := 1; i <= runs; i++ {
		res, err := loadtest.Run(cmd.Context(), cfg)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		rss := 0.0
		if n := len(res.Memory); n > 0 {
			rss = float64(res.Memory[n-1].RSS) / (1 << 20)
		}
		fmt.Fprintf(out, "%3d  %13.0f  %11.0f  %14.0f  %13.2f  %9.1f  %13.0f  %22s  %v\n", i, res.Baseline, res.StoredPS, res.EvalPS,
			res.Ratio(), float64(res.CPUPerEvent().Nanoseconds())/1000, rss, loadtest.LoadAvg(), res.Stalls)
		for _, st := range res.StallStates {
			fmt.Fprintf(out, "     stalled: %s\n", st)
		}
		for _, st := range res.StallDetails {
			fmt.Fprintf(out, "     stall: %s\n", st)
		}
		if len(res.Memory) > 2 {
			printMemory(out, res.Memory)
		}
		ratios, evals = append(ratios, res.Ratio()), append(evals, res.EvalPS)
		stalls += len(res.Stalls)
	}
	if runs > 1 {
		slices.Sort(ratios)
		slices.Sort(evals)
		fmt.Fprintf(out, "evaluated ev/s min %.0f median %.0f max %.0f; eval/baseline min %.2f median %.2f max %.2f; stalls over %v in all runs: %d\n",
			evals[0], median(evals), evals[len(evals)-1], ratios[0], median(ratios), ratios[len(ratios)-1], cfg.Stall, stalls)
	}
	return nil
}

// median of sorted values (the mean of the two middle ones for an even count).
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func printMemory(w io.Writer, mem []loadtest.MemSample) {
	fmt.Fprint(w, "     rss MiB:")
	for _, m := range mem {
		fmt.Fprintf(w, " %s=%.0f", m.At.Round(time.Second), float64(m.RSS)/(1<<20))
	}
	fmt.Fprintln(w)
	peak := slices.MaxFunc(mem, func(a, b loadtest.MemSample) int { return cmp.Compare(a.RSS, b.RSS) })
	fmt.Fprintf(w, "     rss peak %.0f MiB at %s", float64(peak.RSS)/(1<<20), peak.At.Round(time.Second))
	if g, from, ok := loadtest.Growth(mem, 2*time.Minute); ok {
		fmt.Fprintf(w, "; growth over the last two minutes (from %s): %+.1f MiB", from.Round(time.Second), float64(g)/(1<<20))
	}
	fmt.Fprintln(w)
}

func orDefault(v float64, def string) string {
	if v == 0 {
		return def
	}
	return fmt.Sprint(v)
}
