package ingest

import (
	"bufio"
	"net/http"
)

// startSSE answers 200 with an event stream, writes the ":ok" comment
// EventStreams opens with, and returns a buffered writer and a flush that
// pushes it to the client (false once the client is gone). ok is false when
// the client went away before the first flush. The replay server and the RC
// feed adapter serve their streams through it.
func startSSE(w http.ResponseWriter) (bw *bufio.Writer, flush func() bool, ok bool) {
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	bw = bufio.NewWriterSize(w, 64<<10)
	flush = func() bool {
		if bw.Flush() != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	_, _ = bw.WriteString(":ok\n\n")
	return bw, flush, flush()
}
