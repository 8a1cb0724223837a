package ingest

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// Whatever the payload, a frame written by the replay server parses back to
// the same data (line breaks normalised to \n, as SSE defines them).
func FuzzReplayFrameRoundTrip(f *testing.F) {
	f.Add([]byte(`{"meta":{"id":"a"}}`))
	f.Add([]byte("a\r\nb\rc\nd"))
	f.Add([]byte(""))
	f.Add([]byte("data: x\n\nevent: y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		writeFrame(w, `[{"topic":"t","partition":0,"offset":1}]`, data)
		require.NoError(t, w.Flush())
		frames := ParseSSE(buf.Bytes())
		require.Len(t, frames, 1)
		want := regexp.MustCompile(`[\r\n]+`).ReplaceAllString(string(data), "\n")
		require.Equal(t, want, string(frames[0]))
	})
}

// rewriteMetaID replaces the first "id":"<uuid>" after "meta" with an id
// derived from it and salt, as the server does for a looped event.
func rewriteMetaID(data []byte, salt int64) []byte {
	at, ok := metaIDAt(data)
	if !ok {
		return data
	}
	return appendNewID(nil, data, at, salt)
}

func TestRewriteMetaIDKeepsOtherBytes(t *testing.T) {
	in := []byte(`{"$schema":"/x","meta":{"uri":"u","id":"ab8f9f18-a974-48f6-a668-988eb66b1536","dt":"d"},"id":5}`)
	out := rewriteMetaID(in, 1)
	require.NotEqual(t, string(in), string(out))
	require.Len(t, out, len(in))
	require.Equal(t, string(in[:37]), string(out[:37]))
	require.True(t, bytes.HasSuffix(out, []byte(`","dt":"d"},"id":5}`)))
	require.Equal(t, string(out), string(rewriteMetaID(in, 1)), "deterministic")
	require.NotEqual(t, string(out), string(rewriteMetaID(in, 2)))
}

// The pacer schedules frame k at start + k/rate: frames whose time has passed
// (a late wake-up) are due at once instead of being skipped, so the average
// stays at the rate.
func TestPacerCatchesUp(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	p := newPacer(start, 1000) // one frame per millisecond
	defer p.stop()
	tests := []struct {
		name string
		now  time.Duration // since start
		k    int
		due  bool
	}{
		{"first frame at the start", 0, 0, true},
		{"second frame waits", 0, 1, false},
		{"woke 50 ms late: frame 10 is due", 50 * time.Millisecond, 10, true},
		{"woke 50 ms late: frame 49 is due", 50 * time.Millisecond, 49, true},
		{"woke 50 ms late: frame 51 waits", 50 * time.Millisecond, 51, false},
		{"after a minute, frame 59,999 is due", time.Minute, 59_999, true},
		{"after a minute, frame 60,001 waits", time.Minute, 60_001, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := p.wait(start.Add(tt.now), tt.k)
			require.Equal(t, tt.due, ch == nil)
		})
	}
}

// What the server writes is what Payload gives (the load harness publishes
// Payload as its baseline), pass after pass, repeated ids included.
func TestReplayServesPayload(t *testing.T) {
	events := [][]byte{
		[]byte(`{"meta":{"id":"ab8f9f18-a974-48f6-a668-988eb66b1536","dt":"2024-01-01T00:00:00Z"},"wiki":"a"}`),
		[]byte(`{"meta":{"id":"ab8f9f18-a974-48f6-a668-988eb66b1536","dt":"2024-01-01T00:00:01Z"},"wiki":"b"}`), // a repeated id
		[]byte(`{"meta":{"dt":"2024-01-01T00:00:02Z"},"wiki":"no id"}`),
		[]byte("{\"meta\":{\"id\":\"c\"},\r\n\"wiki\":\"two lines\"}"),
	}
	r := NewReplay(ReplayConfig{Events: events, Loop: true, UniqueIDs: true, Limit: 12, CloseAtEnd: true}, zerolog.Nop())
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	frames := ParseSSE(body)
	require.Len(t, frames, 12)
	seen := map[string]bool{}
	for off, f := range frames {
		want := regexp.MustCompile(`[\r\n]+`).ReplaceAllString(string(r.Payload(int64(off))), "\n")
		require.Equal(t, want, string(f), "offset %d", off)
		if m := regexp.MustCompile(`"id":"([^"]*)"`).FindSubmatch(f); m != nil && off%4 != 2 {
			require.False(t, seen[string(m[1])], "offset %d repeats id %s", off, m[1])
			seen[string(m[1])] = true
		}
	}
}
