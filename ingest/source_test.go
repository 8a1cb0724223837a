package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
)

func sseServer(tb testing.TB, h http.HandlerFunc) string {
	tb.Helper()
	s := httptest.NewServer(h)
	tb.Cleanup(s.Close)
	return s.URL
}

func collect(tb testing.TB, url string, cfg ingest.SSEConfig, lastID, since string) ([]ingest.Frame, error) {
	tb.Helper()
	cfg.URL = url
	src, err := ingest.NewSSESource(cfg)
	require.NoError(tb, err)
	var got []ingest.Frame
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = src.Stream(ctx, lastID, since, func(f ingest.Frame) error {
		got = append(got, f)
		return nil
	})
	return got, err
}

// The r3labs/sse flaws of DESIGN.md §5, each pinned by a test.
func TestSSESourceAroundLibraryFlaws(t *testing.T) {
	big := strings.Repeat("é", 700<<10) // 1.4 MiB of data in one frame
	tests := []struct {
		name    string
		body    string
		status  int
		header  map[string]string
		lastID  string
		since   string
		check   func(t *testing.T, r *http.Request)
		want    []string // data of the frames
		wantErr func(t *testing.T, err error)
	}{
		{name: "clean close returns nil (no internal reconnect)",
			body: ":ok\n\nevent: message\nid: [1]\ndata: a\n\n", want: []string{"a"}},
		{name: "events up to 1 MiB and beyond",
			body: "event: message\nid: [1]\ndata: " + big + "\n\n", want: []string{big}},
		{name: "CRLF, BOM and comments",
			body: "\ufeff:ok\r\n\r\nevent: message\r\nid: [1]\r\ndata: a\r\n\r\n: comment\n\nevent: message\nid: [2]\ndata: b\n\n",
			want: []string{"a", "b"}},
		{name: "multi-line data is joined",
			body: "event: message\nid: [1]\ndata: a\ndata: b\n\n", want: []string{"a\nb"}},
		{name: "unterminated last frame is still dispatched",
			body: "event: message\nid: [1]\ndata: a", want: []string{"a"}},
		{name: "429 carries Retry-After", status: 429, header: map[string]string{"Retry-After": "7"},
			wantErr: func(t *testing.T, err error) {
				var se *ingest.StatusError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, 429, se.Code)
				assert.Equal(t, 7*time.Second, se.RetryAfter)
			}},
		{name: "503 is an error", status: 503,
			wantErr: func(t *testing.T, err error) {
				var se *ingest.StatusError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, 503, se.Code)
			}},
		{name: "Last-Event-ID sent verbatim, since not sent with it",
			lastID: `[{"topic":"eqiad.mediawiki.recentchange","partition":0,"timestamp":1670732822001},{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}]`,
			since:  "2024-01-01T00:00:00Z",
			check: func(t *testing.T, r *http.Request) {
				assert.Equal(t, `[{"topic":"eqiad.mediawiki.recentchange","partition":0,"timestamp":1670732822001},{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}]`,
					r.Header.Get("Last-Event-ID"))
				assert.Empty(t, r.URL.Query().Get("since"))
			}},
		{name: "since without a position; descriptive User-Agent",
			since: "2024-01-01T00:00:00Z",
			check: func(t *testing.T, r *http.Request) {
				assert.Equal(t, "2024-01-01T00:00:00Z", r.URL.Query().Get("since"))
				assert.Contains(t, r.Header.Get("User-Agent"), "rcwatch")
				assert.Contains(t, r.Header.Get("User-Agent"), "https://")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.check != nil {
					tc.check(t, r)
				}
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				if tc.status != 0 {
					w.WriteHeader(tc.status)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, tc.body)
			})
			got, err := collect(t, url, ingest.SSEConfig{}, tc.lastID, tc.since)
			if tc.wantErr != nil {
				tc.wantErr(t, err)
				return
			}
			require.NoError(t, err)
			var data []string
			for _, f := range got {
				if len(f.Data) > 0 {
					data = append(data, string(f.Data))
				}
			}
			assert.Equal(t, tc.want, data)
		})
	}
}

// A connection that delivers nothing for IdleTimeout is ended (EventStreams
// has no heartbeats), and cancelling ctx ends Stream promptly, leaving no
// goroutine behind (TestMain runs goleak).
func TestSSESourceIdleTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	url := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ":ok\n\nevent: message\nid: [1]\ndata: a\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	_, err := collect(t, url, ingest.SSEConfig{IdleTimeout: 200 * time.Millisecond}, "", "")
	require.ErrorIs(t, err, ingest.ErrIdle)

	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: url})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- src.Stream(ctx, "", "", func(ingest.Frame) error { close(first); return nil })
	}()
	<-first
	cancel()
	select {
	case err := <-done:
		require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Stream did not return after cancel")
	}
}

// A handler error ends the connection and is returned as is.
func TestSSESourceHandlerErrorEndsConnection(t *testing.T) {
	url := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, "event: message\nid: [%d]\ndata: x\n\n", i)
		}
	})
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: url})
	require.NoError(t, err)
	stop := errors.New("stop")
	n := 0
	err = src.Stream(context.Background(), "", "", func(ingest.Frame) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	assert.Equal(t, 3, n)
}
