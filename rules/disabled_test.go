package rules

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// A rule disabled automatically stays disabled across restarts of the
// stage (it used to fire 1,000 alerts per start), until its author changes
// it; deleting its KV record enables it at once.
func TestAutoDisableRemembered(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketRules)
	require.NoError(t, err)

	const v1 = `
rules:
  - id: too-broad
    when: type == "edit"
    severity: low
  - id: also-broad
    when: type == "edit" && minor == false
    severity: low
  - id: rare
    when: type == "edit" && rc_id % 50 == 0
    severity: low
`
	// run starts a stage on rules (a restart when called again) and
	// returns it with its stop function.
	run := func(rules string) (*Stage, func()) {
		s, err := NewStage(pipeline.Deps{JS: js, Log: zerolog.Nop()},
			StageConfig{Default: []Source{src("r.yaml", rules)}, Engine: EngineConfig{MaxMatchRate: 0.05, MinEvaluations: 100}}, nil)
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		// The stage evaluates its own events only once the records are
		// read; this test evaluates directly, so it waits for that.
		require.Eventually(t, s.Engine().off.loaded.Load, 10*time.Second, time.Millisecond)
		return s, func() { stop(); require.NoError(t, <-done) }
	}
	eval := func(s *Stage, n int) map[string]int {
		counts := map[string]int{}
		for i := range n {
			ev := mustEvent(t, `{"meta":{"id":"e`+strconv.Itoa(i)+`"},"id":`+strconv.Itoa(i)+`,"type":"edit"}`)
			for _, a := range s.Engine().Eval(ctx, ev, nil, t0) {
				counts[a.Rule.ID]++
			}
		}
		return counts
	}
	status := func(s *Stage) map[string]RuleStatus {
		out := map[string]RuleStatus{}
		for _, r := range s.Engine().Rules() {
			out[r.ID] = r
		}
		return out
	}

	s, stop := run(v1)
	assert.Equal(t, map[string]int{"too-broad": 100, "also-broad": 100, "rare": 4}, eval(s, 200))
	st := status(s)
	require.True(t, st["too-broad"].AutoDisabled)
	require.True(t, st["also-broad"].AutoDisabled)
	for _, id := range []string{"too-broad", "also-broad"} {
		key := disabledKey(id, st[id].Version)
		require.Eventually(t, func() bool { _, err := kv.Get(ctx, key); return err == nil }, 10*time.Second, 10*time.Millisecond, key)
	}
	stop()

	// Restart with the same rules: still disabled, from the first event.
	s, stop = run(v1)
	st = status(s)
	assert.True(t, st["too-broad"].AutoDisabled, "read from KV before the stage evaluates")
	assert.Equal(t, "match_rate", st["too-broad"].DisabledReason)
	assert.False(t, st["rare"].AutoDisabled)
	assert.Equal(t, map[string]int{"rare": 4}, eval(s, 200))
	stop()

	// The author changes too-broad: that rule starts enabled; also-broad,
	// unchanged, stays disabled.
	v2 := `
rules:
  - id: too-broad
    when: type == "edit" && bot == false
    severity: low
  - id: also-broad
    when: type == "edit" && minor == false
    severity: low
`
	s, stop = run(v2)
	st = status(s)
	assert.False(t, st["too-broad"].AutoDisabled)
	assert.True(t, st["also-broad"].AutoDisabled)
	assert.Equal(t, map[string]int{"too-broad": 50}, eval(s, 50))

	// An operator deletes also-broad's record: enabled again at once.
	require.NoError(t, kv.Delete(ctx, disabledKey("also-broad", st["also-broad"].Version)))
	require.Eventually(t, func() bool { return !status(s)["also-broad"].AutoDisabled }, 10*time.Second, 10*time.Millisecond)
	stop()

	keys, err := kv.ListKeysFiltered(ctx, kvDisabledPrefix+">")
	require.NoError(t, err)
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	assert.Len(t, left, 1, "too-broad's record of its old version; also-broad's was deleted")
	_ = jetstream.KeyValuePut
}
