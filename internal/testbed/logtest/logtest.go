// Package logtest is the test bed's log sink: a concurrency-safe writer for
// a zerolog logger that tests grep (no secret logged, a reason reported)
// and wait on (a line that says the stage backed off).
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Sink collects what a logger writes. Safe for concurrent use.
type Sink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	wake  chan struct{}
}

// NewSink returns an empty sink.
func NewSink() *Sink { return &Sink{wake: make(chan struct{})} }

// New returns a debug-level JSON logger writing to a new sink. When the test
// fails, the last lines are written to the test's log.
func New(tb testing.TB) (zerolog.Logger, *Sink) {
	tb.Helper()
	s := NewSink()
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("--- log (tail):\n%s", s.Tail(4000))
		}
	})
	return zerolog.New(s).Level(zerolog.DebugLevel).With().Timestamp().Logger(), s
}

// Write stores p (one or more lines).
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	s.buf.Write(p)
	s.lines = append(s.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	close(s.wake)
	s.wake = make(chan struct{})
	return len(p), nil
}

// String is everything written so far.
func (s *Sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Tail is the last n bytes written.
func (s *Sink) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Len is the number of lines written so far (a mark for Await).
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Await waits for a line, after the first from lines, that contains every
// part, and returns it decoded (nil if it is not JSON). It fails the test
// after timeout.
func (s *Sink) Await(tb testing.TB, from int, timeout time.Duration, parts ...string) map[string]any {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		for _, l := range s.lines[min(from, len(s.lines)):] {
			if containsAll(l, parts) {
				s.mu.Unlock()
				var m map[string]any
				_ = json.Unmarshal([]byte(l), &m)
				return m
			}
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			tb.Fatalf("no log line with %q within %s", parts, timeout)
			return nil
		}
	}
}

// Matching returns the JSON lines that contain every part, decoded.
func (s *Sink) Matching(parts ...string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range s.lines {
		var m map[string]any
		if containsAll(l, parts) && json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func containsAll(l string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(l, p) {
			return false
		}
	}
	return true
}
