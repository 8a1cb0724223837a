package ingest

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func limited(t *testing.T, in string, max int) string {
	t.Helper()
	// One byte at a time: every frame and line boundary falls between reads.
	f := &frameLimiter{body: io.NopCloser(iotest.OneByteReader(strings.NewReader(in))), max: max, buf: make([]byte, 7)}
	out, err := io.ReadAll(f)
	require.NoError(t, err)
	return string(out)
}

// Frames under the limit pass unchanged, whatever the line ends; a frame
// over it becomes a stand-in carrying its id (before or after its data) and
// its size; a frame cut by the end of the stream is passed on as it came.
func TestFrameLimiter(t *testing.T) {
	big := strings.Repeat("x", 100)
	tests := []struct{ name, in, want string }{
		{"lf", ":ok\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\n", ":ok\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\n"},
		{"crlf", "id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n", "id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n"},
		{"cr", "id: 1\rdata: a\r\rid: 2\rdata: b\r\r", "id: 1\rdata: a\r\rid: 2\rdata: b\r\r"},
		{"over, id first", "id: 1\ndata: a\n\nevent: message\nid: 2\ndata: " + big + "\n\nid: 3\ndata: c\n\n",
			"id: 1\ndata: a\n\nid: 2\nevent: " + EventTooLarge + "\ndata: 129\n\nid: 3\ndata: c\n\n"},
		{"over, id last", "data: " + big + "\nid: 2\n\nid: 3\ndata: c\n\n",
			"id: 2\nevent: " + EventTooLarge + "\ndata: 114\n\nid: 3\ndata: c\n\n"},
		{"over, no id", "data: " + big + "\n\n", "event: " + EventTooLarge + "\ndata: 108\n\n"},
		{"cut at the end", "id: 1\ndata: a\n\nid: 2\ndata: {\"trunc", "id: 1\ndata: a\n\nid: 2\ndata: {\"trunc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, limited(t, tc.in, 64))
		})
	}
}

// go test -bench FrameLimiter ./ingest: the limiter's cost per byte of a
// stream of 1.4 KiB frames, against copying the same bytes without it.
func BenchmarkFrameLimiter(b *testing.B) {
	frame := "event: message\nid: [{\"topic\":\"t\",\"partition\":0,\"offset\":1}]\ndata: {" + strings.Repeat("\"k\":\"vvvvvvvvvv\",", 80) + "\"z\":1}\n\n"
	data := []byte(strings.Repeat(frame, 20000))
	for _, limit := range []bool{true, false} {
		name := map[bool]string{true: "limiter", false: "plain"}[limit]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				var r io.Reader = bytes.NewReader(data)
				if limit {
					r = &frameLimiter{body: io.NopCloser(r), max: 16 << 20, buf: make([]byte, 32<<10)}
				}
				// Read in 8 KiB pieces, as the SSE reader does (no WriteTo shortcut).
				if n, _ := io.CopyBuffer(writer{}, struct{ io.Reader }{r}, make([]byte, 8<<10)); n != int64(len(data)) {
					b.Fatal(n)
				}
			}
		})
	}
}

// writer discards what it is given (io.Discard would read for itself).
type writer struct{}

func (writer) Write(p []byte) (int, error) { return len(p), nil }
