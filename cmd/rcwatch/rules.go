package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/pack"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// exitStatus is an error that sets the process exit status (lint: 1 when
// problems were found, after printing them).
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string { return e.err.Error() }
func (e *exitStatus) ExitCode() int { return e.code }
func (e *exitStatus) Unwrap() error { return e.err }

// ruleSources reads the given rule/list files or directories; none means
// the embedded default pack.
func ruleSources(paths []string) ([]rules.Source, error) {
	if len(paths) == 0 {
		return defaultPack()
	}
	return rules.ReadSources(paths)
}

// Rule authoring tools: lint, test (backtest), cases.
func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Rule authoring tools: lint, test (backtest), quality, cases",
	}
	cmd.AddCommand(newRulesLintCmd(), newRulesTestCmd(), newRulesQualityCmd(), newRulesCasesCmd(), newRulesListCmd())
	return cmd
}

func newRulesLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint [FILE|DIR…]",
		Short: "Load and type-check rule files, listing every problem (exit status 1 if any); none: the default pack",
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, err := ruleSources(args)
			if err != nil {
				return err
			}
			rs, lists, err := rules.Compile(srcs, rules.CompileOptions{})
			out := cmd.OutOrStdout()
			if err != nil {
				probs := rules.Problems(err)
				for _, p := range probs {
					fmt.Fprintln(out, p.Error())
				}
				return &exitStatus{code: 1, err: fmt.Errorf("%d problem(s)", len(probs))}
			}
			fmt.Fprintf(out, "ok: %d rules, %d lists in %d files\n", len(rs), len(lists.Names()), len(srcs))
			return nil
		},
	}
}

func newRulesTestCmd() *cobra.Command {
	var (
		events  []string
		asJSON  bool
		samples int
		maxRate float64
		scores  string
		boots   int
	)
	cmd := &cobra.Command{
		Use:   "test [FILE|DIR…] --events E.jsonl",
		Short: "Backtest rules over recorded events or labelled cases; none: the default pack",
		Long: `Runs the rules over recorded recent-change events or offline cases (JSON lines; a line with
an "event" member is a case) and prints each rule's match count, match rate and sample matches.
With labelled cases it also prints per-rule and overall tp/fp/fn/tn, precision, recall and
false-positive rate (the overall verdict: some enabled rule tagged "vandalism" fired), and the
precision–recall curve of vandalism_score.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, items, err := backtestInput(args, events)
			if err != nil {
				return err
			}
			if boots == 0 {
				boots = -1
			}
			rep, err := rules.Backtest(cmd.Context(), srcs, items, rules.BacktestConfig{Samples: samples, MaxMatchRate: maxRate, Bootstrap: boots})
			if err != nil {
				if probs := rules.Problems(err); len(probs) > 0 && probs[0].File != "" {
					for _, p := range probs {
						fmt.Fprintln(cmd.ErrOrStderr(), p.Error())
					}
					return &exitStatus{code: 1, err: fmt.Errorf("%d problem(s) in the rules", len(probs))}
				}
				return err
			}
			if scores != "" {
				if err := writeScores(scores, rep.Scores); err != nil {
					return err
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printReport(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringArrayVar(&events, "events", nil, "JSON-lines file of events or cases (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (overall, rules, curve)")
	cmd.Flags().IntVar(&samples, "samples", 3, "sample matches to show per rule")
	cmd.Flags().Float64Var(&maxRate, "max-match-rate", 0.05, "flag rules matching more than this share of events (the live auto-disable threshold)")
	cmd.Flags().StringVar(&scores, "scores", "", `write one JSON line per labelled edit to FILE: {"meta_id","label","score"} (score: vandalism_score)`)
	cmd.Flags().IntVar(&boots, "bootstrap", 1000, "bootstrap resamples for the 95% confidence intervals (0: none)")
	return cmd
}

// newRulesQualityCmd estimates each rule's precision and recall from the
// reverts that recorded events themselves show, or that the live streams
// show (--since).
func newRulesQualityCmd() *cobra.Command {
	var (
		events []string
		within time.Duration
		asJSON bool
		boots  int
		since  time.Duration
		c      commonFlags
	)
	cmd := &cobra.Command{
		Use:   "quality [FILE|DIR…] --events E.jsonl | --since 24h --nats URL",
		Short: "Estimate each rule's precision and recall from the reverts in recorded events or in the live streams",
		Long: `Labels every edit of the recorded events by what happened later in them: reverted within
--within (an undo naming its revision, a rollback or tool revert of the user's consecutive edits, or
another revert summary over the page's previous edit) or not. It then backtests the rules (none: the
default pack) over them: a rule's precision is the share of its alerts that were reverted, its recall
the share of reverted edits it alerted on. Enrichment is not fetched: rules that need the diff or the
user only match on what the events hold.

With --since (and --nats), it reads instead what the pipeline did over that stretch: the edits in
RECENTCHANGE and the alerts in ALERTS stored since then, and prints per rule and wiki (wiki "*": all)
the share of alerted edits later reverted within --within (precision) and the share of reverted
edits alerted (recall), with 95% Wilson intervals: what the live rcwatch_quality_* counters estimate.
The streams' retention bounds how far back this can look.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if since > 0 {
				return streamQuality(cmd, c, since, within, asJSON)
			}
			srcs, items, err := backtestInput(args, events)
			if err != nil {
				return err
			}
			if boots == 0 {
				boots = -1
			}
			labelled := rules.LabelByReverts(items, within)
			rep, err := rules.Backtest(cmd.Context(), srcs, labelled, rules.BacktestConfig{Samples: 0, Bootstrap: boots})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d edits, %d reverted within %s (labels: vandalism = reverted)\n", rep.Labelled, rep.Vandalism, within)
			return printReport(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringArrayVar(&events, "events", nil, "JSON-lines file of recorded events (repeatable)")
	cmd.Flags().Var(ageFlag{&since}, "since", "measure what the pipeline alerted on over this last stretch of the streams (needs --nats)")
	c.register(cmd.Flags(), "")
	cmd.Flags().DurationVar(&within, "within", 24*time.Hour, "an edit counts as reverted when the revert came within this time")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().IntVar(&boots, "bootstrap", 1000, "bootstrap resamples for the 95% confidence intervals (0: none)")
	return cmd
}

// ageFlag is a duration flag that also takes whole days ("7d").
type ageFlag struct{ d *time.Duration }

func (a ageFlag) String() string {
	if a.d == nil {
		return "0s"
	}
	return a.d.String()
}

func (a ageFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	*a.d = d
	return nil
}

func (a ageFlag) Type() string { return "duration" }

// streamQuality is rules quality --since: the live alerts of the last
// stretch of the streams measured against the reverts that followed.
func streamQuality(cmd *cobra.Command, c commonFlags, since, within time.Duration, asJSON bool) error {
	ctx := cmd.Context()
	rt, closeAll, err := setup(ctx, "rules-quality", c, nil)
	if err != nil {
		return err
	}
	defer closeAll()
	from := time.Now().Add(-since)
	evs, badEvs, err := quality.ReadEdits(ctx, rt.js, from)
	if err != nil {
		return err
	}
	alerts, badAlerts, err := quality.ReadAlerts(ctx, rt.js, from)
	if err != nil {
		return err
	}
	rep := quality.Estimates(evs, alerts, within)
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printQuality(cmd.OutOrStdout(), rep, from, within, badEvs+badAlerts)
}

func printQuality(w io.Writer, rep *quality.Report, from time.Time, within time.Duration, bad int) error {
	fmt.Fprintf(w, "since %s: %d edits, %d reverted within %s; %d alerts", from.UTC().Format(time.RFC3339), rep.Edits, rep.Reverted, within, rep.Alerts)
	if rep.Unmatched > 0 {
		fmt.Fprintf(w, " (%d on edits before the window, left out)", rep.Unmatched)
	}
	if bad > 0 {
		fmt.Fprintf(w, "; %d messages did not decode", bad)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tWIKI\tALERTED\tREVERTED\tPRECISION\t95% CI\tRECALL\t95% CI")
	ci := func(iv *quality.Interval) (string, string) {
		if iv == nil {
			return "-", ""
		}
		return fmt.Sprintf("%.3f", iv.Value), fmt.Sprintf("[%.3f, %.3f]", iv.Low, iv.High)
	}
	for _, e := range rep.Estimates {
		p, pci := ci(e.Precision)
		r, rci := ci(e.Recall)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", e.Rule, e.Wiki, e.Alerted, e.AlertedReverted, p, pci, r, rci)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nprecision: alerted edits reverted within %s; recall: the wiki's reverted edits the rule alerted on.\n", within)
	fmt.Fprintf(w, "Edits of the last %s may still be reverted: their precision is a lower bound.\n", within)
	return nil
}

// writeScores writes one JSON line per labelled case.
func writeScores(path string, scores []rules.ScoredCase) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing scores: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for i := range scores {
		if err := enc.Encode(&scores[i]); err != nil {
			f.Close()
			return fmt.Errorf("writing scores: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing scores: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing scores: %w", err)
	}
	return nil
}

func fmtCI(iv *rules.Interval) string {
	if iv == nil {
		return ""
	}
	return fmt.Sprintf(" [%.3f, %.3f]", iv.Low, iv.High)
}

func printReport(w io.Writer, rep *rules.Report) error {
	fmt.Fprintf(w, "%d events", rep.Events)
	if rep.Labelled > 0 {
		fmt.Fprintf(w, ", %d labelled (%d vandalism)", rep.Labelled, rep.Vandalism)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "RULE\tENABLED\tMATCHES\tRATE\tERRORS\tPARTIAL"
	if rep.Labelled > 0 {
		header += "\tTP\tFP\tFN\tTN\tPRECISION\tRECALL\tFPR"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rep.Rules {
		line := fmt.Sprintf("%s\t%v\t%d\t%.4f\t%d\t%d", r.ID, r.Enabled, r.Matches, r.MatchRate, r.Errors, r.Partial)
		if r.WouldAutoDisable {
			line = strings.Replace(line, fmt.Sprintf("%.4f", r.MatchRate), fmt.Sprintf("%.4f!", r.MatchRate), 1)
		}
		if c := r.Confusion; c != nil {
			line += fmt.Sprintf("\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f", c.TP, c.FP, c.FN, c.TN, c.Precision, c.Recall, c.FalsePositiveRate)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := rep.Overall; c != nil {
		fmt.Fprintf(w, "\noverall (some enabled rule tagged vandalism fired): tp=%d fp=%d fn=%d tn=%d precision=%.3f%s recall=%.3f%s false_positive_rate=%.3f\n",
			c.TP, c.FP, c.FN, c.TN, c.Precision, fmtCI(c.PrecisionCI), c.Recall, fmtCI(c.RecallCI), c.FalsePositiveRate)
	}
	for _, r := range rep.Rules {
		if r.WouldAutoDisable {
			fmt.Fprintf(w, "! %s matches %.1f%% of events: live, it would be disabled automatically\n", r.ID, 100*r.MatchRate)
		}
	}
	for _, r := range rep.Rules {
		if len(r.Samples) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: sample matches\n", r.ID)
		for _, s := range r.Samples {
			label := ""
			if s.Label != "" {
				label = " [" + s.Label + "]"
			}
			fmt.Fprintf(w, "  %s %s by %s score=%.3g%s %s\n", s.Wiki, s.Title, s.User, s.Score, label, s.DiffURL)
			for _, why := range s.Reasons {
				fmt.Fprintf(w, "      %s\n", why)
			}
		}
	}
	if c := rep.Curve; c != nil {
		fmt.Fprintf(w, "\nprecision–recall of %s (average precision %.3f%s", c.Variable, c.AveragePrecision, fmtCI(c.AveragePrecisionCI))
		if c.ROCAUCCI != nil {
			fmt.Fprintf(w, ", ROC AUC %.3f%s", c.ROCAUCCI.Value, fmtCI(c.ROCAUCCI))
		}
		fmt.Fprintln(w, ")")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "THRESHOLD\tPRECISION\tRECALL\tFPR\tTP\tFP")
		step := max(len(c.Points)/20, 1)
		for i := 0; i < len(c.Points); i += step {
			p := c.Points[i]
			fmt.Fprintf(tw, "%.4g\t%.3f\t%.3f\t%.3f\t%d\t%d\n", p.Threshold, p.Precision, p.Recall, p.FalsePositiveRate, p.TP, p.FP)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func newRulesCasesCmd() *cobra.Command {
	var (
		from          string
		since, within time.Duration
		settle        time.Duration
		c             commonFlags
	)
	cmd := &cobra.Command{
		Use:   "cases --from cluebot|ores-reverted FILE | --from stream --since 7d --nats URL",
		Short: "Convert a labelled edit table, or the stream's own edits, to offline cases (JSON lines on standard output)",
		Long: `Converts a labelled edit table to offline cases (JSON lines on standard output):
  --from cluebot        the ClueBot NG labelled edit CSV (only its edit-time columns)
  --from ores-reverted  ORES's edit-time feature file (TSV, optionally .bz2): label vandalism
                        for a reverted edit, good otherwise
  --from stream         the edits RECENTCHANGE stored over the last --since (with --nats):
                        label vandalism when reverted within --within, good otherwise; edits
                        newer than --settle before the newest event and not reverted are left
                        out (a revert may still come). The stream's retention bounds --since.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "stream" {
				if len(args) > 0 {
					return errors.New("--from stream reads NATS (--nats, --since), not a file")
				}
				if since <= 0 {
					return errors.New("--from stream needs --since")
				}
				ctx := cmd.Context()
				rt, closeAll, err := setup(ctx, "rules-cases", c, nil)
				if err != nil {
					return err
				}
				defer closeAll()
				st, err := rules.WriteStreamCases(ctx, rt.js, time.Now().Add(-since), within, settle, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d cases (%d vandalism: reverted within %s); %d recent edits not yet settled left out; %d events did not decode\n",
					st.Cases, st.Vandalism, within, st.Unsettled, st.Bad)
				return nil
			}
			if len(args) != 1 {
				return fmt.Errorf("--from %s needs one FILE", from)
			}
			convert := map[string]func(io.Reader) ([]rules.Case, error){
				"cluebot": rules.CasesFromClueBot, "ores-reverted": rules.CasesFromORES,
			}[from]
			if convert == nil {
				return fmt.Errorf("--from %q: want cluebot, ores-reverted or stream", from)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("reading %s: %w", args[0], err)
			}
			defer f.Close()
			cases, err := convert(f)
			if err != nil {
				return err
			}
			return rules.WriteCases(cmd.OutOrStdout(), cases)
		},
	}
	cmd.Flags().StringVar(&from, "from", "cluebot", "input format: cluebot (the ClueBot NG labelled edit CSV), ores-reverted (ORES's edit-time feature TSV) or stream (RECENTCHANGE, labelled by later reverts)")
	cmd.Flags().Var(ageFlag{&since}, "since", "--from stream: the edits stored over this last stretch")
	cmd.Flags().DurationVar(&within, "within", 24*time.Hour, "--from stream: an edit is labelled vandalism when reverted within this")
	cmd.Flags().DurationVar(&settle, "settle", time.Hour, "--from stream: leave out unreverted edits newer than this before the newest event")
	c.register(cmd.Flags(), "")
	return cmd
}

// defaultPack is the embedded default rule pack (rules/pack).
func defaultPack() ([]rules.Source, error) {
	var out []rules.Source
	for _, f := range pack.Files() {
		out = append(out, rules.Source{Name: "default-pack/" + f.Name, Data: f.Data})
	}
	if len(out) == 0 {
		return nil, errors.New("the default rule pack is empty")
	}
	return out, nil
}

// newRulesListCmd manages the KV-backed list entries (bucket rules) that a
// running evaluator with --kv-lists sees at once.
func newRulesListCmd() *cobra.Command {
	var c commonFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Add, remove and show entries of KV-backed lists (watched pages, bad words, trusted users)",
	}
	c.register(cmd.PersistentFlags(), "")
	withKV := func(cmd *cobra.Command, f func(context.Context, jetstream.KeyValue) error) error {
		ctx := cmd.Context()
		rt, closeAll, err := setup(ctx, "rules-list", c, nil)
		if err != nil {
			return err
		}
		defer closeAll()
		kv, err := rt.js.KeyValue(ctx, pipeline.BucketRules)
		if err != nil {
			return fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketRules, err)
		}
		return f(ctx, kv)
	}
	var ttl time.Duration
	var reason, by string
	add := &cobra.Command{
		Use:   "add LIST VALUE",
		Short: "Add an entry (with --ttl it expires)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKV(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
				return rules.AddListEntry(ctx, kv, rules.ListEntry{List: args[0], Value: args[1], Reason: reason, By: by}, ttl, time.Now())
			})
		},
	}
	add.Flags().DurationVar(&ttl, "ttl", 0, "expire the entry after this long (0: never)")
	add.Flags().StringVar(&reason, "reason", "", "why (shown by list show)")
	add.Flags().StringVar(&by, "by", "", "who added it")
	rm := &cobra.Command{
		Use:   "rm LIST VALUE",
		Short: "Remove an entry",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKV(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
				return rules.RemoveListEntry(ctx, kv, args[0], args[1])
			})
		},
	}
	show := &cobra.Command{
		Use:   "show [LIST]",
		Short: "Print the entries (JSON lines)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list := ""
			if len(args) == 1 {
				list = args[0]
			}
			return withKV(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
				entries, err := rules.ListEntries(ctx, kv, list)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.AddCommand(add, rm, show)
	return cmd
}

// backtestInput reads the rule files of args (none: the default pack) and the
// events or cases of every --events file, for rules test and rules quality.
func backtestInput(args, events []string) ([]rules.Source, []rules.Item, error) {
	if len(events) == 0 {
		return nil, nil, errors.New("--events is required")
	}
	srcs, err := ruleSources(args)
	if err != nil {
		return nil, nil, err
	}
	var items []rules.Item
	for _, f := range events {
		its, err := rules.ReadItemsFile(f)
		if err != nil {
			return nil, nil, err
		}
		items = append(items, its...)
	}
	return srcs, items, nil
}
