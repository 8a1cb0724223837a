package quality

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func edit(user, comment string, oldRev, newRev int64, at time.Duration) *event.RecentChange {
	ev := &event.RecentChange{Type: "edit", Wiki: "enwiki", Title: "P", User: user, Comment: comment,
		Meta: event.Meta{ID: user + comment, DT: t0.Add(at).Format(time.RFC3339)}}
	ev.Revision.Old, ev.Revision.New = &oldRev, &newRev
	return ev
}

// step is one event applied to a page's state, and what it must add.
type step struct {
	ev                                 *event.RecentChange
	rules                              []string
	changed                            bool
	alerted, alertedReverted           int // summed over rules
	reverted, revertedAlerted, dropped int
}

func TestApply(t *testing.T) {
	rollback := "Reverted edits by [[Special:Contributions/V|V]] ([[User talk:V|talk]]) to last revision by G"
	vr := []string{"vandal"}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"alert then undo", 64, []step{
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1},
			{ev: edit("G", "Undid revision 2 by [[Special:Contributions/V|V]]", 2, 3, time.Minute), changed: true,
				alertedReverted: 1, reverted: 1, revertedAlerted: 1},
		}},
		{"undo evaluated before its alert", 64, []step{
			{ev: edit("G", "Undid revision 2 by [[Special:Contributions/V|V]]", 2, 3, time.Minute), changed: true, reverted: 1},
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1, alertedReverted: 1, revertedAlerted: 1},
		}},
		{"rollback before both alerts: counted as it learns of them", 64, []step{
			{ev: edit("G", rollback, 3, 4, 2*time.Minute), changed: true, reverted: 1},
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1, alertedReverted: 1, revertedAlerted: 1},
			{ev: edit("V", "x", 2, 3, time.Minute), rules: vr, changed: true, alerted: 1, alertedReverted: 1, revertedAlerted: 1, reverted: 1},
		}},
		{"two rules, then a third later", 64, []step{
			{ev: edit("V", "", 1, 2, 0), rules: []string{"a", "b"}, changed: true, alerted: 2},
			{ev: edit("G", "rvv", 2, 3, time.Minute), changed: true, alertedReverted: 2, reverted: 1, revertedAlerted: 1},
			{ev: edit("V", "", 1, 2, 0), rules: []string{"a", "c"}, changed: true, alerted: 1, alertedReverted: 1},
		}},
		{"redelivered alert and revert count nothing", 64, []step{
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1},
			{ev: edit("V", "", 1, 2, 0), rules: vr},
			{ev: edit("G", "rv", 2, 3, time.Minute), changed: true, alertedReverted: 1, reverted: 1, revertedAlerted: 1},
			{ev: edit("G", "rv", 2, 3, time.Minute)},
		}},
		{"a self-revert is not a revert of the alert", 64, []step{
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1},
			{ev: edit("V", "revert my test", 2, 3, time.Minute), changed: true, reverted: 1},
		}},
		{"a revert after the window", 64, []step{
			{ev: edit("V", "", 1, 2, 0), rules: vr, changed: true, alerted: 1},
			{ev: edit("G", "Undid revision 2 by V", 2, 3, 49*time.Hour), changed: true, reverted: 1},
		}},
		{"the per-page cap", 2, []step{
			{ev: edit("V", "1", 1, 2, 0), rules: vr, changed: true, alerted: 1},
			{ev: edit("V", "2", 2, 3, time.Minute), rules: vr, changed: true, alerted: 1},
			{ev: edit("V", "3", 3, 4, 2*time.Minute), rules: vr, changed: true, alerted: 1, dropped: 1},
		}},
	}
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st pageState
			for i, s := range tt.steps {
				var rv *Revert
				if r, ok := Recognise(s.ev); ok {
					rv = &r
				}
				d, changed := apply(&st, s.ev, s.rules, rv, 48*time.Hour, tt.max)
				assert.Equal(t, s.changed, changed, "step %d changed", i)
				assert.Equal(t, s.alerted, sum(d.alerted), "step %d alerted", i)
				assert.Equal(t, s.alertedReverted, sum(d.alertedReverted), "step %d alerted and reverted", i)
				assert.Equal(t, s.reverted, d.reverted, "step %d reverted", i)
				assert.Equal(t, s.revertedAlerted, d.revertedAlerted, "step %d reverted and alerted", i)
				assert.Equal(t, s.dropped, d.dropped, "step %d dropped", i)
			}
		})
	}
}

// Label cardinality is bounded: pinned wikis, then the first MaxWikis
// seen, then "other"; rules likewise.
func TestLabelCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr, err := New(pipeline.Deps{Reg: reg, Log: zerolog.Nop()}, Config{Window: time.Hour, Wikis: []string{"dewiki"}, MaxWikis: 1, MaxRules: 1})
	require.NoError(t, err)
	for _, w := range []string{"enwiki", "frwiki", "dewiki", "enwiki"} {
		tr.count(w, deltas{alerted: map[string]int{"r1": 1, "r2": 1}})
	}
	for _, c := range []struct {
		rule, wiki string
		want       float64
	}{{"r1", "enwiki", 2}, {"other", "enwiki", 2}, {"r1", "other", 1}, {"r1", "dewiki", 1}, {"r1", "frwiki", 0}} {
		assert.Equal(t, c.want, metrictest.Sum(t, reg, "rcwatch_quality_alerted_total", "rule", c.rule, "wiki", c.wiki), "%+v", c)
	}
}

// A KV failure loses the event's figures, counted, and returns: the
// event is never held.
func TestObserveErrorsAreCounted(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	tr, err := New(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, Config{Window: time.Hour, Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.Error(t, tr.Ready(), "not open yet")
	tr.Observe(ctx, edit("V", "", 1, 2, 0), []string{"r"})
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_quality_errors_total", "op", "closed"))
	require.NoError(t, tr.Open(ctx))
	require.NoError(t, tr.Ready())
	require.NoError(t, js.DeleteKeyValue(ctx, pipeline.BucketQuality))
	tr.Observe(ctx, edit("V", "", 1, 2, 0), []string{"r"})
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_quality_errors_total", "op", "get"))
	assert.Zero(t, metrictest.Sum(t, reg, "rcwatch_quality_alerted_total"))
}
