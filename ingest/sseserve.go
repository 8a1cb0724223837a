package ingest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
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

// offsetInID is the offset after the one a Last-Event-ID (EventStreams'
// JSON array of {topic, partition, offset}) names for topic; offsets below
// minOffset are refused.
func offsetInID(lastID, topic string, minOffset int64) (int64, error) {
	var parts []struct {
		Topic  string `json:"topic"`
		Offset *int64 `json:"offset"`
	}
	if err := json.Unmarshal([]byte(lastID), &parts); err != nil {
		return 0, fmt.Errorf("Last-Event-ID is not a JSON array: %w", err)
	}
	for _, p := range parts {
		if p.Topic == topic && p.Offset != nil && *p.Offset >= minOffset {
			return *p.Offset + 1, nil
		}
	}
	return 0, fmt.Errorf("Last-Event-ID has no offset for topic %s", topic)
}

// parseSinceParam reads EventStreams' ?since=: an RFC 3339 time or epoch
// milliseconds.
func parseSinceParam(since string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		return t, nil
	}
	ms, err := strconv.ParseInt(since, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q is neither RFC 3339 nor epoch milliseconds", since)
	}
	return time.UnixMilli(ms), nil
}
