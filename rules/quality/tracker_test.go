package quality_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/quality"
)

const testRules = `
rules:
  - id: qs-edits
    when: 'type == "edit" && user == "QuickStatementsBot"'
    severity: low
  - id: no-summary
    when: 'comment == "" && !bot'
    severity: low
  - id: ip-edits
    when: 'user_type == "ip"'
    severity: info
`

// replayEvents are recorded events in which reverts really happen: the
// Wikidata QuickStatements batch that EditGroups partly undid (two undos),
// and an English Wikipedia sequence built from real revert edits of the
// ClueBot NG table (testdata/mkseq.py: undos, ClueBot NG and Huggle
// rollbacks, one of two consecutive edits, an "rvv"), 16 reverted edits.
func replayEvents(t *testing.T) [][]byte {
	evs := fixtures.Events(t, "recentchange.editgroups.qs_batch_with_reverts.jsonl")
	seq, err := os.ReadFile("testdata/enwiki.reverts.jsonl")
	require.NoError(t, err)
	return append(evs, splitLines(seq)...)
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

type figures struct {
	alerted, alertedReverted  map[[2]string]float64 // rule, wiki
	reverted, revertedAlerted map[string]float64    // wiki
}

func gather(t *testing.T, regs []*prometheus.Registry, rulesIDs, wikis []string) figures {
	f := figures{map[[2]string]float64{}, map[[2]string]float64{}, map[string]float64{}, map[string]float64{}}
	for _, reg := range regs {
		for _, w := range wikis {
			f.reverted[w] += metrictest.Sum(t, reg, "rcwatch_quality_reverted_total", "wiki", w)
			f.revertedAlerted[w] += metrictest.Sum(t, reg, "rcwatch_quality_reverted_alerted_total", "wiki", w)
			for _, r := range rulesIDs {
				k := [2]string{r, w}
				f.alerted[k] += metrictest.Sum(t, reg, "rcwatch_quality_alerted_total", "rule", r, "wiki", w)
				f.alertedReverted[k] += metrictest.Sum(t, reg, "rcwatch_quality_alerted_reverted_total", "rule", r, "wiki", w)
			}
		}
	}
	return f
}

// Recorded events with real reverts, replayed through two replicas of the
// real rules stage sharing one durable consumer (a revert may be evaluated
// by another replica than its alert, or before it): the live counters
// give the expected per-rule figures, the same as the offline estimate
// over the streams (what `rcwatch rules quality --since` prints), and a
// third pass over the same events (redelivery) counts nothing again.
func TestLiveSelfMeasurement(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now().Add(-time.Minute)

	raw := replayEvents(t)
	seen := map[string]bool{}
	qsEdits := 0
	for _, data := range raw {
		ev, err := event.Decode(data)
		require.NoError(t, err)
		if seen[ev.Meta.ID] {
			continue
		}
		seen[ev.Meta.ID] = true
		if ev.Type == "edit" && ev.User == "QuickStatementsBot" {
			qsEdits++
		}
		natstest.Publish(t, js, pipeline.RecentChangeSubject(ev.Wiki, ev.Type), ev.Meta.ID, data)
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(testRules), 0o644))

	// run starts n replicas on durable and waits until it has acked everything.
	run := func(durable string, n int) []*prometheus.Registry {
		var regs []*prometheus.Registry
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, n)
		for i := 0; i < n; i++ {
			reg := prometheus.NewRegistry()
			regs = append(regs, reg)
			s, err := rules.NewStage(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, rules.StageConfig{
				Paths: []string{dir}, Durable: durable, Workers: 4,
				Engine:  rules.EngineConfig{MaxMatchRate: -1},
				Quality: quality.Config{Window: 48 * time.Hour},
			}, nil)
			require.NoError(t, err)
			go func() { done <- s.Run(rctx) }()
		}
		natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, durable, time.Minute)
		stop()
		for i := 0; i < n; i++ {
			require.NoError(t, <-done)
		}
		return regs
	}
	regs := run("rules", 2)
	defer func() {
		if t.Failed() {
			for i, reg := range regs {
				mfs, _ := reg.Gather()
				for _, mf := range mfs {
					if strings.HasPrefix(mf.GetName(), "rcwatch_quality_") || strings.HasPrefix(mf.GetName(), "rcwatch_rules_") {
						t.Logf("replica %d: %s", i, mf.String())
					}
				}
			}
		}
	}()

	ruleIDs := []string{"qs-edits", "no-summary", "ip-edits"}
	wikis := []string{"enwiki", "wikidatawiki"}
	got := gather(t, regs, ruleIDs, wikis)

	// The figures known from the events themselves.
	assert.Equal(t, float64(qsEdits), got.alerted[[2]string{"qs-edits", "wikidatawiki"}])
	assert.Equal(t, 2.0, got.alertedReverted[[2]string{"qs-edits", "wikidatawiki"}], "EditGroups undid two QuickStatements edits")
	assert.Equal(t, 2.0, got.reverted["wikidatawiki"])
	assert.Equal(t, 2.0, got.revertedAlerted["wikidatawiki"])
	assert.Equal(t, 16.0, got.reverted["enwiki"], "15 reverts, one rollback of two edits")
	assert.Equal(t, 16.0, got.alerted[[2]string{"no-summary", "enwiki"}], "every reverted edit had no summary")
	assert.Equal(t, 16.0, got.alertedReverted[[2]string{"no-summary", "enwiki"}])
	assert.Equal(t, 16.0, got.revertedAlerted["enwiki"])
	ipReverted := got.alertedReverted[[2]string{"ip-edits", "enwiki"}]
	assert.Equal(t, 13.0, ipReverted, "13 of the reverted edits were by IPs")
	assert.Greater(t, got.alerted[[2]string{"ip-edits", "enwiki"}], ipReverted, "IP reverts are alerted too, not reverted")

	// The offline estimate over the same streams agrees with the counters.
	evs, bad, err := quality.ReadEdits(ctx, js, start)
	require.NoError(t, err)
	assert.Zero(t, bad)
	alerts, bad, err := quality.ReadAlerts(ctx, js, start)
	require.NoError(t, err)
	assert.Zero(t, bad)
	rep := quality.Estimates(evs, alerts, 48*time.Hour)
	assert.Zero(t, rep.Unmatched)
	assert.Equal(t, 18, rep.Reverted)
	byKey := map[[2]string]quality.Estimate{}
	for _, e := range rep.Estimates {
		byKey[[2]string{e.Rule, e.Wiki}] = e
	}
	for _, r := range ruleIDs {
		for _, w := range wikis {
			k := [2]string{r, w}
			e := byKey[k]
			assert.Equal(t, got.alerted[k], float64(e.Alerted), "alerted %v", k)
			assert.Equal(t, got.alertedReverted[k], float64(e.AlertedReverted), "alerted and reverted %v", k)
			if e.Alerted > 0 {
				assert.Equal(t, got.reverted[w], float64(e.Reverted), "reverted %v", k)
			}
		}
	}
	ns := byKey[[2]string{"no-summary", "enwiki"}]
	require.NotNil(t, ns.Precision)
	assert.Equal(t, 1.0, ns.Precision.Value)
	assert.Equal(t, 1.0, ns.Recall.Value)
	assert.Less(t, ns.Precision.Low, 1.0, "a Wilson interval, not a point")
	qs := byKey[[2]string{"qs-edits", "wikidatawiki"}]
	assert.InDelta(t, 2/float64(qsEdits), qs.Precision.Value, 1e-12)

	// Redelivery: a fresh consumer evaluates every event again; the
	// shared state knows each alert and revert, so nothing is counted twice.
	again := gather(t, run("rules-again", 1), ruleIDs, wikis)
	for k, v := range again.alerted {
		assert.Zero(t, v, "alerted again %v", k)
		assert.Zero(t, again.alertedReverted[k], "alerted and reverted again %v", k)
	}
	for _, w := range wikis {
		assert.Zero(t, again.reverted[w], "reverted again %s", w)
	}
}
