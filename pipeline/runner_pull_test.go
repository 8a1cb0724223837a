package pipeline_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// startPullRunner runs a one-worker runner on RECENTCHANGE that records
// the stream sequence of every message it handles, in handling order; each
// message takes the handler work long.
func startPullRunner(t *testing.T, js jetstream.JetStream, reg *prometheus.Registry, cfg pipeline.RunnerConfig, work time.Duration) (handled func() []uint64) {
	t.Helper()
	var mu sync.Mutex
	var seqs []uint64
	h := func(_ context.Context, m jetstream.Msg) error {
		time.Sleep(work) // the handler's own work (an API call, say)
		md, err := m.Metadata()
		require.NoError(t, err)
		mu.Lock()
		seqs = append(seqs, md.Sequence.Stream)
		mu.Unlock()
		return nil
	}
	cfg.Stage, cfg.Stream, cfg.Durable, cfg.Workers, cfg.PlainAck = "test", pipeline.StreamRecentChange, "test", 1, true
	r, err := pipeline.NewRunner(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, cfg, h)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), seqs...)
	}
}

// publishN stores n messages on RECENTCHANGE, their bodies 0 … n-1.
func publishN(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	for i := range n {
		_, err := js.PublishAsync("rc.testwiki.edit", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing timed out")
	}
}

// Messages spanning many pull batches reach a single worker in stream
// order, every one once, and no order gap is taken for events lost to
// retention.
func TestRunnerPullsInOrderAcrossBatches(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	const n = 1000
	publishN(t, js, n)
	reg := prometheus.NewRegistry()
	handled := startPullRunner(t, js, reg, pipeline.RunnerConfig{}, 0)
	require.Eventually(t, func() bool { return len(handled()) == n }, 30*time.Second, 10*time.Millisecond)
	got := handled()
	for i, seq := range got {
		require.Equal(t, uint64(i+1), seq, "message %d in stream order", i)
	}
	assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_skipped_total"))
}

// A stage that sat idle while its pull requests expired, one after the
// other, still receives the next event: every expired request is followed
// by a new one.
func TestRunnerKeepsPullingThroughExpiries(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	expiry := 100 * time.Millisecond
	handled := startPullRunner(t, js, prometheus.NewRegistry(), pipeline.RunnerConfig{PullExpiry: expiry}, 0)

	for round := 1; round <= 3; round++ {
		_, err := js.Publish(ctx, "rc.testwiki.edit", []byte(strconv.Itoa(round)))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(handled()) == round }, 10*time.Second, 10*time.Millisecond)
		// Idle across several expiries, until a request is open again.
		idleSince := time.Now()
		require.Eventually(t, func() bool {
			c, err := js.Consumer(ctx, pipeline.StreamRecentChange, "test")
			return err == nil && c.CachedInfo().NumWaiting >= 1 && time.Since(idleSince) > 5*expiry
		}, 10*time.Second, 20*time.Millisecond)
	}
}

// With a large PullBatch and a slow handler, the runner asks for no more
// than its workers finish well within AckWait: nothing waits in the client
// until the server redelivers it. (With a fixed batch of 256 the 80
// messages arrive at once, the last ones wait 3.2 s for the one worker, and
// those past the 2-s AckWait are redelivered and handled twice.)
func TestRunnerBatchFollowsHandlerPace(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	const n = 80
	publishN(t, js, n)
	reg := prometheus.NewRegistry()
	handled := startPullRunner(t, js, reg, pipeline.RunnerConfig{PullBatch: 256, AckWait: 2 * time.Second}, 40*time.Millisecond)
	require.Eventually(t, func() bool { return len(handled()) >= n }, time.Minute, 10*time.Millisecond)
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "test", 30*time.Second)
	assert.Len(t, handled(), n, "each message handled once")
	assert.Equal(t, 0.0, metrictest.Sum(t, reg, "rcwatch_stage_redeliveries_total"))
}
