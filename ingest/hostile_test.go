package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// startSmallPayloadNATS runs an embedded JetStream server whose max_payload
// is maxPayload (an existing NATS rcwatch is pointed at may have less than
// the 1 MB default), with the rcwatch topology.
func startSmallPayloadNATS(t *testing.T, maxPayload int32) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		MaxPayload: maxPayload, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	return natstest.Connect(t, ns.ClientURL())
}

// withComment returns a copy of a recorded event whose comment is n bytes.
func withComment(t *testing.T, ev []byte, n int) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(ev, &m))
	m["comment"] = strings.Repeat("x", n)
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}

// An event over the NATS server's max_payload used to stall ingest for
// good (the client refuses the publish, retried forever, at debug level).
// It is dead-lettered, truncated to fit, with the reason, and ingest goes on.
func TestIngestEventOverServerMaxPayloadIsDeadLettered(t *testing.T) {
	nc, js := startSmallPayloadNATS(t, 64<<10)
	require.Equal(t, int64(64<<10), nc.MaxPayload())
	events := uniqueEvents(t, 3)
	big := withComment(t, events[1], 100<<10)
	_, url := startReplay(t, ingest.ReplayConfig{Events: [][]byte{events[0], big, events[2]}})
	r := startIngester(t, nc, url, ingest.Config{}) // MaxEventSize: the 1 MiB default

	assertExactly(t, js, [][]byte{events[0], events[2]})
	dead := natstest.StreamMessages(t, js, pipeline.StreamDeadLetter, 1, 10*time.Second)
	require.Len(t, dead, 1)
	reason := dead[0].Headers().Get(pipeline.HeaderReason)
	assert.Contains(t, reason, "too_large")
	assert.Contains(t, reason, "NATS server max_payload 65536")
	assert.Equal(t, fmt.Sprint(len(big)), dead[0].Headers().Get("Rc-Original-Size"))
	assert.Less(t, len(dead[0].Data()), 64<<10, "truncated to fit")
	assert.Equal(t, big[:len(dead[0].Data())], dead[0].Data())
	assert.Equal(t, 1.0, counter(t, r.reg, "rcwatch_ingest_malformed_total", "reason", "too_large"))
	require.NoError(t, r.in.Ready())
	require.NoError(t, r.stop(t))
}

// A frame over the SSE reader's limit (16 MiB) used to end every connection
// with "bufio.Scanner: token too long" and reconnect with the same
// Last-Event-ID, forever. It is dead-lettered by its id and the stream goes
// on, on the same connection.
func TestIngestFrameOverSSELimitIsDeadLetteredByID(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 2)
	const bigID = `[{"topic":"hostile","partition":0,"offset":2}]`
	var conns atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if conns.Add(1) > 1 {
			// A reconnect: the client asks from the frame it could not read.
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-req.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, ":ok\n\nevent: message\nid: [{\"topic\":\"hostile\",\"partition\":0,\"offset\":1}]\ndata: %s\n\n", events[0])
		fmt.Fprintf(w, "event: message\nid: %s\ndata: {\"comment\":\"", bigID)
		chunk := bytes.Repeat([]byte("y"), 1<<20)
		for range 17 {
			_, _ = w.Write(chunk)
		}
		fmt.Fprintf(w, "\"}\n\n")
		fmt.Fprintf(w, "event: message\nid: [{\"topic\":\"hostile\",\"partition\":0,\"offset\":3}]\ndata: %s\n\n", events[1])
		w.(http.Flusher).Flush()
		<-req.Context().Done()
	}))
	t.Cleanup(hs.Close)
	r := startIngester(t, nc, hs.URL, ingest.Config{})

	assertExactly(t, js, events)
	dead := natstest.StreamMessages(t, js, pipeline.StreamDeadLetter, 1, 10*time.Second)
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].Headers().Get(pipeline.HeaderReason), "too_large")
	assert.Contains(t, dead[0].Headers().Get(pipeline.HeaderReason), "SSE frame of 17825880 bytes dropped")
	assert.Equal(t, "ingest id="+bigID, dead[0].Headers().Get(pipeline.HeaderSource))
	assert.Equal(t, int32(1), conns.Load(), "no reconnect")
	hs.CloseClientConnections()
	require.NoError(t, r.stop(t))
}

// Reconnect storm: once a position is stored, a source that answers ":ok"
// and closes used to be reconnected at once, forever (164,865 connections
// in 100 s, 31 MB of warnings), the ignored ":ok" counting as progress.
// Only real events reset the backoff, and the warning is rate-limited.
func TestIngestEmptyConnectionsBackOff(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	events := uniqueEvents(t, 1)
	var conns atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if conns.Add(1) == 1 {
			fmt.Fprintf(w, ":ok\n\nevent: message\nid: [{\"topic\":\"t\",\"partition\":0,\"offset\":1}]\ndata: %s\n\n", events[0])
			return
		}
		fmt.Fprint(w, ":ok\n\n") // and close
	}))
	t.Cleanup(hs.Close)
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: hs.URL})
	require.NoError(t, err)
	logs := logtest.NewSink()
	reg := prometheus.NewRegistry()
	in, err := ingest.New(pipeline.Deps{NC: nc, Reg: reg, Log: zerolog.New(logs)},
		ingest.Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 2 * time.Second, PositionInterval: 20 * time.Millisecond}, src)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	assertExactly(t, js, events)

	time.Sleep(3 * time.Second) // the storm is measured over a span of time
	cancel()
	require.NoError(t, <-done)
	// Backoff doubling from 20ms with [d/2, d] jitter reaches 2s within
	// 3s after about 8 attempts; without it, thousands.
	n := conns.Load()
	assert.LessOrEqual(t, n, int32(12), "connections in 3s")
	assert.GreaterOrEqual(t, n, int32(4))
	assert.LessOrEqual(t, len(logs.Matching("SSE connection ended")), 2, "the warning is logged at most once a minute while failing")
	assert.Equal(t, float64(n), counter(t, reg, "rcwatch_ingest_reconnects_total"), "every reconnect is counted")
}
