package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"github.com/stretchr/testify/require"
	"gopkg.in/cenkalti/backoff.v1"
)

// libraryFrames reads body with the library's own client (processEvent):
// the reference readFrames must match.
func libraryFrames(t *testing.T, body string) []Frame {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	c := sse.NewClient(srv.URL)
	c.ReconnectStrategy = &backoff.StopBackOff{}
	var out []Frame
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.SubscribeWithContext(ctx, "", func(e *sse.Event) {
		out = append(out, Frame{ID: e.ID, Event: e.Event, Data: e.Data})
	})
	return out
}

func TestParseFrameMatchesLibrary(t *testing.T) {
	bodies := []string{
		":ok\n\nevent: message\nid: [1]\ndata: a\n\n",
		"\ufeff:ok\r\n\r\nevent: message\r\nid: [1]\r\ndata: a\r\n\r\n: comment\n\nevent: message\nid: [2]\ndata: b\n\n",
		"event: message\nid: [1]\ndata: a\ndata: b\n\n",
		"event: message\nid: [1]\ndata: a",
		"id: 1\ndata\ndata: x\ndata\n\nid:\ndata: y\n\nid: 3\n\nretry: 10\n\n",
		"data:no-space\ndata:  two\n\nevent:e\n\n",
		"id: 7\rdata: cr-only\r\rdata: after\n\n",
		"id: 1\ndata: a\n\n:keepalive\n\n:keepalive\n\nid: 2\ndata: b\n\n",
		"garbage line\nidx: 1\ndatum: 2\n\n",
	}
	for i, body := range bodies {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			want := libraryFrames(t, body)
			var got []Frame
			require.NoError(t, readFrames(strings.NewReader(body), 1<<20, nil, func(f Frame) error {
				got = append(got, f)
				return nil
			}))
			require.Equal(t, len(want), len(got), "frames of %q", body)
			for j := range want {
				require.Equal(t, string(want[j].ID), string(got[j].ID), "id of frame %d", j)
				require.Equal(t, string(want[j].Event), string(got[j].Event), "event of frame %d", j)
				require.Equal(t, string(want[j].Data), string(got[j].Data), "data of frame %d", j)
			}
		})
	}
}

// A frame's bytes are its own: the reader reuses its buffer.
func TestReadFramesOwnsData(t *testing.T) {
	var body strings.Builder
	for i := range 200 {
		fmt.Fprintf(&body, "event: message\nid: [%d]\ndata: {\"n\":%d,\"pad\":%q}\n\n", i, i, strings.Repeat("x", i*7))
	}
	var got []Frame
	require.NoError(t, readFrames(strings.NewReader(body.String()), 1<<20, nil, func(f Frame) error {
		got = append(got, f)
		return nil
	}))
	require.Len(t, got, 200)
	for i, f := range got {
		require.Equal(t, fmt.Sprintf("[%d]", i), string(f.ID))
		require.True(t, bytes.HasPrefix(f.Data, []byte(fmt.Sprintf(`{"n":%d,`, i))))
	}
}

// BenchmarkSSEParse compares the library's client (processEvent, a
// goroutine hand-off per event) with readFrames on the same stream of
// recorded-size frames served over loopback HTTP.
func BenchmarkSSEParse(b *testing.B) {
	payload := `{"$schema":"/mediawiki/recentchange/1.0.0","meta":{"uri":"https://en.wikipedia.org/wiki/X","id":"` +
		strings.Repeat("a", 36) + `","dt":"2024-02-06T16:58:10Z"},"type":"edit","title":"` + strings.Repeat("T", 900) + `"}`
	const n = 20000
	var body bytes.Buffer
	for i := range n {
		fmt.Fprintf(&body, "event: message\nid: [{\"topic\":\"eqiad.mediawiki.recentchange\",\"partition\":0,\"offset\":%d}]\ndata: %s\n\n", i, payload)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(body.Bytes())
	}))
	defer srv.Close()
	b.Run("library", func(b *testing.B) {
		b.SetBytes(int64(body.Len()))
		for range b.N {
			c := sse.NewClient(srv.URL, sse.ClientMaxBufferSize(1<<20))
			c.ReconnectStrategy = &backoff.StopBackOff{}
			got := 0
			_ = c.SubscribeWithContext(context.Background(), "", func(*sse.Event) { got++ })
			require.Equal(b, n, got)
		}
	})
	b.Run("readFrames", func(b *testing.B) {
		b.SetBytes(int64(body.Len()))
		for range b.N {
			resp, err := http.Get(srv.URL)
			require.NoError(b, err)
			got := 0
			require.NoError(b, readFrames(resp.Body, 1<<20, nil, func(Frame) error { got++; return nil }))
			resp.Body.Close()
			require.Equal(b, n, got)
		}
	})
}
