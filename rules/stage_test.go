package rules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// configMapDir lays out a directory as Kubernetes mounts a ConfigMap:
// dir/rules.yaml → ..data/rules.yaml, ..data → ..<version>. update swaps
// the ..data symlink atomically.
type configMapDir struct {
	dir string
	n   int
}

func newConfigMapDir(tb testing.TB, files map[string]string) *configMapDir {
	tb.Helper()
	c := &configMapDir{dir: tb.TempDir()}
	c.update(tb, files)
	for name := range files {
		require.NoError(tb, os.Symlink(filepath.Join("..data", name), filepath.Join(c.dir, name)))
	}
	return c
}

func (c *configMapDir) update(tb testing.TB, files map[string]string) {
	tb.Helper()
	c.n++
	ver := "..v" + string(rune('0'+c.n))
	require.NoError(tb, os.Mkdir(filepath.Join(c.dir, ver), 0o755))
	for name, body := range files {
		require.NoError(tb, os.WriteFile(filepath.Join(c.dir, ver, name), []byte(body), 0o644))
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	require.NoError(tb, os.Symlink(ver, tmp))
	require.NoError(tb, os.Rename(tmp, filepath.Join(c.dir, "..data")))
}

const stageRulesV1 = `
rules:
  - id: removal
    when: edit_delta < -1000
    severity: high
    throttle: {count: 2, window: 1h, group_by: user}
  - id: bots
    when: bot
    severity: info
`

// A bad file keeps the old rules (and their throttle state) running and
// is reported; a good one replaces them; unchanged content is not reloaded.
func TestStageReload(t *testing.T) {
	cm := newConfigMapDir(t, map[string]string{"rules.yaml": stageRulesV1})
	reg := prometheus.NewRegistry()
	s, err := NewStage(pipeline.Deps{Reg: reg, Log: zerolog.Nop()}, StageConfig{Paths: []string{cm.dir}}, nil)
	require.NoError(t, err)
	eng := s.Engine()
	assert.Equal(t, 1.0, testutil.ToFloat64(eng.m.reloadOK))

	removal := func(id, user string) []string {
		ev := mustEvent(t, `{"meta":{"id":"`+id+`","dt":"2024-02-06T16:58:10Z"},"type":"edit","user":"`+user+`","length":{"old":5000,"new":1}}`)
		return alertRules(eng.Eval(context.Background(), ev, nil, t0))
	}
	assert.Empty(t, removal("1", "A")) // 1 of 2

	changed, err := s.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "same content")

	cm.update(t, map[string]string{"rules.yaml": stageRulesV1 + "  - id: broken\n    when: user_nmae\n    severity: low\n"})
	changed, err = s.Reload()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnknownVariable)
	assert.Contains(t, err.Error(), "rules.yaml:11:11: rule broken")
	assert.False(t, changed)
	assert.Equal(t, 0.0, testutil.ToFloat64(eng.m.reloadOK))
	assert.Len(t, eng.Rules(), 2, "old rules still loaded")

	// A good update: "removal" is unchanged and keeps its throttle count.
	cm.update(t, map[string]string{"rules.yaml": stageRulesV1 + "  - id: minor\n    when: minor\n    severity: low\n"})
	changed, err = s.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, 1.0, testutil.ToFloat64(eng.m.reloadOK))
	assert.Len(t, eng.Rules(), 3)
	assert.Equal(t, []string{"removal"}, removal("2", "A"), "2nd match fires: throttle state survived the reload")
	assert.Equal(t, 1.0, testutil.ToFloat64(eng.m.reloads.WithLabelValues("error")))
}

// The stage end to end on a real JetStream: fixture events published as
// ingest does come out as alerts in ALERTS with their deterministic ids;
// a second pass over the same events (redelivery) doubles nothing.
func TestStageEndToEnd(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	evs := fixtures.RecentChanges(t)[:600]
	rulesYAML := `
rules:
  - id: human-edit
    when: type == "edit" && !bot
    severity: low
  - id: big-removal
    when: edit_delta < -200
    severity: high
  - id: needs-diff
    when: type == "new" && len(added_lines) == 0
    severity: info
`
	want := map[string]bool{}
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, src("r.yaml", rulesYAML))
	for _, ev := range evs {
		for _, a := range e.Eval(ctx, ev, nil, t0) {
			want[a.ID] = true
		}
	}
	require.Greater(t, len(want), 50)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(rulesYAML), 0o644))
	publish := func() {
		for _, ev := range evs {
			data, err := json.Marshal(ev)
			require.NoError(t, err)
			natstest.Publish(t, js, pipeline.RecentChangeSubject(ev.Wiki, ev.Type), ev.Meta.ID, data)
		}
	}
	publish()
	// A poison message is dead-lettered, not retried forever.
	_, err := js.Publish(ctx, "rc.enwiki.edit", []byte("{not json"))
	require.NoError(t, err)

	run := func(durable string) {
		reg := prometheus.NewRegistry()
		s, err := NewStage(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, StageConfig{Paths: []string{dir}, Durable: durable, Workers: 4,
			Engine: EngineConfig{MaxMatchRate: -1}}, nil)
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		// Wait until the consumer has acked everything.
		natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, durable, 30*time.Second)
		stop()
		require.NoError(t, <-done)
	}
	run("rules")

	// Every expected alert, once, with its id as Nats-Msg-Id and the right subject.
	msgs := natstest.StreamMessages(t, js, pipeline.StreamAlerts, len(want), 30*time.Second)
	got := map[string]int{}
	partial := 0
	for _, m := range msgs {
		var a event.Alert
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		got[a.ID]++
		assert.Equal(t, a.ID, m.Headers().Get(jetstream.MsgIDHeader))
		assert.Equal(t, pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID), m.Subject())
		if a.Rule.ID == "needs-diff" {
			assert.True(t, a.Partial, "no enricher: evaluated without the diff")
			partial++
		}
	}
	assert.Len(t, got, len(want))
	for id := range want {
		assert.Equal(t, 1, got[id], id)
	}
	assert.Greater(t, partial, 0)
	dlq := natstest.StreamMessages(t, js, pipeline.StreamDeadLetter, 1, 10*time.Second)
	require.Len(t, dlq, 1)
	assert.Equal(t, "decode", dlq[0].Headers().Get(pipeline.HeaderReason))

	// Redelivery: a fresh consumer evaluates every event again; the alerts
	// are deduplicated by their ids.
	run("rules-again")
	msgs = natstest.StreamMessages(t, js, pipeline.StreamAlerts, len(want), 5*time.Second)
	assert.Len(t, msgs, len(want), "no doubled alert")
}

// BenchmarkStageEndToEnd is the evaluator stage from RECENTCHANGE to
// ALERTS on a real embedded JetStream, default pack, no enrichment: b.N
// fixture events (with distinct ids) are published first, then the stage
// consumes them all.
func BenchmarkStageEndToEnd(b *testing.B) {
	srv := natstest.Start(b)
	_, js := srv.Connect(b)
	ctx := context.Background()
	evs := fixtures.RecentChanges(b)
	pub, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(b, err)
	for i := 0; i < b.N; i++ {
		ev := *evs[i%len(evs)]
		ev.Meta.ID = ev.Meta.ID + "-" + strconv.Itoa(i)
		data, err := json.Marshal(&ev)
		require.NoError(b, err)
		m := nats.NewMsg(pipeline.RecentChangeSubject(ev.Wiki, ev.Type))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.Meta.ID)
		_, err = js.PublishMsgAsync(m)
		require.NoError(b, err)
	}
	<-js.PublishAsyncComplete()
	info, err := pub.Info(ctx)
	require.NoError(b, err)
	require.Equal(b, uint64(b.N), info.State.Msgs)

	s, err := NewStage(pipeline.Deps{JS: js, Log: zerolog.Nop()},
		StageConfig{Default: packSources(b), Workers: 8, Engine: EngineConfig{MaxMatchRate: -1}}, nil)
	require.NoError(b, err)
	natstest.BenchStage(b, js, s, pipeline.StreamRecentChange, "rules")
}

// KV-backed list entries reach a running stage's rules at once, and
// expire with their per-key TTL.
func TestKVLists(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketRules)
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, AddListEntry(ctx, kv, ListEntry{List: "watched", Value: "Main Page", Reason: "test"}, 0, now))
	require.NoError(t, AddListEntry(ctx, kv, ListEntry{List: "badwords", Value: "poop"}, 0, now))

	s, err := NewStage(pipeline.Deps{JS: js, Log: zerolog.Nop()}, StageConfig{KVLists: true, Default: []Source{src("l.yaml", `
lists:
  watched: []
  badwords: [fart]
rules:
  - id: watched
    when: in_list("watched", title)
    severity: info
  - id: bad-summary
    when: list_contains("badwords", summary)
    severity: low
`)}}, nil)
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { stop(); require.NoError(t, <-done) }()

	eval := func(title, summary string) []string {
		ev := mustEvent(t, `{"meta":{"id":"x"},"type":"edit","title":"`+title+`","comment":"`+summary+`"}`)
		return alertRules(s.Engine().Eval(ctx, ev, nil, time.Now()))
	}
	require.Eventually(t, func() bool { return len(eval("Main Page", "")) == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"bad-summary"}, eval("X", "what a POOP."))
	assert.Equal(t, []string{"bad-summary"}, eval("X", "fart"), "file entries still count")
	assert.Empty(t, eval("X", "nincompoop"))

	require.NoError(t, AddListEntry(ctx, kv, ListEntry{List: "watched", Value: "Brief Page"}, time.Second, time.Now()))
	require.Eventually(t, func() bool { return len(eval("Brief Page", "")) == 1 }, 10*time.Second, 10*time.Millisecond)
	entries, err := ListEntries(ctx, kv, "watched")
	require.NoError(t, err)
	assert.Len(t, entries, 2)
	// Expiry: the server removes the key after its TTL; the entry stops matching.
	require.Eventually(t, func() bool { return len(eval("Brief Page", "")) == 0 }, 15*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		entries, err := ListEntries(ctx, kv, "watched")
		return err == nil && len(entries) == 1
	}, 15*time.Second, 100*time.Millisecond, "the server expires the key")

	require.NoError(t, RemoveListEntry(ctx, kv, "watched", "Main Page"))
	require.Eventually(t, func() bool { return len(eval("Main Page", "")) == 0 }, 10*time.Second, 10*time.Millisecond)
}

// Cancelling the stage at any point of its start-up (opening the rules KV
// bucket for the lists and the disabled rules, reading them, creating the
// consumer) is a normal stop: Run returns nil, as on a cancel while running.
func TestStageCancelDuringStartUp(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	log, logs := logtest.New(t)
	rulesYAML := "rules:\n  - id: bots\n    when: bot\n    severity: info\n"
	for i, after := range []time.Duration{-1, 0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond,
		2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		s, err := NewStage(pipeline.Deps{JS: js, Reg: prometheus.NewRegistry(), Log: log},
			StageConfig{Default: []Source{src("r.yaml", rulesYAML)}, KVLists: true, Durable: "startup-" + strconv.Itoa(i)}, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		if after < 0 {
			cancel() // before Run
		} else {
			time.AfterFunc(after, cancel)
		}
		assert.NoError(t, s.Run(ctx), "cancelled %s into start-up", after)
		cancel()
	}
	assert.Empty(t, logs.Matching(`"level":"error"`), "a stop is not an error")
}
