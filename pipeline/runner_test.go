package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// countingHandler handles every message by counting it.
func countingHandler() (pipeline.Handler, func() int) {
	var n atomic.Int64
	return func(context.Context, jetstream.Msg) error { n.Add(1); return nil }, func() int { return int(n.Load()) }
}

// startRunner builds a runner and runs it until ctx ends; done receives
// what Run returned.
func startRunner(ctx context.Context, t *testing.T, d pipeline.Deps, cfg pipeline.RunnerConfig, h pipeline.Handler) (*pipeline.Runner, <-chan error) {
	t.Helper()
	r, err := pipeline.NewRunner(d, cfg, h)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, done
}

// fillStream limits a stream to max bytes, refusing new messages (DiscardNew),
// and fills it with one message so that every further publish fails with 503.
func fillStream(t *testing.T, js jetstream.JetStream, name, subject string, maxBytes int64) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxBytes, cfg.Discard = maxBytes, jetstream.DiscardNew
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	_, err = js.Publish(ctx, subject, bytes.Repeat([]byte("x"), int(maxBytes)-200))
	require.NoError(t, err)
	_, err = js.Publish(ctx, subject, bytes.Repeat([]byte("y"), 300))
	require.Error(t, err, "the stream is full")
}

// freeStream removes the limit and the filler.
func freeStream(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	require.NoError(t, err)
	require.NoError(t, s.Purge(ctx))
	cfg := s.CachedInfo().Config
	cfg.MaxBytes, cfg.Discard = -1, jetstream.DiscardOld
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}

// With ALERTS and DEADLETTER full, every alert and dead-letter publish fails
// (503). The runner keeps every event, far past MaxDeliver, says so
// (Ready, metric, error log), and once space is freed every event ends with
// its alert or its dead letter: nothing lost.
func TestRunnerWaitsWhileStorageIsFull(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, poisonEvery = 100, 10
	for i := range n {
		_, err := js.Publish(ctx, "rc.testwiki.edit", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	fillStream(t, js, pipeline.StreamAlerts, "alert.filler.x", 2048)
	fillStream(t, js, pipeline.StreamDeadLetter, "dlq.filler", 2048)

	h := func(ctx context.Context, m jetstream.Msg) error {
		i, _ := strconv.Atoi(string(m.Data()))
		if i%poisonEvery == 0 {
			return pipeline.Invalid("poison", errors.New("cannot be handled"))
		}
		a := nats.NewMsg("alert.testwiki.rule")
		a.Data = bytes.Repeat([]byte("a"), 300)
		a.Header.Set(jetstream.MsgIDHeader, "alert-"+string(m.Data()))
		if _, err := js.PublishMsg(ctx, a); err != nil {
			return fmt.Errorf("publishing alert: %w", err)
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	logs := logtest.NewSink()
	r, err := pipeline.NewRunner(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.New(logs)}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", MaxDeliver: 3, Workers: 16,
		Backoff: 10 * time.Millisecond, StorageBackoffMax: 200 * time.Millisecond, WatchInterval: 50 * time.Millisecond,
		AckWait: 5 * time.Second, PlainAck: true,
	}, h)
	require.NoError(t, err)
	require.ErrorContains(t, r.Ready(), "not running")
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// Every alert-producing event is tried again and again: well past
	// MaxDeliver (3), where the old runner dead-lettered (into a full
	// DEADLETTER) and the server stopped delivering.
	alerting := float64(n - n/poisonEvery)
	require.Eventually(t, func() bool {
		return metrictest.Sum(t, reg, "rcwatch_stage_messages_total", "result", "storage_wait") >= 5*alerting
	}, 60*time.Second, 20*time.Millisecond)
	err = r.Ready()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NATS cannot store")
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_stage_storage_failing"))
	assert.Zero(t, metrictest.Sum(t, reg, "rcwatch_stage_messages_total", "result", "ok"))
	assert.Zero(t, metrictest.Sum(t, reg, "rcwatch_stage_messages_total", "result", "dead_letter"),
		"no dead letter is counted done while DEADLETTER is full")
	assert.Contains(t, logs.String(), "NATS cannot store this stage's output")
	c, err := js.Consumer(ctx, pipeline.StreamRecentChange, "test")
	require.NoError(t, err)
	ci, err := c.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, n, ci.NumAckPending, "every event is still held")

	freeStream(t, js, pipeline.StreamAlerts)
	freeStream(t, js, pipeline.StreamDeadLetter)
	require.Eventually(t, func() bool {
		ci, err := c.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	}, 60*time.Second, 20*time.Millisecond)

	alerts := natstest.StreamMessages(t, js, pipeline.StreamAlerts, int(alerting), 10*time.Second)
	ids := map[string]bool{}
	for _, m := range alerts {
		ids[m.Headers().Get(jetstream.MsgIDHeader)] = true
	}
	dead := natstest.StreamMessages(t, js, pipeline.StreamDeadLetter, n/poisonEvery, 10*time.Second)
	deadData := map[string]string{}
	for _, m := range dead {
		deadData[string(m.Data())] = m.Headers().Get(pipeline.HeaderReason)
	}
	for i := range n {
		if i%poisonEvery == 0 {
			assert.Equal(t, "poison", deadData[strconv.Itoa(i)], "event %d dead-lettered", i)
		} else {
			assert.True(t, ids["alert-"+strconv.Itoa(i)], "event %d has its alert", i)
		}
	}
	assert.Len(t, alerts, int(alerting), "each alert stored once")
	assert.Len(t, dead, n/poisonEvery, "each dead letter stored once")
	require.Eventually(t, func() bool {
		return r.Ready() == nil && metrictest.Sum(t, reg, "rcwatch_stage_storage_failing") == 0
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// Events removed by retention before the consumer reached them are
// detected (next sequence below the stream's first), counted, logged at
// error level, and reported by Ready.
func TestRunnerReportsEventsAgedOut(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			_, err := js.Publish(ctx, "rc.testwiki.edit", []byte(strconv.Itoa(i)))
			require.NoError(t, err)
		}
	}
	var mu sync.Mutex
	var seen []string
	h := func(_ context.Context, m jetstream.Msg) error {
		mu.Lock()
		seen = append(seen, string(m.Data()))
		mu.Unlock()
		return nil
	}
	handled := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	start := func(reg *prometheus.Registry, logs *logtest.Sink) (*pipeline.Runner, func()) {
		r, err := pipeline.NewRunner(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.New(logs)}, pipeline.RunnerConfig{
			Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test",
			WatchInterval: 50 * time.Millisecond, PlainAck: true,
		}, h)
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return r, func() { cancel(); require.NoError(t, <-done) }
	}

	publish(0, 10)
	_, stop := start(prometheus.NewRegistry(), logtest.NewSink())
	require.Eventually(t, func() bool { return handled() == 10 }, 10*time.Second, 10*time.Millisecond)
	stop()

	// While the stage is down, 100 more arrive and retention keeps only 20.
	publish(10, 110)
	s, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 20
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	logs := logtest.NewSink()
	r, stop := start(reg, logs)
	defer stop()
	require.Eventually(t, func() bool { return handled() == 30 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return metrictest.Sum(t, reg, "rcwatch_stage_skipped_total") == 80
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	got := map[string]bool{}
	for _, v := range seen[10:] {
		got[v] = true
	}
	mu.Unlock()
	for i := 90; i < 110; i++ {
		assert.True(t, got[strconv.Itoa(i)], "event %d kept by retention is handled", i)
	}
	err = r.Ready()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "retention")
	assert.Contains(t, logs.String(), `"level":"error"`)
	assert.Contains(t, logs.String(), `"count":80`)
	assert.Equal(t, 80.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_total"), "counted once")
	assert.Equal(t, 80.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_sequences_total"), "without a filter, the same")
}

// A consumer with a subject filter (the action workers) cannot know how
// many removed messages matched it: the stream sequences removed past its
// position are counted (rcwatch_stage_skipped_sequences_total, an upper
// bound), logged at error level, and reported by Ready; skipped_total
// stays exact (0). Shown both when a watch sees the consumer behind and
// when the consumer jumps past the removed sequences between two watches
// (the delivery's gap). Once caught up, Ready keeps reporting the loss for
// at least minSkipWindow (5 min of the runner's clock), then clears.
func TestRunnerRetentionSkippedFiltered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		watch  time.Duration
		clears time.Duration // after max(10×watch, 5 min)
	}{
		{"seen by the watch", 50 * time.Millisecond, 6 * time.Minute},
		{"seen in the delivery gap", time.Hour, 11 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			_, js := srv.Connect(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var offset atomic.Int64 // the runner's clock runs ahead by this
			now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			var mu sync.Mutex
			var seen []uint64
			h := func(_ context.Context, m jetstream.Msg) error {
				md, err := m.Metadata()
				require.NoError(t, err)
				mu.Lock()
				seen = append(seen, md.Sequence.Stream)
				mu.Unlock()
				return nil
			}
			handled := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
			reg := prometheus.NewRegistry()
			logs := logtest.NewSink()
			r, done := startRunner(ctx, t, pipeline.Deps{JS: js, Reg: reg, Log: zerolog.New(logs), Now: now}, pipeline.RunnerConfig{
				Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", FilterSubjects: []string{"rc.testwiki.>"},
				WatchInterval: tc.watch, PlainAck: true,
			}, h)

			// Messages 1..100, the odd ones matching. The consumer handles
			// 1..9, then is paused at the server (it reaches nothing more).
			publish := func(from, to int) {
				for seq := from; seq <= to; seq++ {
					wiki := "testwiki"
					if seq%2 == 0 {
						wiki = "otherwiki"
					}
					_, err := js.Publish(ctx, "rc."+wiki+".edit", []byte(strconv.Itoa(seq)))
					require.NoError(t, err)
				}
			}
			publish(1, 9)
			require.Eventually(t, func() bool { return handled() == 5 }, 10*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
			_, err := js.PauseConsumer(ctx, pipeline.StreamRecentChange, "test", time.Now().Add(time.Hour))
			require.NoError(t, err)
			publish(10, 100)

			// Retention keeps the last 20 (81..100): 10..80 are removed
			// past the consumer's position (9), 35 of them matching.
			s, err := js.Stream(ctx, pipeline.StreamRecentChange)
			require.NoError(t, err)
			cfg := s.CachedInfo().Config
			cfg.MaxMsgs = 20
			_, err = js.UpdateStream(ctx, cfg)
			require.NoError(t, err)
			_, err = js.ResumeConsumer(ctx, pipeline.StreamRecentChange, "test")
			require.NoError(t, err)

			// Handled: 1..9 and the 10 matching kept (81, 83 … 99).
			require.Eventually(t, func() bool { return handled() == 15 }, 10*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool {
				return metrictest.Sum(t, reg, "rcwatch_stage_skipped_sequences_total") == 71
			}, 10*time.Second, 10*time.Millisecond)
			assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_total"), "how many matched cannot be known")
			line := logs.Await(t, 0, 10*time.Second, `"level":"error"`, `"sequences":71`)
			assert.Equal(t, 10.0, line["first_seq"])
			assert.Equal(t, 80.0, line["last_seq"])

			// Caught up (the watch has seen it within retention again),
			// the loss is still reported...
			var rerr error
			require.Eventually(t, func() bool {
				rerr = r.Ready()
				return rerr != nil && !strings.Contains(rerr.Error(), "behind")
			}, 10*time.Second, 10*time.Millisecond)
			assert.Contains(t, rerr.Error(), "removed by retention")
			assert.Contains(t, rerr.Error(), "71 stream sequences skipped")
			offset.Store(int64(4 * time.Minute))
			require.Error(t, r.Ready(), "4 minutes later: still reported")
			assert.Contains(t, r.Ready().Error(), "71 stream sequences skipped")
			// ... and clears after the window (the counters keep it).
			offset.Store(int64(tc.clears))
			require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
			assert.Equal(t, 71.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_sequences_total"), "counted once")
			cancel()
			require.NoError(t, <-done)
		})
	}
}

// A consumer that stops delivering while messages are pending (here: paused
// on the server) makes the stage not ready and the watchdog pull afresh;
// when deliveries resume the stage is ready again.
func TestRunnerReportsStall(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, handled := countingHandler()
	reg := prometheus.NewRegistry()
	r, done := startRunner(ctx, t, pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test",
		WatchInterval: 50 * time.Millisecond, StallAfter: 300 * time.Millisecond, PlainAck: true,
	}, h)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 10*time.Millisecond)

	_, err := js.PauseConsumer(ctx, pipeline.StreamRecentChange, "test", time.Now().Add(time.Hour))
	require.NoError(t, err)
	_, err = js.Publish(ctx, "rc.testwiki.edit", []byte("waiting"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		err := r.Ready()
		return err != nil && strings.Contains(err.Error(), "stalled")
	}, 10*time.Second, 10*time.Millisecond)
	assert.GreaterOrEqual(t, metrictest.Sum(t, reg, "rcwatch_stage_pull_stalls_total"), 1.0)

	_, err = js.ResumeConsumer(ctx, pipeline.StreamRecentChange, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return handled() == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// The runner survives its consumer being deleted and the server restarting:
// it recreates the consumer and every message is handled.
func TestRunnerRecoversConsumerAndServer(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]bool{}
	h := func(_ context.Context, m jetstream.Msg) error {
		mu.Lock()
		seen[string(m.Data())] = true
		mu.Unlock()
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	r, done := startRunner(ctx, t, pipeline.Deps{JS: js, Log: zerolog.Nop()}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", PlainAck: true,
	}, h)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			natstest.Publish(t, js, "rc.testwiki.edit", "m"+strconv.Itoa(i), []byte(strconv.Itoa(i)))
		}
	}
	publish(0, 10)
	require.Eventually(t, func() bool { return count() == 10 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, js.DeleteConsumer(ctx, pipeline.StreamRecentChange, "test"))
	publish(10, 20)
	require.Eventually(t, func() bool { return count() == 20 }, 30*time.Second, 10*time.Millisecond)

	srv.Restart(t)
	require.Eventually(t, func() bool {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		_, err := js.Stream(pctx, pipeline.StreamRecentChange)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond)
	publish(20, 30)
	require.Eventually(t, func() bool { return count() == 30 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return r.Ready() == nil }, 30*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// TestRunnerStartsWhileNATSIsDown: a stage started while NATS cannot answer
// (a cluster electing a leader, a server restarting) waits and says so, then
// consumes once the server is back; it does not stop with an error (the
// rehearsal's edit replica did, when a node died as it started).
func TestRunnerStartsWhileNATSIsDown(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	srv.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handled := make(chan string, 10)
	logs := logtest.NewSink()
	r, done := startRunner(ctx, t, pipeline.Deps{JS: js, Log: zerolog.New(logs)}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", PlainAck: true,
	}, func(_ context.Context, m jetstream.Msg) error { handled <- string(m.Data()); return nil })
	logs.Await(t, 0, 30*time.Second, "NATS cannot create the consumer yet")
	require.Error(t, r.Ready(), "not ready while it cannot consume")

	srv.Restart(t)
	natstest.WaitStream(t, js, pipeline.StreamRecentChange, 30*time.Second)
	natstest.Publish(t, js, "rc.testwiki.edit", "late", []byte("late"))
	select {
	case got := <-handled:
		require.Equal(t, "late", got)
	case err := <-done:
		t.Fatalf("the stage stopped instead of waiting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the message published once NATS was back was never handled")
	}
	cancel()
	require.NoError(t, <-done)
}

// An idle consumer with a subject filter is not moved past the messages
// that do not match it: its delivered sequence stays behind while the
// stream goes on. When retention removes those, nothing of its was lost:
// no count, not "behind", ready (it used to report itself behind the
// stream's retention).
func TestRunnerRetentionIdleFilteredIsNoLoss(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, handled := countingHandler()
	reg := prometheus.NewRegistry()
	logs := logtest.NewSink()
	r, done := startRunner(ctx, t, pipeline.Deps{JS: js, Reg: reg, Log: zerolog.New(logs)}, pipeline.RunnerConfig{
		Stage: "test", Stream: pipeline.StreamRecentChange, Durable: "test", FilterSubjects: []string{"rc.testwiki.>"},
		WatchInterval: 50 * time.Millisecond, PlainAck: true,
	}, h)
	publish := func(subject string, count int) {
		for range count {
			_, err := js.Publish(ctx, subject, []byte("x"))
			require.NoError(t, err)
		}
	}

	publish("rc.testwiki.edit", 1)
	require.Eventually(t, func() bool { return handled() == 1 }, 10*time.Second, 10*time.Millisecond)
	publish("rc.otherwiki.edit", 100) // 2..101
	logs.Await(t, 0, 10*time.Second, `"passed":101`)
	ci, err := js.Consumer(ctx, pipeline.StreamRecentChange, "test")
	require.NoError(t, err)
	require.Less(t, ci.CachedInfo().Delivered.Stream, uint64(101), "the server leaves an idle filtered consumer behind")

	// Retention keeps the last 20 (82..101), then more arrive (102..110).
	s, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 20
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	publish("rc.otherwiki.edit", 9)
	logs.Await(t, 0, 10*time.Second, `"passed":110`) // watches after the removal
	publish("rc.testwiki.edit", 1)                   // 111: a delivery past the gap
	require.Eventually(t, func() bool { return handled() == 2 }, 10*time.Second, 10*time.Millisecond)
	logs.Await(t, 0, 10*time.Second, `"passed":111`)

	assert.NoError(t, r.Ready())
	assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_sequences_total"))
	assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_total"))
	assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_behind_retention"))
	assert.Empty(t, logs.Matching(`"level":"error"`))
	cancel()
	require.NoError(t, <-done)
}
