package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// The rcwatch binary is built once for the package (proctest.Rcwatch).
func TestMain(m *testing.M) { proctest.Main(m) }

// startProc starts rcwatch with args; it is killed at cleanup.
func startProc(tb testing.TB, args ...string) *proctest.Proc {
	tb.Helper()
	return startProcEnv(tb, nil, args...)
}

// startProcEnv is startProc with extra environment variables.
func startProcEnv(tb testing.TB, env []string, args ...string) *proctest.Proc {
	tb.Helper()
	return proctest.Start(tb, proctest.Rcwatch(), proctest.Options{Env: env}, args...)
}

// testEvents returns the first n distinct events of one contiguous capture.
func testEvents(tb testing.TB, n int) [][]byte {
	return fixtures.Unique(tb, n, "recentchange.editgroups.qs_batch_with_reverts.jsonl")
}

func assertStreamIs(tb testing.TB, js jetstream.JetStream, events [][]byte) {
	tb.Helper()
	msgs := natstest.StreamMessages(tb, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	require.Len(tb, msgs, len(events))
	for i, m := range msgs {
		require.Equal(tb, string(events[i]), string(m.Data()), "event %d", i)
	}
}

// An ingest process killed with SIGKILL mid-run and started again: no event
// missing, none duplicated, in order.
func TestIngestProcessSIGKILLAndRestart(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	events := testEvents(t, 1500)
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: events, Rate: 1500}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	args := []string{"ingest", "--nats", srv.URL, "--source", hs.URL, "--ops-addr", ""}

	first := startProc(t, args...)
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 400, 60*time.Second)
	require.Error(t, first.Signal(t, syscall.SIGKILL, 10*time.Second))
	require.Less(t, natstest.Count(t, js, pipeline.StreamRecentChange), len(events), "killed mid-run")

	second := startProc(t, args...)
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	assertStreamIs(t, js, events)
	require.NoError(t, second.Signal(t, syscall.SIGTERM, 30*time.Second))
}

// SIGTERM: stop reading, wait for the acks, store the position, exit 0 —
// and the stored position is the last event in the stream.
func TestIngestProcessSIGTERMDrains(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	events := testEvents(t, 1500)
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: events, Rate: 2000}, zerolog.Nop())
	hs := httptest.NewServer(replay)
	t.Cleanup(hs.Close)
	p := startProc(t, "ingest", "--nats", srv.URL, "--source", hs.URL, "--ops-addr", "", "--drain-timeout", "10s")
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 300, 60*time.Second)
	start := time.Now()
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 15*time.Second), "exit status 0")
	assert.Less(t, time.Since(start), 10*time.Second)

	n := natstest.Count(t, js, pipeline.StreamRecentChange)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketIngest)
	require.NoError(t, err)
	e, err := kv.Get(ctx, "position.recentchange")
	require.NoError(t, err)
	assert.Equal(t, replay.ID(int64(n-1)), string(e.Value()), "position = the last stored event")
}

// `rcwatch run` with no --nats starts the embedded server, ingests, and
// serves /metrics, /healthz, /readyz.
func TestRunEmbeddedDefault(t *testing.T) {
	events := testEvents(t, 300)
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: events}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	port, natsPort := freeport.Must(t), freeport.Must(t)
	ops := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProc(t, "run", "--source", hs.URL, "--data-dir", t.TempDir(), "--ops-addr", ops,
		"--nats-port", fmt.Sprint(natsPort))

	nc, err := pipeline.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "test", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	httpGet(t, "http://"+ops+"/healthz")
	httpGet(t, "http://"+ops+"/readyz")
	// The counter follows the publish acks, which the stream can be seen to
	// hold a moment before ingest has processed them.
	assert.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, "http://"+ops+"/metrics"), "rcwatch_ingest_events_published_total 300\n")
	}, 30*time.Second, 50*time.Millisecond, "every stored event counted once")
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 30*time.Second))
}

func httpGet(tb testing.TB, url string) string {
	tb.Helper()
	var body []byte
	require.Eventually(tb, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "GET %s", url)
	return string(body)
}
