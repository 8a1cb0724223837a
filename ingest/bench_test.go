package ingest_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// benchEvents is the number of events each throughput iteration moves
// (the issue asks for at least 100,000). Run with -benchtime 1x.
const benchEvents = 100_000

// BenchmarkIngestReplayToJetStream measures the whole ingest path: the
// replay server (HTTP on loopback, looping the fixtures with fresh meta.ids)
// → r3labs/sse → decode → async publish with Nats-Msg-Id → JetStream file
// storage → acks → position.
func BenchmarkIngestReplayToJetStream(b *testing.B) {
	base := uniqueEvents(b, 2000)
	for b.Loop() {
		srv := natstest.Start(b)
		nc, js := srv.Connect(b)
		_, url := startReplay(b, ingest.ReplayConfig{Events: base, Loop: true, UniqueIDs: true, Limit: benchEvents})
		start := time.Now()
		r := startIngester(b, nc, url, ingest.Config{MaxInFlight: 4096})
		natstest.WaitCount(b, js, pipeline.StreamRecentChange, benchEvents, 5*time.Minute)
		el := time.Since(start)
		require.NoError(b, r.stop(b))
		b.ReportMetric(float64(benchEvents)/el.Seconds(), "events/s")
		b.ReportMetric(float64(el.Nanoseconds())/benchEvents, "ns/event")
	}
}

// BenchmarkNATSAsyncPublishBaseline publishes the same bytes with the same
// headers in a plain async-publish loop: what JetStream itself can take here.
func BenchmarkNATSAsyncPublishBaseline(b *testing.B) {
	base := uniqueEvents(b, 2000)
	type msg struct {
		subj string
		id   string
		data []byte
	}
	msgs := make([]msg, len(base))
	for i, d := range base {
		ev, err := event.Decode(d)
		require.NoError(b, err)
		msgs[i] = msg{pipeline.RecentChangeSubject(ev.Wiki, ev.Type), ev.Meta.ID, d}
	}
	for b.Loop() {
		srv := natstest.Start(b)
		nc, _ := srv.Connect(b)
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		require.NoError(b, err)
		start := time.Now()
		for i := 0; i < benchEvents; i++ {
			m := msgs[i%len(msgs)]
			nm := &nats.Msg{Subject: m.subj, Data: m.data, Header: nats.Header{}}
			nm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", m.id, i/len(msgs)))
			if _, err := js.PublishMsgAsync(nm); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("acks did not complete")
		}
		el := time.Since(start)
		b.ReportMetric(float64(benchEvents)/el.Seconds(), "events/s")
		b.ReportMetric(float64(el.Nanoseconds())/benchEvents, "ns/event")
	}
}

// BenchmarkReplayServe measures the replay server alone: N frames of the
// looped fixtures (fresh meta.ids from the second pass) over loopback HTTP
// to a client that reads and discards them. Its CPU shares the machine with
// rcwatch run in `rcwatch bench pipeline`.
func BenchmarkReplayServe(b *testing.B) {
	events := fixtures.Events(b)
	const n = 50_000
	for b.Loop() {
		_, url := startReplay(b, ingest.ReplayConfig{Events: events, Loop: true, UniqueIDs: true, Limit: n, CloseAtEnd: true})
		resp, err := http.Get(url)
		require.NoError(b, err)
		got, err := io.Copy(io.Discard, resp.Body)
		require.NoError(b, err)
		require.NoError(b, resp.Body.Close())
		require.Greater(b, got, int64(n*100))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
