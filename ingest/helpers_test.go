package ingest_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// uniqueEvents returns n recorded events with distinct meta.ids.
func uniqueEvents(tb testing.TB, n int) [][]byte { return fixtures.Unique(tb, n) }

func startReplay(tb testing.TB, cfg ingest.ReplayConfig) (*ingest.Replay, string) {
	tb.Helper()
	r := ingest.NewReplay(cfg, zerolog.Nop())
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	return r, srv.URL + "/v2/stream/recentchange"
}

// running is an ingester running in the background of a test.
type running struct {
	in     *ingest.Ingester
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startIngester(tb testing.TB, nc *nats.Conn, url string, cfg ingest.Config) *running {
	tb.Helper()
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: url, IdleTimeout: time.Minute})
	require.NoError(tb, err)
	reg := prometheus.NewRegistry()
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 20 * time.Millisecond
	}
	if cfg.PositionInterval == 0 {
		cfg.PositionInterval = 50 * time.Millisecond
	}
	in, err := ingest.New(pipeline.Deps{NC: nc, Reg: reg, Log: zerolog.Nop()}, cfg, src)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{in: in, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	tb.Cleanup(func() { _ = r.stop(tb) })
	return r
}

// stop cancels the ingester and waits for its drain.
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return nil
		}
		close(r.done)
		return err
	case <-time.After(30 * time.Second):
		tb.Fatal("ingester did not stop within 30s")
		return nil
	}
}

func counter(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	return metrictest.Sum(tb, reg, name, labels...)
}

// assertExactly checks that RECENTCHANGE holds exactly the events, each
// once, in order, with the received bytes unchanged.
func assertExactly(tb testing.TB, js jetstream.JetStream, events [][]byte) {
	tb.Helper()
	msgs := natstest.StreamMessages(tb, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	require.Len(tb, msgs, len(events), "stream holds a different number of events")
	for i, m := range msgs {
		want := fixtures.MetaID(tb, events[i])
		require.Equal(tb, want, m.Headers().Get(jetstream.MsgIDHeader), "event %d out of order or missing", i)
		require.Equal(tb, string(events[i]), string(m.Data()), "event %d bytes changed", i)
	}
}

var zerologNop = zerolog.Nop()

// assertEachOnce checks that RECENTCHANGE holds exactly the events, each once.
func assertEachOnce(tb testing.TB, js jetstream.JetStream, events [][]byte) {
	tb.Helper()
	msgs := natstest.StreamMessages(tb, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	require.Len(tb, msgs, len(events))
	want := map[string]string{}
	for _, e := range events {
		want[fixtures.MetaID(tb, e)] = string(e)
	}
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		data, ok := want[id]
		require.True(tb, ok, "event %s unexpected or stored twice", id)
		require.Equal(tb, data, string(m.Data()))
		delete(want, id)
	}
	require.Empty(tb, want)
}
