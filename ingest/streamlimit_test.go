package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// With a small byte limit on RECENTCHANGE, ingest runs far past it: every
// event is published (no publish error, no stall), the oldest events are
// discarded, the stream stays under its limit, and the usage gauges say how
// much history is kept.
func TestIngestPastTheStreamByteLimit(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t) // the default limits first: the override below updates the stream
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const limit = 256 << 10
	topo := pipeline.Topology{Replicas: 1, Storage: jetstream.FileStorage,
		Limits: map[string]pipeline.Limits{pipeline.StreamRecentChange: {MaxBytes: limit}}}
	require.NoError(t, pipeline.Ensure(ctx, js, topo))

	const total = 3000 // about 4 MB: some 16 times the limit
	_, url := startReplay(t, ingest.ReplayConfig{Events: uniqueEvents(t, 500), Loop: true, UniqueIDs: true, Limit: total})
	r := startIngester(t, nc, url, ingest.Config{})
	require.Eventually(t, func() bool {
		return counter(t, r.reg, "rcwatch_ingest_events_published_total") == total
	}, 60*time.Second, 20*time.Millisecond, "ingest stalled at %v events", counter(t, r.reg, "rcwatch_ingest_events_published_total"))
	select {
	case err := <-r.done:
		t.Fatalf("ingest stopped: %v", err)
	default:
	}

	s, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(limit), info.Config.MaxBytes)
	assert.Equal(t, jetstream.DiscardOld, info.Config.Discard)
	assert.LessOrEqual(t, info.State.Bytes, uint64(limit), "the stream stays within its limit")
	assert.Equal(t, uint64(total), info.State.LastSeq, "the newest event is stored")
	assert.Greater(t, info.State.FirstSeq, uint64(total/2), "the oldest events went")
	assert.Less(t, info.State.Msgs, uint64(total/4))
	assert.Equal(t, 0.0, counter(t, r.reg, "rcwatch_ingest_publish_errors_total"))
	assert.Equal(t, 0.0, counter(t, r.reg, "rcwatch_ingest_dead_letters_total"))

	reg := prometheus.NewRegistry()
	_, err = pipeline.NewStreamCollector(reg, js, topo, time.Now)
	require.NoError(t, err)
	assert.Equal(t, float64(limit), counter(t, reg, "rcwatch_stream_max_bytes", "stream", pipeline.StreamRecentChange))
	assert.Equal(t, float64(info.State.FirstSeq), counter(t, reg, "rcwatch_stream_first_sequence", "stream", pipeline.StreamRecentChange))
	assert.InDelta(t, float64(info.State.Bytes), counter(t, reg, "rcwatch_stream_bytes", "stream", pipeline.StreamRecentChange), limit)
	assert.Equal(t, 0.0, counter(t, reg, "rcwatch_stream_info_failed"))
	require.NoError(t, r.stop(t))
}
