// Package dataset turns labelled offline cases (testdata/cases/*.jsonl, the
// rules.Case format) into detector features, for training and measuring the
// vandalism score. It mirrors how the evaluator fills detect.Features from
// rule variables: the event's fields, overridden by the enrichment's values
// by rule variable name, then SetText on added_lines/removed_lines.
//
// It reads the JSON lines itself instead of importing package rules (which
// imports detect), so that the training command depends only on detect.
package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/rules/detect"
)

// Example is one labelled edit.
type Example struct {
	ID        string // meta.id
	Title     string
	Features  detect.Features
	Vandalism bool
}

type rawCase struct {
	Event      json.RawMessage `json:"event"`
	Enrichment map[string]any  `json:"enrichment"`
	Label      string          `json:"label"`
}

// Load reads a cases file and keeps the labelled edit cases.
func Load(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening cases: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read reads JSON lines of cases and keeps the labelled edit cases.
func Read(r io.Reader) ([]Example, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	var out []Example
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c rawCase
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("reading case on line %d: %w", n, err)
		}
		if c.Label != "vandalism" && c.Label != "good" {
			continue
		}
		ev, err := event.Decode(c.Event)
		if err != nil {
			return nil, fmt.Errorf("decoding event on line %d: %w", n, err)
		}
		if ev.Type != "edit" && ev.Type != "new" {
			continue
		}
		out = append(out, Example{
			ID: ev.Meta.ID, Title: ev.Title,
			Features:  Features(ev, c.Enrichment),
			Vandalism: c.Label == "vandalism",
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading cases: %w", err)
	}
	return out, nil
}

// Features fills detect.Features from an event and an enrichment map.
func Features(ev *event.RecentChange, enr map[string]any) detect.Features {
	f := detect.Features{
		UserType: ev.UserType(), Bot: ev.Bot, Minor: ev.Minor, Namespace: ev.Namespace, Summary: ev.Comment,
	}
	if ev.Length.Old != nil {
		f.OldSize = *ev.Length.Old
	}
	if ev.Length.New != nil {
		f.NewSize = *ev.Length.New
	}
	f.EditDelta = f.NewSize - f.OldSize
	num := func(name string, dst *int64) {
		if v, ok := enr[name].(float64); ok && !math.IsNaN(v) {
			*dst = int64(v)
		}
	}
	num("old_size", &f.OldSize)
	num("new_size", &f.NewSize)
	num("edit_delta", &f.EditDelta)
	num("user_editcount", &f.UserEditCount)
	num("user_warns", &f.UserWarns)
	num("user_distinct_pages", &f.UserDistinctPages)
	num("num_recent_edits", &f.NumRecentEdits)
	num("num_recent_reversions", &f.NumRecentReversions)
	var age, pageAge int64
	num("user_age", &age)
	num("page_age", &pageAge)
	f.UserAge, f.PageAge = float64(age), float64(pageAge)
	f.UserGroups = stringList(enr["user_groups"])
	f.SetText(stringList(enr["added_lines"]), stringList(enr["removed_lines"]))
	return f
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Point is one threshold of a precision–recall curve.
type Point struct {
	Threshold float64 `json:"threshold"`
	TP        int     `json:"tp"`
	FP        int     `json:"fp"`
	FN        int     `json:"fn"`
	TN        int     `json:"tn"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	FPR       float64 `json:"false_positive_rate"`
}

// Curve is the precision–recall curve of scores against labels: one point
// per distinct score, from the highest threshold down (a case is flagged
// when its score is ≥ the threshold).
func Curve(scores []float64, labels []bool) []Point {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	pos := 0
	for _, l := range labels {
		if l {
			pos++
		}
	}
	neg := len(labels) - pos
	var out []Point
	tp, fp := 0, 0
	for k, i := range idx {
		if labels[i] {
			tp++
		} else {
			fp++
		}
		if k+1 < len(idx) && scores[idx[k+1]] == scores[i] {
			continue
		}
		out = append(out, At(scores[i], tp, fp, pos, neg))
	}
	return out
}

// At computes a point from counts.
func At(threshold float64, tp, fp, pos, neg int) Point {
	p := Point{Threshold: threshold, TP: tp, FP: fp, FN: pos - tp, TN: neg - fp}
	if tp+fp > 0 {
		p.Precision = float64(tp) / float64(tp+fp)
	}
	if pos > 0 {
		p.Recall = float64(tp) / float64(pos)
	}
	if neg > 0 {
		p.FPR = float64(fp) / float64(neg)
	}
	return p
}

// Evaluate flags scores ≥ threshold and counts.
func Evaluate(scores []float64, labels []bool, threshold float64) Point {
	tp, fp, pos, neg := 0, 0, 0, 0
	for i, s := range scores {
		if labels[i] {
			pos++
		} else {
			neg++
		}
		if s >= threshold {
			if labels[i] {
				tp++
			} else {
				fp++
			}
		}
	}
	return At(threshold, tp, fp, pos, neg)
}

// PrecisionAtRecall is the best precision among the curve's points with
// recall ≥ r (0 if none).
func PrecisionAtRecall(curve []Point, r float64) float64 {
	best := 0.0
	for _, p := range curve {
		if p.Recall >= r && p.Precision > best {
			best = p.Precision
		}
	}
	return best
}
