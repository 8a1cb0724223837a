package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
)

// FuzzSSEStream feeds arbitrary bytes as an SSE response body to the SSE
// source ingest reads with: it must neither panic nor hang, and never hand
// over a frame larger than its limit. Seeds: testdata/fuzz/FuzzSSEStream.
func FuzzSSEStream(f *testing.F) {
	f.Add([]byte(":ok\n\nevent: message\nid: [{\"topic\":\"t\",\"partition\":0,\"offset\":1}]\ndata: {\"meta\":{\"id\":\"a\"}}\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\n\r\nid\nevent\n:\n\n\n"))
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(*body.Load())
	}))
	f.Cleanup(srv.Close)
	const limit = 64 << 10
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: srv.URL, IdleTimeout: 5 * time.Second, MaxEventSize: limit})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		body.Store(&data)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = src.Stream(ctx, "", "", func(fr ingest.Frame) error {
			if len(fr.Data) > limit+64 {
				t.Fatalf("frame of %d bytes over the %d limit", len(fr.Data), limit)
			}
			return nil
		})
		if ctx.Err() != nil {
			t.Fatalf("Stream did not return when the server closed the response (%d bytes)", len(data))
		}
	})
}

// FuzzRCFeedConvert: an RC feed datagram is either rejected with
// ErrRCFeedDatagram or becomes an event that ingest decodes, with a meta.id
// that converting it again keeps (a repeat is recognised). Seeds:
// testdata/fuzz/FuzzRCFeedConvert.
func FuzzRCFeedConvert(f *testing.F) {
	f.Add(rcDatagram(1))
	f.Add([]byte(`{"id":1,"type":"log","namespace":2,"title":"User:X","timestamp":0,"user":"X","bot":false,` +
		`"log_id":3,"log_type":"newusers","log_action":"create","log_params":{"userid":2},"server_url":"http://h",` +
		`"server_name":"h","server_script_path":"/w","wiki":"w"}`))
	feed, err := ingest.NewRCFeed(ingest.RCFeedConfig{Buffer: 1, Now: func() time.Time { return time.Unix(0, 0) }},
		prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := feed.Convert(data)
		if err != nil {
			require.ErrorIs(t, err, ingest.ErrRCFeedDatagram)
			return
		}
		ev, err := event.Decode(out)
		require.NoError(t, err, "the adapter served what ingest rejects: %s", out)
		require.NotEmpty(t, ev.Meta.ID)
		require.NotEmpty(t, ev.Meta.Domain)
		if ev.ID == nil {
			return // its id is derived from the datagram's bytes
		}
		again, err := feed.Convert(out)
		require.NoError(t, err)
		var m struct {
			Meta struct{ ID string } `json:"meta"`
		}
		require.NoError(t, json.Unmarshal(again, &m))
		require.Equal(t, ev.Meta.ID, m.Meta.ID)
	})
}
