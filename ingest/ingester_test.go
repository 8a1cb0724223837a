package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Malformed input is dead-lettered with its reason, counted, and ingest
// carries on with the next event.
func TestIngestMalformedInputGoesToDeadLetter(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	good := uniqueEvents(t, 4)
	huge := `{"meta":{"id":"huge-1","dt":"2024-02-06T16:58:10Z"},"type":"edit","wiki":"enwiki","comment":"` +
		strings.Repeat("x", 2<<20) + `"}`
	canary := `{"meta":{"id":"canary-1","domain":"canary","dt":"2024-02-06T16:58:10Z"},"type":"edit","wiki":"enwiki"}`
	events := [][]byte{
		good[0],
		[]byte(`{"meta":{"id":"bad-json"`), // invalid JSON, followed by more frames
		[]byte("{\"meta\":{\"id\":\"bad-utf8\"},\"title\":\"\xff\xfe\",\"wiki\":\"enwiki\",\"type\":\"edit\"}"),
		good[1],
		[]byte(huge),
		[]byte(`{"meta":{"dt":"2024-02-06T16:58:10Z"},"type":"edit","wiki":"enwiki"}`), // no meta.id
		[]byte(canary),
		good[2],
		[]byte(`{"meta":{"id":"multi"},` + "\n" + `"type":"edit"}`), // two data: lines, joined with \n: valid JSON
		good[3],
	}
	_, url := startReplay(t, ingest.ReplayConfig{Events: events})
	r := startIngester(t, nc, url, ingest.Config{})

	natstest.WaitCount(t, js, pipeline.StreamDeadLetter, 4, 30*time.Second)
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 5, 30*time.Second)
	require.NoError(t, r.stop(t))

	got := natstest.Messages(t, js, pipeline.StreamRecentChange)
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	assert.Equal(t, []string{fixtures.MetaID(t, good[0]), fixtures.MetaID(t, good[1]), fixtures.MetaID(t, good[2]), "multi", fixtures.MetaID(t, good[3])}, ids)

	dead := natstest.Messages(t, js, pipeline.StreamDeadLetter)
	var reasons []string
	for _, m := range dead {
		reason := m.Headers().Get(pipeline.HeaderReason)
		reasons = append(reasons, reason[:strings.IndexByte(reason, ':')])
		assert.Contains(t, m.Headers().Get(pipeline.HeaderSource), `"offset":`, "the dead letter names its position")
		assert.LessOrEqual(t, len(m.Data()), 64<<10)
	}
	assert.Equal(t, []string{"invalid_json", "invalid_utf8", "too_large", "missing_meta_id"}, reasons)
	assert.Equal(t, fmt.Sprint(len(huge)), dead[2].Headers().Get("Rc-Original-Size"))

	for reason, want := range map[string]float64{"invalid_json": 1, "invalid_utf8": 1, "too_large": 1, "missing_meta_id": 1} {
		assert.Equal(t, want, counter(t, r.reg, "rcwatch_ingest_malformed_total", "reason", reason), reason)
	}
	assert.Equal(t, 1.0, counter(t, r.reg, "rcwatch_ingest_canaries_dropped_total"))
	assert.Equal(t, 5.0, counter(t, r.reg, "rcwatch_ingest_events_published_total"))
	assert.Equal(t, 10.0, counter(t, r.reg, "rcwatch_ingest_events_received_total"))
	assert.Equal(t, 4.0, counter(t, r.reg, "rcwatch_ingest_dead_letters_total"))
}

// A frame cut by the end of the connection (no blank line, data truncated)
// is read again after reconnecting, not lost and not dead-lettered.
func TestIngestTruncatedFrameAtEOFIsReadAgain(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 4)
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: events}, zerologNop)
	var conns atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if conns.Add(1) == 1 {
			// First connection: two frames, then half of the third, then EOF.
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, ":ok\n\n")
			for i := 0; i < 2; i++ {
				fmt.Fprintf(w, "event: message\nid: %s\ndata: %s\n\n", replay.ID(int64(i)), events[i])
			}
			fmt.Fprintf(w, "event: message\nid: %s\ndata: %s", replay.ID(2), events[2][:len(events[2])/2])
			return
		}
		replay.ServeHTTP(w, req)
	})
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	r := startIngester(t, nc, hs.URL, ingest.Config{})
	assertExactly(t, js, events)
	require.NoError(t, r.stop(t))

	assert.Equal(t, 1.0, counter(t, r.reg, "rcwatch_ingest_malformed_total", "reason", "truncated"))
	assert.Equal(t, 0.0, counter(t, r.reg, "rcwatch_ingest_dead_letters_total"))
	assert.Equal(t, replay.ID(1), replay.LastEventIDs()[0], "resumed after the last whole frame")
}

// The replay server cuts the connection every 50 events over a 2,000-event
// run: the stream ends with exactly the 2,000 events, each once, in order.
func TestIngestCutEvery50Events(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 2000)
	replay, url := startReplay(t, ingest.ReplayConfig{Events: events, CutEvery: 50})
	r := startIngester(t, nc, url, ingest.Config{})
	assertExactly(t, js, events)
	require.NoError(t, r.stop(t))

	ids := replay.LastEventIDs()
	require.GreaterOrEqual(t, len(ids), 40)
	assert.Equal(t, "", ids[0])
	for i := 1; i < 40; i++ {
		assert.Equal(t, replay.ID(int64(50*i-1)), ids[i], "connection %d resumed verbatim after event %d", i, 50*i-1)
	}
	assert.Equal(t, 0.0, counter(t, r.reg, "rcwatch_ingest_duplicates_total"), "a resume never re-reads an event")
	assert.GreaterOrEqual(t, counter(t, r.reg, "rcwatch_ingest_reconnects_total", "reason", "eof"), 39.0)
}

// Stopping the ingester mid-run (context cancelled) and starting it again
// resumes from the stored position: nothing missing, nothing twice.
func TestIngestStopAndRestartResumesFromStoredPosition(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 1500)
	replay, url := startReplay(t, ingest.ReplayConfig{Events: events, Rate: 2000})

	first := startIngester(t, nc, url, ingest.Config{})
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 300, 30*time.Second)
	require.NoError(t, first.stop(t))
	stored := storedPosition(t, js)
	require.NotEmpty(t, stored)
	n := natstest.Count(t, js, pipeline.StreamRecentChange)
	require.Less(t, n, len(events), "stopped mid-run")
	assert.Equal(t, replay.ID(int64(n-1)), stored, "the stored position is the last stored event")

	second := startIngester(t, nc, url, ingest.Config{})
	assertExactly(t, js, events)
	require.NoError(t, second.stop(t))
	ids := replay.LastEventIDs()
	assert.Equal(t, stored, ids[len(ids)-1], "the restart sent the stored position as Last-Event-ID")
	assert.Equal(t, 0.0, counter(t, second.reg, "rcwatch_ingest_duplicates_total"))
}

// Two replicas ingesting the same source at once: each event stored once.
func TestIngestTwoReplicasStoreEachEventOnce(t *testing.T) {
	srv := natstest.Start(t)
	nc1, js := srv.Connect(t)
	nc2, _ := srv.Connect(t)
	events := uniqueEvents(t, 1000)
	_, url := startReplay(t, ingest.ReplayConfig{Events: events, Rate: 3000})
	a := startIngester(t, nc1, url, ingest.Config{})
	b := startIngester(t, nc2, url, ingest.Config{})
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, len(events), 60*time.Second)
	require.Eventually(t, func() bool {
		return counter(t, a.reg, "rcwatch_ingest_events_received_total") == float64(len(events)) &&
			counter(t, b.reg, "rcwatch_ingest_events_received_total") == float64(len(events))
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, a.stop(t))
	require.NoError(t, b.stop(t))

	msgs := natstest.Messages(t, js, pipeline.StreamRecentChange)
	require.Len(t, msgs, len(events))
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		require.False(t, seen[id], "event %s stored twice", id)
		seen[id] = true
	}
	pub := counter(t, a.reg, "rcwatch_ingest_events_published_total") + counter(t, b.reg, "rcwatch_ingest_events_published_total")
	dup := counter(t, a.reg, "rcwatch_ingest_duplicates_total") + counter(t, b.reg, "rcwatch_ingest_duplicates_total")
	assert.Equal(t, float64(len(events)), pub)
	assert.Equal(t, float64(len(events)), dup, "every event was offered twice and refused once")
}

// NATS down for a while: ingest stops reading (bounded in-flight, no
// unbounded memory) and loses nothing once NATS is back.
func TestIngestSurvivesNATSOutageWithBoundedMemory(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 2000)
	_, url := startReplay(t, ingest.ReplayConfig{Events: events, Rate: 4000})
	const maxInFlight = 32
	r := startIngester(t, nc, url, ingest.Config{MaxInFlight: maxInFlight, AckTimeout: 500 * time.Millisecond})
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 200, 30*time.Second)

	srv.Shutdown()
	// Reading stops once maxInFlight publishes await their acks.
	require.Eventually(t, func() bool {
		return counter(t, r.reg, "rcwatch_ingest_publish_errors_total") > 0
	}, 30*time.Second, 10*time.Millisecond, "publishes fail while NATS is down")
	// received, then acked: an ack still landing after the shutdown (it
	// frees a slot, so one more frame is read) raises both, never received
	// alone (read acked first, a loaded machine saw 227 > 225).
	received := counter(t, r.reg, "rcwatch_ingest_events_received_total")
	acked := counter(t, r.reg, "rcwatch_ingest_events_published_total")
	// +1 frame held by the blocked handler, +2 buffered by the SSE library.
	assert.LessOrEqual(t, received, acked+maxInFlight+3, "ingest kept reading while nothing was acknowledged")
	assert.LessOrEqual(t, counter(t, r.reg, "rcwatch_ingest_inflight"), float64(maxInFlight))

	srv.Restart(t)
	// Publishes retried after the outage may land after later ones, so
	// this asserts exactly-once, not order.
	assertEachOnce(t, js, events)
	require.NoError(t, r.stop(t))
}

// With no stored position, Since picks where the stream starts.
func TestIngestSinceWhenNoPosition(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events, err := ingest.LoadEvents(fixtures.Path(t, "recentchange.electricsql-rag.data.jsonl")) // contiguous 2024 slice
	require.NoError(t, err)
	replay, url := startReplay(t, ingest.ReplayConfig{Events: events})
	// The electricsql slice starts at 16:58:08; events from :15 on are ~40.
	r := startIngester(t, nc, url, ingest.Config{Since: "2024-02-06T16:58:15Z"})
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 1, 30*time.Second)
	require.Eventually(t, func() bool { return replay.Served() > 0 && counter(t, r.reg, "rcwatch_ingest_inflight") == 0 },
		10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	msgs := natstest.Messages(t, js, pipeline.StreamRecentChange)
	require.NotEmpty(t, msgs)
	assert.Less(t, len(msgs), len(events), "started later than the first event")
	for _, m := range msgs[:1] {
		assert.GreaterOrEqual(t, m.Headers().Get(pipeline.HeaderEventTime), "2024-02-06T16:58:15Z")
	}
}

func storedPosition(tb testing.TB, js jetstream.JetStream) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketIngest)
	require.NoError(tb, err)
	e, err := kv.Get(ctx, "position.recentchange")
	require.NoError(tb, err)
	return string(e.Value())
}

// An `event: error` frame (KafkaSSE sends them after the stream started) is
// not an event: it is dead-lettered with its reason and ingest goes on.
func TestIngestErrorFrameIsDeadLettered(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 2)
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: events}, zerologNop)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, ":ok\n\nevent: message\nid: %s\ndata: %s\n\n", replay.ID(0), events[0])
		fmt.Fprintf(w, "event: error\nid: %s\ndata: %s\n\n", replay.ID(0), `{"message":"kafka broker unavailable"}`)
		fmt.Fprintf(w, "event: message\nid: %s\ndata: %s\n\n", replay.ID(1), events[1])
		w.(http.Flusher).Flush()
		<-req.Context().Done()
	}))
	t.Cleanup(hs.Close)
	r := startIngester(t, nc, hs.URL, ingest.Config{})
	assertExactly(t, js, events)
	natstest.WaitCount(t, js, pipeline.StreamDeadLetter, 1, 10*time.Second)
	hs.CloseClientConnections()
	require.NoError(t, r.stop(t))
	dead := natstest.Messages(t, js, pipeline.StreamDeadLetter)
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].Headers().Get(pipeline.HeaderReason), "event_error")
	assert.Contains(t, string(dead[0].Data()), "kafka broker unavailable")
	assert.Equal(t, 1.0, counter(t, r.reg, "rcwatch_ingest_malformed_total", "reason", "event_error"))
}
