package rules

import (
	"compress/bzip2"
	"context"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	json "github.com/goccy/go-json"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readItemsFile(tb testing.TB, path string) []Item {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".bz2") {
		r = bzip2.NewReader(f)
	}
	items, err := ReadItems(r)
	require.NoError(tb, err)
	return items
}

// The default pack over the converted ClueBot NG cases: the figures add
// up, the JSON has the members issue 4 names, and the curve is a curve.
func TestBacktestDefaultPackOnCases(t *testing.T) {
	items := readItemsFile(t, "../testdata/cases/cluebot.dev.jsonl")
	require.Len(t, items, 294)
	rep, err := Backtest(context.Background(), packSources(t), items, BacktestConfig{})
	require.NoError(t, err)
	assert.Equal(t, 294, rep.Events)
	assert.Equal(t, 294, rep.Labelled)
	assert.Equal(t, 28, rep.Vandalism)
	o := rep.Overall
	require.NotNil(t, o)
	assert.Equal(t, 294, o.TP+o.FP+o.FN+o.TN)
	assert.Equal(t, 28, o.TP+o.FN)
	assert.InDelta(t, float64(o.TP)/float64(o.TP+o.FP), o.Precision, 1e-9)
	assert.InDelta(t, float64(o.TP)/28, o.Recall, 1e-9)
	assert.InDelta(t, float64(o.FP)/266, o.FalsePositiveRate, 1e-9)

	// The verdict is exactly "an enabled rule tagged vandalism fired".
	verdict := 0
	for _, r := range rep.Rules {
		c := r.Confusion
		require.NotNil(t, c, r.ID)
		assert.Equal(t, 294, c.TP+c.FP+c.FN+c.TN, r.ID)
		assert.Equal(t, r.Matches, c.TP+c.FP, r.ID)
		assert.InDelta(t, float64(r.Matches)/294, r.MatchRate, 1e-9)
		assert.LessOrEqual(t, len(r.Samples), 3)
		if hasTag(r.Tags, "vandalism") {
			verdict = max(verdict, r.Matches)
		}
	}
	assert.GreaterOrEqual(t, o.TP+o.FP, verdict)

	c := rep.Curve
	require.NotNil(t, c)
	assert.Equal(t, "vandalism_score", c.Variable)
	require.NotEmpty(t, c.Points)
	assert.LessOrEqual(t, len(c.Points), 100)
	assert.True(t, sort.SliceIsSorted(c.Points, func(i, j int) bool { return c.Points[i].Threshold > c.Points[j].Threshold }))
	last := c.Points[len(c.Points)-1]
	assert.Equal(t, 1.0, last.Recall, "the lowest threshold takes everything")
	assert.Greater(t, c.AveragePrecision, 0.095, "better than the base rate")

	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, json.Unmarshal(b, &generic))
	for _, k := range []string{"overall", "rules", "curve"} {
		assert.Contains(t, generic, k)
	}
	for _, k := range []string{"tp", "fp", "fn", "tn", "precision", "recall", "false_positive_rate"} {
		assert.Contains(t, generic["overall"], k)
		assert.Contains(t, generic["rules"].([]any)[0], k)
	}
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// Unlabelled recorded events: counts and rates only, no confusion.
func TestBacktestEvents(t *testing.T) {
	items := readItemsFile(t, "../testdata/fixtures/recentchange.electricsql-rag.data.jsonl")
	rep, err := Backtest(context.Background(), []Source{src("r.yaml", `
rules:
  - id: enwiki
    when: wiki == "enwiki"
    severity: info
  - id: throttled-bots
    when: bot
    severity: info
    throttle: {count: 1000, window: 1h, group_by: wiki}
`)}, items, BacktestConfig{Samples: 2})
	require.NoError(t, err)
	assert.Nil(t, rep.Overall)
	assert.Nil(t, rep.Curve)
	assert.Equal(t, 64, rep.Rules[0].Matches)
	assert.True(t, rep.Rules[0].WouldAutoDisable)
	assert.Len(t, rep.Rules[0].Samples, 2)
	assert.Equal(t, 0, rep.Rules[1].Matches, "throttled")
	assert.Nil(t, rep.Rules[0].Confusion)
}

func TestReadItemsErrors(t *testing.T) {
	_, err := ReadItems(strings.NewReader("{\"meta\":{\"id\":\"a\"}}\n\nnot json\n"))
	assert.ErrorContains(t, err, "line 3")
	_, err = ReadItems(strings.NewReader(`{"event":{"meta":{"id":"a"}},"label":"maybe"}`))
	assert.ErrorContains(t, err, "unknown label")
	items, err := ReadItems(strings.NewReader(`{"event":{"meta":{"id":"a"}},"enrichment":{"user_warns":3},"label":"good"}` + "\n" + `{"meta":{"id":"b"}}`))
	require.NoError(t, err)
	require.Len(t, items, 2)
	assert.Equal(t, "good", items[0].Label)
	assert.Equal(t, 3.0, items[0].Known["user_warns"])
	assert.Equal(t, "b", items[1].Event.Meta.ID)
}

func TestPRCurve(t *testing.T) {
	c := PRCurve("x", []float64{0.9, 0.8, 0.8, 0.1}, []bool{true, false, true, false}, 0)
	require.Len(t, c.Points, 3)
	assert.Equal(t, CurvePoint{Threshold: 0.9, TP: 1, FP: 0, Precision: 1, Recall: 0.5, FalsePositiveRate: 0}, c.Points[0])
	assert.Equal(t, CurvePoint{Threshold: 0.8, TP: 2, FP: 1, Precision: 2.0 / 3, Recall: 1, FalsePositiveRate: 0.5}, c.Points[1])
	assert.InDelta(t, 0.5*1+0.5*2.0/3, c.AveragePrecision, 1e-9)
	best, ok := c.BestAtRecall(0.9)
	assert.True(t, ok)
	assert.Equal(t, 0.8, best.Threshold)
}
