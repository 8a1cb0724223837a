package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestSubjectTokens(t *testing.T) {
	tests := []struct{ wiki, typ, want string }{
		{"enwiki", "edit", "rc.enwiki.edit"},
		{"", "log", "rc.unknown.log"},
		{"en.wiki", "a b", "rc.en_wiki.a_b"},
		{"x>", "*", "rc.x_._"},
		{"wiki\r\nPUB", "edit", "rc.wiki__PUB.edit"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, pipeline.RecentChangeSubject(tc.wiki, tc.typ))
	}
	assert.Equal(t, "alert.enwiki.vandalism-score", pipeline.AlertSubject("enwiki", "vandalism-score"))
}

func TestEnsureIsIdempotentAndReportsDrift(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t) // Ensure ran once
	ctx := context.Background()
	topo := pipeline.Topology{Replicas: 1, Storage: jetstream.FileStorage}
	require.NoError(t, pipeline.Ensure(ctx, js, topo), "second Ensure is a no-op")

	// An operator changed the stream: Ensure reports it and changes nothing.
	s, err := js.Stream(ctx, pipeline.StreamAlerts)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"alert.>", "other.>"}
	cfg.Duplicates = time.Minute
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	err = pipeline.Ensure(ctx, js, topo)
	require.ErrorIs(t, err, pipeline.ErrConfigDrift)
	assert.Contains(t, err.Error(), "ALERTS")
	assert.Contains(t, err.Error(), "subjects")
	assert.Contains(t, err.Error(), "duplicate window")
	s, err = js.Stream(ctx, pipeline.StreamAlerts)
	require.NoError(t, err)
	assert.Equal(t, []string{"alert.>", "other.>"}, s.CachedInfo().Config.Subjects, "not silently changed")
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		delivered int
		want      pipeline.Outcome
	}{
		{"ok", nil, 1, pipeline.OutcomeAck},
		{"invalid", pipeline.Invalid("bad", errors.New("x")), 1, pipeline.OutcomeDeadLetter},
		{"retry", pipeline.Retry(errors.New("429"), time.Second), 9, pipeline.OutcomeRetry},
		{"error", errors.New("boom"), 1, pipeline.OutcomeNak},
		{"error at max deliver", errors.New("boom"), 3, pipeline.OutcomeDeadLetter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, pipeline.Classify(tc.err, tc.delivered, 3))
		})
	}
}

// The runner acks good messages, dead-letters poison ones with the reason,
// redelivers failures until MaxDeliver, then dead-letters them; one bad
// message never stops the loop.
func TestRunnerAckRetryDeadLetter(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, body := range []string{"ok-1", "poison", "flaky", "always-fails", "ok-2"} {
		_, err := js.Publish(ctx, "rc.testwiki.edit", []byte(body))
		require.NoError(t, err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var handled atomic.Int32
	h := func(_ context.Context, m jetstream.Msg) error {
		mu.Lock()
		seen[string(m.Data())]++
		n := seen[string(m.Data())]
		mu.Unlock()
		defer handled.Add(1)
		switch string(m.Data()) {
		case "poison":
			return pipeline.Invalid("undecodable", errors.New("not JSON"))
		case "flaky":
			if n < 2 {
				return errors.New("temporary")
			}
		case "always-fails":
			return errors.New("permanent but unclassified")
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	r, err := pipeline.NewRunner(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", MaxDeliver: 3,
		Backoff: 10 * time.Millisecond, AckWait: 5 * time.Second,
	}, h)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// ok-1, poison, ok-2: 1 each; flaky: 2; always-fails: 3 = 8 handler calls.
	require.Eventually(t, func() bool { return handled.Load() >= 8 }, 30*time.Second, 10*time.Millisecond)
	msgs := natstest.StreamMessages(t, js, pipeline.StreamDeadLetter, 2, 10*time.Second)
	require.Len(t, msgs, 2)
	reasons := map[string]string{}
	for _, m := range msgs {
		reasons[string(m.Data())] = m.Headers().Get(pipeline.HeaderReason)
	}
	assert.Equal(t, map[string]string{"poison": "undecodable", "always-fails": "max_deliver"}, reasons)
	cancel()
	require.NoError(t, <-done)

	mu.Lock()
	assert.Equal(t, map[string]int{"ok-1": 1, "poison": 1, "flaky": 2, "always-fails": 3, "ok-2": 1}, seen)
	mu.Unlock()
	c, err := js.Consumer(context.Background(), pipeline.StreamRecentChange, "test")
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	assert.Zero(t, info.NumAckPending, "everything acked or terminated")
	assert.Zero(t, info.NumPending)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	results := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "rcwatch_stage_messages_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" {
						results[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	assert.Equal(t, map[string]float64{"ok": 3, "dead_letter": 2, "error": 3}, results)
}
