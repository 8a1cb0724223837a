package ingest

import (
	"bufio"
	"bytes"
	"regexp"
	"testing"

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
