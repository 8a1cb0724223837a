package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
)

// rcfeedServer runs an RCFeed on a loopback UDP socket and an httptest
// server; it returns the feed, the UDP address and the SSE URL.
func rcfeedServer(tb testing.TB, cfg ingest.RCFeedConfig) (*ingest.RCFeed, *prometheus.Registry, string, string) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	feed, err := ingest.NewRCFeed(cfg, reg, zerolog.Nop())
	require.NoError(tb, err)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Listen(ctx, pc) }()
	srv := httptest.NewServer(feed)
	tb.Cleanup(func() {
		feed.Close()
		srv.Close()
		cancel()
		require.NoError(tb, <-done)
	})
	return feed, reg, pc.LocalAddr().String(), srv.URL + "/v2/stream/recentchange"
}

// rcCollect reads frames from url (resuming after lastID) until n arrived.
func rcCollect(tb testing.TB, url, lastID string, n int, timeout time.Duration) []ingest.Frame {
	tb.Helper()
	return rcCollectIf(tb, url, lastID, n, timeout, func(ingest.Frame) bool { return true })
}

// rcCollectIf is rcCollect counting only the frames keep accepts.
func rcCollectIf(tb testing.TB, url, lastID string, n int, timeout time.Duration, keep func(ingest.Frame) bool) []ingest.Frame {
	tb.Helper()
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: url, IdleTimeout: timeout})
	require.NoError(tb, err)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		mu     sync.Mutex
		frames []ingest.Frame
	)
	errDone := fmt.Errorf("collected")
	err = src.Stream(ctx, lastID, "", func(f ingest.Frame) error {
		if len(f.Data) == 0 || !keep(f) { // ":ok" comes through as an empty frame
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, ingest.Frame{ID: append([]byte(nil), f.ID...), Data: append([]byte(nil), f.Data...)})
		if len(frames) >= n {
			return errDone
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	require.Len(tb, frames, n, "frames received before %v (stream ended with %v)", timeout, err)
	return frames
}

// A real MediaWiki pushes its recent changes over UDP; the adapter serves
// them as EventStreams events that decode, carry the envelope, point at the
// wiki's own revisions, and resume with Last-Event-ID.
func TestRCFeedFromRealWiki(t *testing.T) {
	feed, reg, udp, url := rcfeedServer(t, ingest.RCFeedConfig{})
	w := mwtest.Start(t, mwtest.Options{RCFeedUDP: udp})

	revNew := w.Edit(t, w.Other, "RC feed page", "First version of the page.", "create it")
	revEdit := w.Edit(t, w.Other, "RC feed page", "Second version of the page, longer.", "expand")
	// The set-up's own changes (accounts created) come first: skip them.
	frames := rcCollectIf(t, url, feed.ID(-1), 2, 30*time.Second, func(f ingest.Frame) bool {
		ev, err := event.Decode(f.Data)
		return err == nil && ev.Title == "RC feed page"
	})

	evs := make([]*event.RecentChange, len(frames))
	for i, f := range frames {
		ev, err := event.Decode(f.Data)
		require.NoError(t, err, "frame %d decodes: %s", i, f.Data)
		evs[i] = ev
	}
	assert.Equal(t, "new", evs[0].Type)
	assert.Equal(t, "edit", evs[1].Type)
	for i, ev := range evs {
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, ev.Meta.ID, "event %d", i)
		assert.Equal(t, "127.0.0.1", ev.Meta.Domain)
		assert.Equal(t, "mediawiki.recentchange", ev.Meta.Stream)
		assert.WithinDuration(t, time.Now(), ev.Time(), time.Minute, "meta.dt is the edit's time")
		assert.Equal(t, "testwiki", ev.Wiki)
		assert.Equal(t, w.URL, ev.ServerURL)
		assert.Equal(t, "", ev.ServerScriptPath, `"/" normalised to EventStreams' form`)
		assert.Equal(t, "RC feed page", ev.Title)
		assert.Equal(t, w.Other.Name, ev.User)
		require.NotNil(t, ev.ID, "rc id kept")
	}
	assert.NotEqual(t, evs[0].Meta.ID, evs[1].Meta.ID)
	require.NotNil(t, evs[0].Revision.New)
	assert.Equal(t, revNew, *evs[0].Revision.New)
	require.NotNil(t, evs[1].Revision.New)
	require.NotNil(t, evs[1].Revision.Old)
	assert.Equal(t, revEdit, *evs[1].Revision.New)
	assert.Equal(t, revNew, *evs[1].Revision.Old)
	assert.Equal(t, int64(len("Second version of the page, longer.")), *evs[1].Length.New)
	assert.Equal(t, "expand", evs[1].Comment)
	assert.Equal(t, fmt.Sprintf("%s/index.php?diff=%d&oldid=%d", w.URL, revEdit, revNew), evs[1].DiffURL())

	// Resuming after the first event gives the second, identical.
	again := rcCollect(t, url, string(frames[0].ID), 1, 10*time.Second)
	assert.Equal(t, string(frames[1].ID), string(again[0].ID))
	assert.JSONEq(t, string(frames[1].Data), string(again[0].Data))

	// The same change sent again gets the same meta.id (JetStream's
	// de-duplication then drops it).
	re, err := feed.Convert(frames[1].Data)
	require.NoError(t, err)
	var m struct {
		Meta struct{ ID string } `json:"meta"`
	}
	require.NoError(t, json.Unmarshal(re, &m))
	assert.Equal(t, evs[1].Meta.ID, m.Meta.ID)
	assert.Zero(t, testutil.ToFloat64(rejected(t, reg)), "nothing the wiki sent was rejected")
}

func rejected(tb testing.TB, reg *prometheus.Registry) prometheus.Collector {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "rcwatch_rcfeed_rejected_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	c.Add(sum)
	return c
}

func rcDatagram(i int) []byte {
	return []byte(fmt.Sprintf(`{"id":%d,"type":"edit","namespace":0,"title":"Page %d","comment":"c","timestamp":1700000000,`+
		`"user":"U","bot":false,"minor":false,"length":{"old":1,"new":2},"revision":{"old":%d,"new":%d},`+
		`"server_url":"http://127.0.0.1:8080","server_name":"127.0.0.1","server_script_path":"/","wiki":"testwiki"}`,
		i, i, 100+i, 200+i))
}

// The ring is bounded: a client resuming from before it starts at the
// oldest event kept, and the gap is counted.
func TestRCFeedRingBounded(t *testing.T) {
	feed, reg, _, url := rcfeedServer(t, ingest.RCFeedConfig{Buffer: 4})
	for i := range 10 {
		off, err := feed.Add(rcDatagram(i))
		require.NoError(t, err)
		require.Equal(t, int64(i), off)
	}
	frames := rcCollect(t, url, feed.ID(1), 4, 10*time.Second)
	for i, f := range frames {
		assert.Equal(t, feed.ID(int64(6+i)), string(f.ID), "the oldest kept, in order")
		ev, err := event.Decode(f.Data)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("Page %d", 6+i), ev.Title)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	assert.Equal(t, 4.0, got["rcwatch_rcfeed_resume_gap_events_total"], "offsets 2–5 were lost to the client")
	assert.Equal(t, 4.0, got["rcwatch_rcfeed_buffered_events"])
	assert.Equal(t, 10.0, got["rcwatch_rcfeed_received_total"])
}

// Bad datagrams are rejected with a reason and reading goes on.
func TestRCFeedRejects(t *testing.T) {
	feed, reg, udp, url := rcfeedServer(t, ingest.RCFeedConfig{})
	for _, tc := range []struct {
		name, in, want string
	}{
		{"invalid UTF-8", "{\"wiki\":\"a\xff\"}", "invalid UTF-8"},
		{"not JSON", "PRIVMSG #x :hi", "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"trailing", `{"wiki":"a"} {}`, "trailing data"},
		{"no wiki", `{"type":"edit","title":"T","server_url":"http://h"}`, `missing "wiki"`},
		{"title a number", `{"wiki":"w","type":"edit","title":7,"server_url":"http://h"}`, `"title" is json.Number`},
		{"id a string", `{"wiki":"w","type":"edit","title":"T","server_url":"http://h","id":"12"}`, `"id" is string`},
		{"fractional id", `{"wiki":"w","type":"edit","title":"T","server_url":"http://h","id":1.5}`, "not an integer"},
		{"no host", `{"wiki":"w","type":"edit","title":"T","server_url":""}`, "no host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := feed.Convert([]byte(tc.in))
			require.ErrorIs(t, err, ingest.ErrRCFeedDatagram)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	conn, err := net.Dial("udp", udp)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("not json"))
	require.NoError(t, err)
	_, err = conn.Write(rcDatagram(1))
	require.NoError(t, err)
	frames := rcCollect(t, url, feed.ID(-1), 1, 10*time.Second)
	ev, err := event.Decode(frames[0].Data)
	require.NoError(t, err)
	assert.Equal(t, "Page 1", ev.Title, "the good datagram after the bad one")
	assert.Equal(t, 1.0, testutil.ToFloat64(rejected(t, reg)))
}
