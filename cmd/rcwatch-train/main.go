// Command rcwatch-train trains the vandalism score of rules/detect: a small
// gradient-boosted tree ensemble over detect.Inputs, fitted on ORES's
// edit-time feature set (the dev split in testdata/cases) together with the
// ClueBot NG text cases. The features come from rules.CaseFeatures, the
// mapping the evaluator itself uses. It cross-validates on the training data
// only, picks the alerting threshold from the ClueBot NG out-of-fold scores,
// prints a report and writes rules/detect/model.json.
//
//	go run ./cmd/rcwatch-train -heldout testdata/cases/ores.heldout.jsonl.bz2 -final-with testdata/cases/ores.heldout.jsonl.bz2
//
// Everything is deterministic for a given -seed. -heldout FILE… scores the
// final model once on held-out cases and reports it; nothing is tuned on it.
// -final-with FILE… then refits the same procedure with those cases added
// and writes that model instead (the held-out figure is the estimate for
// it). The defaults are the settings chosen by cross-validation
// (docs/DETECTION.md).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/detect"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rcwatch-train:", err)
		os.Exit(1)
	}
}

type config struct {
	ores, cluebot, out string
	heldout            []string
	finalWith          []string
	cluebotWeight      float64
	folds, repeats     int
	boots              int
	p                  params
	minPrecision       float64
	minRecall          float64
	noCV               bool
	threshold          float64
	holdoutPos         int
	holdoutNeg         int
	cvTrees            []int
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("rcwatch-train", flag.ContinueOnError)
	var c config
	var held, finalWith stringList
	fs.StringVar(&c.ores, "ores", "testdata/cases/ores.dev.jsonl.bz2", "ORES edit-time feature cases (JSON lines, .bz2 allowed)")
	fs.StringVar(&c.cluebot, "cluebot", "testdata/cases/cluebot.dev.jsonl", "ClueBot NG text cases")
	fs.StringVar(&c.out, "out", "rules/detect/model.json", "model file to write (\"\" to only report)")
	fs.Var(&held, "heldout", "cases to score the final model on once (repeatable; report only)")
	fs.Var(&finalWith, "final-with", "more ORES cases for the model written only, after the -heldout scoring (repeatable; no cross-validation or choice sees them)")
	fs.Float64Var(&c.cluebotWeight, "cluebot-weight", 1, "weight of a ClueBot NG case against an ORES case")
	fs.IntVar(&c.folds, "folds", 5, "cross-validation folds")
	fs.IntVar(&c.repeats, "repeats", 2, "cross-validation repeats of the ClueBot NG folds")
	fs.IntVar(&c.boots, "bootstrap", 1000, "bootstrap resamples for the confidence intervals")
	fs.IntVar(&c.p.Trees, "trees", 250, "boosting rounds")
	fs.IntVar(&c.p.Depth, "depth", 7, "tree depth")
	fs.Float64Var(&c.p.Eta, "eta", 0.01, "shrinkage")
	fs.Float64Var(&c.p.Lambda, "lambda", 1, "L2 penalty on leaf values")
	fs.Float64Var(&c.p.MinHess, "min-hess", 3, "least hessian weight in a child")
	fs.Float64Var(&c.p.Subsample, "subsample", 1, "share of rows each tree sees")
	fs.Float64Var(&c.p.PosWeight, "pos-weight", 1, "weight of a vandalism case in the trees against a good one")
	fs.IntVar(&c.p.Features, "features", 3, "tree inputs each split chooses from, drawn per node (0: all nine)")
	fs.Uint64Var(&c.p.Seed, "seed", 1, "random seed")
	fs.IntVar(&c.p.Average, "average", 1, "fit this many ensembles (seeds -seed, -seed+1, …) and average them")
	fs.BoolVar(&c.p.GradientSplit, "gradient-split", false, "score splits by least squares on the gradients, as scikit-learn's GradientBoosting (-min-hess is then the least case weight in a child)")
	fs.Float64Var(&c.p.LinLambda, "linear-lambda", 2, "the linear stage's pull towards its prior weights")
	fs.BoolVar(&c.noCV, "no-cv", false, "skip cross-validation: fit the final model only, with -threshold")
	fs.Float64Var(&c.threshold, "threshold", 0, "with -no-cv: the alerting threshold to write")
	fs.Float64Var(&c.minPrecision, "min-precision", 0.35, "the ClueBot NG bar: precision")
	fs.Float64Var(&c.minRecall, "min-recall", 0.4, "the ClueBot NG bar: recall")
	fs.IntVar(&c.holdoutPos, "holdout-pos", 22, "vandalism cases in the ClueBot NG held-out half (the threshold is picked to pass on samples of its shape)")
	fs.IntVar(&c.holdoutNeg, "holdout-neg", 244, "good cases in the ClueBot NG held-out half")
	cvTrees := fs.String("cv-trees", "", "also report the ORES cross-validation after these numbers of rounds, comma-separated (the first N trees of the same fits: one run searches several -trees; exact for cases without text, as all ORES cases)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.FieldsFunc(*cvTrees, func(r rune) bool { return r == ',' }) {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 || k > c.p.Trees || c.p.Average > 1 {
			return fmt.Errorf("-cv-trees: %q is not a number of rounds in 1…%d (and not with -average)", f, c.p.Trees)
		}
		c.cvTrees = append(c.cvTrees, k)
	}
	c.heldout, c.finalWith = held, finalWith
	ores, err := load(c.ores)
	if err != nil {
		return err
	}
	cb, err := load(c.cluebot)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "training data: %s %d cases (%d vandalism); %s %d cases (%d vandalism), weight %g\n",
		c.ores, len(ores), positives(ores), c.cluebot, len(cb), positives(cb), c.cluebotWeight)
	fmt.Fprintf(stdout, "model: %s\n\n", c.p)

	th := c.threshold
	if !c.noCV {
		th = crossValidation(ores, cb, c, stdout)
	}
	if c.out == "" && len(c.heldout) == 0 {
		return nil // a search run: the final model would be neither scored nor written
	}
	par := func(s []float64, l []bool) float64 { return rules.PrecisionAtRecall(s, l, c.minRecall) }

	// The final model: everything.
	var d dataset
	addAll(&d, ores, 1)
	addAll(&d, cb, c.cluebotWeight)
	var extra []example
	for _, f := range c.finalWith {
		ex, err := load(f)
		if err != nil {
			return err
		}
		extra = append(extra, ex...)
	}
	var m *detect.Model
	if len(c.heldout) > 0 || len(extra) == 0 {
		m = fit(&d, c.p)
		m.Threshold = math.Round(th*1000) / 1000
	}
	for _, h := range c.heldout {
		ex, err := load(h)
		if err != nil {
			return err
		}
		s := make([]float64, len(ex))
		for i, e := range ex {
			s[i] = detect.Sigmoid(m.Logit(e.x[:]))
		}
		l := labels(ex)
		p, rc := rules.PrecisionRecallAt(s, l, m.Threshold)
		fmt.Fprintf(stdout, "held out %s (%d cases, %d vandalism), the model trained on the cases above: ROC AUC %s, average precision %s, precision at recall ≥ %.2f %s; at the threshold precision %.3f recall %.3f\n",
			h, len(ex), positives(ex), ci(s, l, c, rules.ROCAUC), ci(s, l, c, rules.AveragePrecision), c.minRecall, ci(s, l, c, par), p, rc)
	}
	// -final-with: the model written learns from more ORES cases than the
	// one just scored (the same procedure, the same threshold), so the
	// held-out figures above are the honest estimate for it.
	if len(extra) > 0 {
		addAll(&d, extra, 1)
		fmt.Fprintf(stdout, "final model: also trained on %s (%d cases, %d vandalism)\n", strings.Join(c.finalWith, ", "), len(extra), positives(extra))
		m = fit(&d, c.p)
		m.Threshold = math.Round(th*1000) / 1000
	}
	names := []string{filepath.Base(c.ores)}
	for _, f := range c.finalWith {
		names = append(names, filepath.Base(f))
	}
	m.Note = fmt.Sprintf("go run ./cmd/rcwatch-train (ORES %s + ClueBot NG %s weight %g; %s)",
		strings.Join(names, " + "), filepath.Base(c.cluebot), c.cluebotWeight, c.p)
	if c.out == "" {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("encoding the model: %w", err)
	}
	if err := os.WriteFile(c.out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing the model: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%d trees, threshold %.3f)\n", c.out, len(m.Trees), m.Threshold)
	return nil
}

// crossValidation reports the out-of-fold figures, ORES folds (all ClueBot
// NG cases in training) and repeated ClueBot NG folds (all ORES cases in
// training), and returns the threshold picked on the ClueBot NG scores.
func crossValidation(ores, cb []example, c config, stdout io.Writer) float64 {
	oresOOF, prefix := crossValidate(ores, 1, cb, c.cluebotWeight, 1, c, c.cvTrees)
	cbOOF, _ := crossValidate(cb, c.cluebotWeight, ores, 1, c.repeats, c, nil)
	oy := labels(ores)
	fmt.Fprintf(stdout, "ORES dev, %d-fold cross-validation (out-of-fold scores):\n", c.folds)
	fmt.Fprintf(stdout, "  ROC AUC %s\n  average precision %s\n", ci(oresOOF[0], oy, c, rules.ROCAUC), ci(oresOOF[0], oy, c, rules.AveragePrecision))
	for j, k := range c.cvTrees {
		fmt.Fprintf(stdout, "  after %d trees: ROC AUC %s, average precision %s\n", k, ci(prefix[j], oy, c, rules.ROCAUC), ci(prefix[j], oy, c, rules.AveragePrecision))
	}
	cy := labels(cb)
	fmt.Fprintf(stdout, "ClueBot NG dev, %d-fold cross-validation x %d repeats (out-of-fold scores, repeat 1; repeat 2…):\n", c.folds, c.repeats)
	par := func(s []float64, l []bool) float64 { return rules.PrecisionAtRecall(s, l, c.minRecall) }
	for r, s := range cbOOF {
		fmt.Fprintf(stdout, "  repeat %d: ROC AUC %s, average precision %s, precision at recall ≥ %.2f %s\n", r+1,
			ci(s, cy, c, rules.ROCAUC), ci(s, cy, c, rules.AveragePrecision), c.minRecall, ci(s, cy, c, par))
	}
	th, pass := 0.5, 0.0
	if len(cbOOF) > 0 {
		th, pass = pickThreshold(cbOOF, cy, c)
	}
	fmt.Fprintf(stdout, "threshold %.3f: passes precision ≥ %.2f at recall ≥ %.2f in %.0f%% of stratified resamples of the held-out half's shape (%d/%d)\n",
		th, c.minPrecision, c.minRecall, 100*pass, c.holdoutPos, c.holdoutNeg)
	for r, s := range cbOOF {
		p, rc := rules.PrecisionRecallAt(s, cy, th)
		fmt.Fprintf(stdout, "  repeat %d at the threshold: precision %.3f recall %.3f\n", r+1, p, rc)
	}
	share := 0
	for _, s := range oresOOF[0] {
		if s >= th {
			share++
		}
	}
	fmt.Fprintf(stdout, "share of ORES dev edits (a random sample of enwiki edits) at or above it: %.3f\n\n", float64(share)/float64(len(ores)))

	return th
}

type example struct {
	id     string
	x      [detect.NumInputs]float64
	vandal bool
}

// load reads labelled edit cases and maps them to model inputs with the
// evaluator's own mapping (rules.CaseFeatures).
func load(path string) ([]example, error) {
	items, err := rules.ReadItemsFile(path)
	if err != nil {
		return nil, err
	}
	var out []example
	for _, it := range items {
		if it.Label == "" || (it.Event.Type != "edit" && it.Event.Type != "new") {
			continue
		}
		ft, err := rules.CaseFeatures(it.Event, it.Known)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, it.Line, err)
		}
		out = append(out, example{id: it.Event.Meta.ID, x: detect.Inputs(ft), vandal: it.Label == rules.LabelVandalism})
	}
	return out, nil
}

func addAll(d *dataset, ex []example, w float64) {
	for i := range ex {
		d.add(ex[i].x[:], ex[i].vandal, w)
	}
}

func labels(ex []example) []bool {
	out := make([]bool, len(ex))
	for i, e := range ex {
		out[i] = e.vandal
	}
	return out
}

func positives(ex []example) int {
	n := 0
	for _, e := range ex {
		if e.vandal {
			n++
		}
	}
	return n
}

// crossValidate scores each case of target out of fold (stratified folds,
// repeats times with different shuffles); other is always in training.
// prefix[j] holds the first repeat's scores by the first at[j] trees of the
// same fits (without the linear stage, which was fitted after all trees:
// exact for cases whose text is unknown).
func crossValidate(target []example, targetW float64, other []example, otherW float64, repeats int, c config, at []int) (out, prefix [][]float64) {
	out = make([][]float64, repeats)
	prefix = make([][]float64, len(at))
	for j := range prefix {
		prefix[j] = make([]float64, len(target))
	}
	for r := 0; r < repeats; r++ {
		fold := stratifiedFolds(target, c.folds, c.p.Seed+uint64(r)*7919)
		scores := make([]float64, len(target))
		for k := 0; k < c.folds; k++ {
			var d dataset
			var test []int
			for i := range target {
				if fold[i] == k {
					test = append(test, i)
				} else {
					d.add(target[i].x[:], target[i].vandal, targetW)
				}
			}
			addAll(&d, other, otherW)
			m := fit(&d, c.p)
			for _, i := range test {
				scores[i] = detect.Sigmoid(m.Logit(target[i].x[:]))
			}
			if r > 0 {
				continue
			}
			for j, k := range at {
				pm := detect.Model{Base: m.Base, Trees: m.Trees[:k]}
				for _, i := range test {
					prefix[j][i] = detect.Sigmoid(pm.Logit(target[i].x[:]))
				}
			}
		}
		out[r] = scores
	}
	return out, prefix
}

func stratifiedFolds(ex []example, folds int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, 0xf01d))
	var pos, neg []int
	for i, e := range ex {
		if e.vandal {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	out := make([]int, len(ex))
	for _, g := range [][]int{pos, neg} {
		rng.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
		for k, i := range g {
			out[i] = k % folds
		}
	}
	return out
}

func ci(s []float64, l []bool, c config, stat func([]float64, []bool) float64) string {
	iv := rules.BootstrapCI(s, l, c.boots, c.p.Seed, stat)
	return fmt.Sprintf("%.3f [%.3f, %.3f]", iv.Value, iv.Low, iv.High)
}

// pickThreshold picks the threshold most likely to pass the bar on a sample
// shaped like the held-out half: over stratified resamples (holdoutPos
// vandalism, holdoutNeg good) of each repeat's out-of-fold scores, the share
// where "score ≥ threshold" reaches the bar. Candidates run from 0.05 to 0.8.
func pickThreshold(oof [][]float64, y []bool, c config) (float64, float64) {
	rng := rand.New(rand.NewPCG(c.p.Seed, 0x7e5))
	var samples [][2][]float64 // [pos scores, neg scores]
	for _, s := range oof {
		var pos, neg []float64
		for i, v := range s {
			if y[i] {
				pos = append(pos, v)
			} else {
				neg = append(neg, v)
			}
		}
		for b := 0; b < 200; b++ {
			var sp, sn []float64
			for k := 0; k < c.holdoutPos; k++ {
				sp = append(sp, pos[rng.IntN(len(pos))])
			}
			for k := 0; k < c.holdoutNeg; k++ {
				sn = append(sn, neg[rng.IntN(len(neg))])
			}
			samples = append(samples, [2][]float64{sp, sn})
		}
	}
	best, bestPass := 0.5, -1.0
	for th := 0.05; th <= 0.8; th += 0.005 {
		pass := 0
		for _, sm := range samples {
			tp, fp := countAbove(sm[0], th), countAbove(sm[1], th)
			if tp+fp > 0 && float64(tp)/float64(tp+fp) >= c.minPrecision && float64(tp)/float64(len(sm[0])) >= c.minRecall {
				pass++
			}
		}
		if r := float64(pass) / float64(len(samples)); r > bestPass+1e-9 {
			best, bestPass = th, r
		}
	}
	return best, bestPass
}

func countAbove(s []float64, th float64) int {
	n := 0
	for _, v := range s {
		if v >= th {
			n++
		}
	}
	return n
}
