package rules

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
)

// Item is one input of a backtest: a recent change, with the variables an
// offline case already knows and its label ("" when unlabelled).
type Item struct {
	Event *event.RecentChange
	Known map[string]any
	Label string
	Line  int
}

// ReadItems reads JSON lines of recent-change events or cases (a line with
// an "event" member is a case; see Case). Blank lines are skipped; a bad
// line is an error naming it.
func ReadItems(r io.Reader) ([]Item, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxCaseLine)
	var out []Item
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var probe struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		it := Item{Line: n}
		data := line
		if len(probe.Event) > 0 {
			cs, err := ReadCases(bytes.NewReader(line))
			if err != nil || len(cs) != 1 {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			data, it.Known, it.Label = cs[0].Event, cs[0].Enrichment, cs[0].Label
		}
		ev, err := event.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		it.Event = ev
		out = append(out, it)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	return out, nil
}

// BacktestConfig tunes a backtest.
type BacktestConfig struct {
	Samples       int     // sample matches kept per rule (default 3)
	VerdictTag    string  // an alert from an enabled rule with this tag is the "vandalism" verdict (default "vandalism")
	CurveVariable string  // numeric variable whose precision–recall curve is reported (default "vandalism_score")
	MaxMatchRate  float64 // rules above it are flagged would_auto_disable (default 0.05)
	Bootstrap     int     // resamples for the confidence intervals (default 1000; < 0: none)
	Seed          uint64  // of the resamples
	Engine        EngineConfig
}

// Confusion is the confusion matrix of a verdict against labels.
type Confusion struct {
	TP                int     `json:"tp"`
	FP                int     `json:"fp"`
	FN                int     `json:"fn"`
	TN                int     `json:"tn"`
	Precision         float64 `json:"precision"`
	Recall            float64 `json:"recall"`
	FalsePositiveRate float64 `json:"false_positive_rate"`
	// 95% bootstrap intervals of precision and recall (resampling the
	// labelled cases).
	PrecisionCI *Interval `json:"precision_ci,omitempty"`
	RecallCI    *Interval `json:"recall_ci,omitempty"`
}

func (c *Confusion) add(predicted, actual bool) {
	switch {
	case predicted && actual:
		c.TP++
	case predicted:
		c.FP++
	case actual:
		c.FN++
	default:
		c.TN++
	}
}

func (c *Confusion) finish() {
	c.Precision = ratio(c.TP, c.TP+c.FP)
	c.Recall = ratio(c.TP, c.TP+c.FN)
	c.FalsePositiveRate = ratio(c.FP, c.FP+c.TN)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Sample is one alert a rule raised in the backtest.
type Sample struct {
	MetaID  string   `json:"meta_id"`
	Wiki    string   `json:"wiki"`
	Title   string   `json:"title"`
	User    string   `json:"user,omitempty"`
	DiffURL string   `json:"diff_url,omitempty"`
	Score   float64  `json:"score"`
	Label   string   `json:"label,omitempty"`
	Partial bool     `json:"partial,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
}

// RuleReport is one rule's backtest figures. The confusion fields are set
// only when some items are labelled.
type RuleReport struct {
	ID               string   `json:"id"`
	Version          string   `json:"version"`
	Enabled          bool     `json:"enabled"`
	Tags             []string `json:"tags,omitempty"`
	Matches          int      `json:"matches"`
	MatchRate        float64  `json:"match_rate"`
	Errors           int64    `json:"errors"`
	Partial          int      `json:"partial"`
	WouldAutoDisable bool     `json:"would_auto_disable,omitempty"`
	*Confusion
	Samples []Sample `json:"samples,omitempty"`
}

// CurvePoint is the verdict "variable ≥ Threshold" against the labels.
type CurvePoint struct {
	Threshold         float64 `json:"threshold"`
	TP                int     `json:"tp"`
	FP                int     `json:"fp"`
	Precision         float64 `json:"precision"`
	Recall            float64 `json:"recall"`
	FalsePositiveRate float64 `json:"false_positive_rate"`
}

// Curve is the precision–recall curve of a numeric variable over
// thresholds (every distinct value, thinned to at most 100 points).
type Curve struct {
	Variable         string  `json:"variable"`
	AveragePrecision float64 `json:"average_precision"`
	// With their 95% bootstrap intervals: ROC AUC and average precision.
	ROCAUCCI           *Interval    `json:"roc_auc,omitempty"`
	AveragePrecisionCI *Interval    `json:"average_precision_ci,omitempty"`
	Points             []CurvePoint `json:"points"`
}

// ScoredCase is one labelled case's score (rcwatch rules test --scores).
type ScoredCase struct {
	MetaID string  `json:"meta_id"`
	Label  string  `json:"label"`
	Score  float64 `json:"score"`
}

// Report is the result of a backtest; --json prints it.
type Report struct {
	Events    int          `json:"events"`
	Labelled  int          `json:"labelled"`
	Vandalism int          `json:"vandalism"`
	Overall   *Confusion   `json:"overall,omitempty"`
	Rules     []RuleReport `json:"rules"`
	Curve     *Curve       `json:"curve,omitempty"`
	// Scores holds every labelled edit's CurveVariable, in input order.
	Scores []ScoredCase `json:"-"`
}

// Backtest runs the rules over items as the live stage would (throttles
// included, auto-disable only reported) and measures them against labels.
func Backtest(ctx context.Context, srcs []Source, items []Item, cfg BacktestConfig) (*Report, error) {
	if cfg.Samples <= 0 {
		cfg.Samples = 3
	}
	if cfg.VerdictTag == "" {
		cfg.VerdictTag = "vandalism"
	}
	if cfg.CurveVariable == "" {
		cfg.CurveVariable = "vandalism_score"
	}
	if cfg.MaxMatchRate == 0 {
		cfg.MaxMatchRate = 0.05
	}
	ecfg := cfg.Engine
	ecfg.MaxMatchRate = -1
	eng, err := NewEngine(ecfg, nil, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	if err := eng.Load(srcs); err != nil {
		return nil, err
	}
	statuses := eng.Rules()
	rep := &Report{Events: len(items)}
	index := map[string]int{}
	for i, s := range statuses {
		index[s.ID] = i
		rep.Rules = append(rep.Rules, RuleReport{ID: s.ID, Version: s.Version, Enabled: s.Enabled, Tags: s.Tags})
	}
	verdictRules := map[string]bool{}
	for _, s := range statuses {
		if s.Enabled && slices.Contains(s.Tags, cfg.VerdictTag) {
			verdictRules[s.ID] = true
		}
	}
	for _, it := range items {
		if it.Label != "" {
			rep.Labelled++
		}
	}
	labelled := rep.Labelled > 0
	if labelled {
		rep.Overall = &Confusion{}
		for i := range rep.Rules {
			rep.Rules[i].Confusion = &Confusion{}
		}
	}
	type scored struct {
		v      float64
		vandal bool
	}
	var scores []scored
	var firedAll [][]bool // per labelled case: each rule, then the verdict
	var labelsAll []bool
	curveVar, curveOK := varTable[cfg.CurveVariable]
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := it.Event.Time()
		alerts := eng.Eval(ctx, it.Event, it.Known, now)
		fired := make([]bool, len(rep.Rules))
		verdict := false
		for _, a := range alerts {
			i := index[a.Rule.ID]
			fired[i] = true
			rr := &rep.Rules[i]
			rr.Matches++
			if a.Partial {
				rr.Partial++
			}
			if len(rr.Samples) < cfg.Samples {
				rr.Samples = append(rr.Samples, Sample{MetaID: a.Event.MetaID, Wiki: a.Event.Wiki, Title: a.Event.Title,
					User: a.Event.User, DiffURL: a.Event.DiffURL, Score: a.Score, Label: it.Label,
					Partial: a.Partial, Reasons: a.Reasons})
			}
			if verdictRules[a.Rule.ID] {
				verdict = true
			}
		}
		if it.Label == "" {
			continue
		}
		vandal := it.Label == LabelVandalism
		if vandal {
			rep.Vandalism++
		}
		rep.Overall.add(verdict, vandal)
		for i := range rep.Rules {
			rep.Rules[i].Confusion.add(fired[i], vandal)
		}
		firedAll = append(firedAll, append(fired, verdict))
		labelsAll = append(labelsAll, vandal)
		if curveOK {
			if v, ok := eng.variable(it.Event, it.Known, curveVar, now); ok && !math.IsNaN(v) { // NaN: no score, like unknown
				scores = append(scores, scored{v, vandal})
				rep.Scores = append(rep.Scores, ScoredCase{MetaID: it.Event.Meta.ID, Label: it.Label, Score: v})
			}
		}
	}
	for i, s := range eng.Rules() {
		rr := &rep.Rules[i]
		rr.Errors = s.Errors
		rr.MatchRate = ratio(rr.Matches, rep.Events)
		limit := cfg.MaxMatchRate
		if s.MaxMatchRate != nil { // the rule's own threshold, as the engine applies it live
			limit = *s.MaxMatchRate
		}
		rr.WouldAutoDisable = rr.Enabled && limit > 0 && rr.MatchRate > limit
		if rr.Confusion != nil {
			rr.Confusion.finish()
		}
	}
	if rep.Overall != nil {
		rep.Overall.finish()
	}
	boots := cfg.Bootstrap
	if boots == 0 {
		boots = 1000
	}
	if boots > 0 && len(labelsAll) > 0 {
		cis := bootstrapConfusions(firedAll, labelsAll, boots, cfg.Seed)
		for i := range rep.Rules {
			rep.Rules[i].Confusion.PrecisionCI, rep.Rules[i].Confusion.RecallCI = cis[i][0], cis[i][1]
		}
		last := cis[len(cis)-1]
		rep.Overall.PrecisionCI, rep.Overall.RecallCI = last[0], last[1]
	}
	if len(scores) > 0 {
		vals := make([]float64, len(scores))
		labels := make([]bool, len(scores))
		for i, s := range scores {
			vals[i], labels[i] = s.v, s.vandal
		}
		rep.Curve = PRCurve(cfg.CurveVariable, vals, labels, 100)
		if boots > 0 {
			auc := BootstrapCI(vals, labels, boots, cfg.Seed, ROCAUC)
			ap := BootstrapCI(vals, labels, boots, cfg.Seed, AveragePrecision)
			rep.Curve.ROCAUCCI, rep.Curve.AveragePrecisionCI = &auc, &ap
		}
	}
	return rep, nil
}

// variable computes one numeric variable for an event (detectors included).
func (e *Engine) variable(ev *event.RecentChange, known map[string]any, vi *varInfo, now time.Time) (float64, bool) {
	st := e.pool.Get().(*evalState)
	defer e.pool.Put(st)
	st.reset(e.set.Load().lists, now, 0)
	st.vars.fillEvent(ev)
	st.evTime = ev.Time()
	if _, err := st.vars.setKnown(known); err != nil {
		return 0, false
	}
	st.derive(vi.derived, e.cfg.CitationMaxAge)
	v, _ := st.vars.valueOf(vi.name)
	f, ok := toFloat(v)
	return f, ok
}

// PRCurve is the precision–recall curve of "value ≥ threshold" over every
// distinct value, thinned to at most maxPoints, with the average precision.
// Cases whose value is NaN are left out (they cannot be ranked).
func PRCurve(variable string, values []float64, vandal []bool, maxPoints int) *Curve {
	values, vandal = withoutNaN(values, vandal)
	idx := sortedDesc(values)
	pos, neg := countLabels(vandal)
	c := &Curve{Variable: variable}
	var all []CurvePoint
	tp, fp := 0, 0
	prevRecall := 0.0
	for k := 0; k < len(idx); {
		th := values[idx[k]]
		for k < len(idx) && values[idx[k]] == th {
			if vandal[idx[k]] {
				tp++
			} else {
				fp++
			}
			k++
		}
		p := CurvePoint{Threshold: th, TP: tp, FP: fp, Precision: ratio(tp, tp+fp), Recall: ratio(tp, pos),
			FalsePositiveRate: ratio(fp, neg)}
		c.AveragePrecision += (p.Recall - prevRecall) * p.Precision
		prevRecall = p.Recall
		all = append(all, p)
	}
	if maxPoints > 1 && len(all) > maxPoints {
		step := float64(len(all)-1) / float64(maxPoints-1)
		thin := make([]CurvePoint, 0, maxPoints)
		for i := 0; i < maxPoints; i++ {
			thin = append(thin, all[int(math.Round(float64(i)*step))])
		}
		all = thin
	}
	c.Points = all
	return c
}

// BestAtRecall is the point of highest precision with recall ≥ minRecall
// (false when none reaches it).
func (c *Curve) BestAtRecall(minRecall float64) (CurvePoint, bool) {
	var best CurvePoint
	found := false
	for _, p := range c.Points {
		if p.Recall >= minRecall && (!found || p.Precision > best.Precision) {
			best, found = p, true
		}
	}
	return best, found
}

// ReadItemsFile reads the events or cases of a JSON-lines file (bzip2
// compressed when its name ends in .bz2).
func ReadItemsFile(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".bz2") {
		r = bzip2.NewReader(f)
	}
	items, err := ReadItems(r)
	if err != nil {
		return nil, fmt.Errorf("reading events %s: %w", path, err)
	}
	return items, nil
}
