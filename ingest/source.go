package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Frame is one SSE frame as received: the id line verbatim, the event name
// and the data (multi-line data joined with '\n').
type Frame struct {
	ID    []byte
	Event []byte
	Data  []byte
}

// Source is one connection to an EventStreams-compatible endpoint. Stream
// connects (sending lastID as Last-Event-ID when non-empty, else since as
// ?since= when non-empty), calls handle for each frame in order, and returns
// when the connection ends: nil when the server closed it cleanly, an error
// otherwise. A handle error or the cancellation of ctx ends the connection.
// Reconnecting is the caller's job (Ingester.Run), never the library's.
type Source interface {
	Stream(ctx context.Context, lastID, since string, handle func(Frame) error) error
}

// StatusError is a non-200 answer; RetryAfter is the server's Retry-After.
type StatusError struct {
	Code       int
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("SSE endpoint answered HTTP %d %s", e.Code, http.StatusText(e.Code))
}

// SSEConfig configures the r3labs/sse client.
type SSEConfig struct {
	URL       string
	UserAgent string
	// MaxEventSize is the largest frame the reader accepts (the library's
	// default of 64 KiB makes it silently resubscribe on larger events).
	MaxEventSize int
	// IdleTimeout ends a connection that delivered nothing for this long
	// (EventStreams sends no heartbeats; a stuck TCP connection would
	// otherwise hang forever). 0 disables.
	IdleTimeout time.Duration
	// ConnectTimeout bounds dialling and waiting for response headers.
	ConnectTimeout time.Duration
}

// SSESource implements Source with github.com/r3labs/sse/v2's frame
// reader, used around the library's known flaws (DESIGN.md §5): a large
// read buffer, no internal reconnect (its client's backoff gives up after
// ~15 minutes and ignores ctx: we make one request per Stream), a
// per-connection context we cancel ourselves, and fields parsed by
// readFrames rather than the client's rune-by-rune processEvent.
type SSESource struct {
	cfg  SSEConfig
	http *http.Client
}

// NewSSESource validates cfg and builds the source.
func NewSSESource(cfg SSEConfig) (*SSESource, error) {
	if _, err := url.ParseRequestURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("source URL %q: %w", cfg.URL, err)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.MaxEventSize <= 0 {
		cfg.MaxEventSize = 16 << 20
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ConnectTimeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
	}
	return &SSESource{cfg: cfg, http: &http.Client{Transport: limitFrames{tr, cfg.MaxEventSize}}}, nil
}

// DefaultUserAgent follows the Wikimedia User-Agent policy: it names the
// tool and a way to contact its operators.
const DefaultUserAgent = "rcwatch/0.1 (https://github.com/rcwatch/rcwatch; patrol stream processor) r3labs-sse/2.10"

// Stream implements Source.
func (s *SSESource) Stream(ctx context.Context, lastID, since string, handle func(Frame) error) error {
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	u := s.cfg.URL
	if lastID == "" && since != "" {
		pu, _ := url.Parse(u)
		q := pu.Query()
		q.Set("since", since)
		pu.RawQuery = q.Encode()
		u = pu.String()
	}
	// The library fails the whole connection on a frame over its buffer
	// ("bufio.Scanner: token too long") and a reconnect reads the same frame
	// again, forever; limitFrames replaces such a frame by an
	// EventTooLarge frame under the buffer size, so the stream moves past it.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("building the request to %s: %w", u, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return parent.Err()
		}
		return fmt.Errorf("connecting to the SSE endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}

	var (
		handleErr error
		activity  = make(chan struct{}, 1)
	)
	if s.cfg.IdleTimeout > 0 {
		go watchIdle(ctx, cancel, activity, s.cfg.IdleTimeout)
	}
	err = readFrames(resp.Body, s.cfg.MaxEventSize+tooLargeRoom, []byte(lastID), func(f Frame) error {
		if ctx.Err() != nil {
			return nil // ending: what the reader still holds is read again next time
		}
		select {
		case activity <- struct{}{}:
		default:
		}
		if err := handle(f); err != nil {
			handleErr = err
			return err
		}
		return nil
	})
	switch {
	case handleErr != nil:
		return handleErr
	case parent.Err() != nil:
		return parent.Err()
	case context.Cause(ctx) == ErrIdle:
		return ErrIdle
	}
	return err
}

// ErrIdle ends a connection that delivered nothing for IdleTimeout.
var ErrIdle = errors.New("SSE connection idle for too long")

func watchIdle(ctx context.Context, cancel context.CancelCauseFunc, activity <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-activity:
			if !t.Stop() {
				<-t.C
			}
			t.Reset(d)
		case <-t.C:
			cancel(ErrIdle)
			return
		}
	}
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// EventTooLarge is the SSE event name of the frame that stands for a frame
// over SSEConfig.MaxEventSize: its id is the dropped frame's id (when it
// had one) and its data the dropped frame's size in bytes.
const EventTooLarge = "rcwatch-frame-too-large"

// tooLargeRoom is what the library's buffer holds beyond MaxEventSize: the
// stand-in frame of a frame over it (an id line of up to 4 KiB, the rest).
const tooLargeRoom = 8 << 10

// limitFrames wraps the body of a successful response in a frameLimiter.
type limitFrames struct {
	rt  http.RoundTripper
	max int
}

func (l limitFrames) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK {
		resp.Body = &frameLimiter{body: resp.Body, max: l.max, buf: make([]byte, 32<<10)}
	}
	return resp, err
}

// frameLimiter passes an SSE byte stream through frame by frame, holding
// each frame until its blank line; a frame growing past max is dropped
// (only its id line is kept, up to 4 KiB) and replaced by an EventTooLarge
// frame, so that memory stays bounded and the stream goes on.
type frameLimiter struct {
	body io.ReadCloser
	max  int
	buf  []byte // read buffer
	err  error  // of body, returned once out is empty

	frame    []byte // the current frame's complete lines (not dropping)
	line     int    // bytes of the current line so far (without its end)
	head     []byte // the current line's first bytes while dropping (id detection)
	id       []byte // the dropped frame's id line
	dropping bool
	size     int    // bytes of the dropped frame
	prevCR   bool   // the last byte was '\r' (a following '\n' ends no new line)
	out      []byte // ready for Read, from outPos
	outPos   int
}

func (f *frameLimiter) Close() error { return f.body.Close() }

func (f *frameLimiter) Read(p []byte) (int, error) {
	for f.outPos == len(f.out) {
		if f.err != nil {
			return 0, f.err
		}
		n, err := f.body.Read(f.buf)
		f.scan(f.buf[:n])
		if err != nil {
			// The connection ended inside a frame: pass on what came, as the
			// library dispatches it (the ingester reads a cut frame again).
			f.err = err
			if f.dropping {
				f.endFrame()
			}
			f.out = append(f.out, f.frame...)
			f.frame = f.frame[:0]
		}
	}
	n := copy(p, f.out[f.outPos:])
	if f.outPos += n; f.outPos == len(f.out) {
		f.out, f.outPos = f.out[:0], 0 // drained: its capacity is reused
	}
	return n, nil
}

// scan consumes b, moving complete frames (or their stand-ins) to out.
// Line ends are found with IndexByte (vectorised); a '\r' is looked for
// again only once passed, so a stream without any costs one scan.
func (f *frameLimiter) scan(b []byte) {
	cr := bytes.IndexByte(b, '\r')
	for off := 0; off < len(b); {
		if cr >= 0 && cr < off {
			if cr = bytes.IndexByte(b[off:], '\r'); cr >= 0 {
				cr += off
			}
		}
		i := bytes.IndexByte(b[off:], '\n')
		if cr >= 0 && (i < 0 || cr-off < i) {
			i = cr - off
		}
		if i < 0 {
			f.take(b[off:])
			f.line += len(b) - off
			f.prevCR = false
			return
		}
		eol := b[off+i]
		crlf := eol == '\n' && i == 0 && f.prevCR
		f.take(b[off : off+i+1])
		f.prevCR = eol == '\r'
		lineLen := f.line + i
		off += i + 1
		if crlf {
			continue
		}
		if f.dropping && bytes.HasPrefix(f.head, []byte("id:")) {
			f.id = append(f.id[:0], f.head...)
		}
		f.head, f.line = f.head[:0], 0
		if lineLen == 0 { // a blank line: the frame ends
			f.endFrame()
		}
	}
}

// take appends part of the current line to the frame, or counts it when the
// frame is being dropped, starting to drop when the frame grows past max.
func (f *frameLimiter) take(b []byte) {
	if !f.dropping && len(f.frame)+len(b) > f.max {
		f.dropping, f.size = true, len(f.frame)
		f.id = f.id[:0]
		for _, l := range bytes.FieldsFunc(f.frame, func(r rune) bool { return r == '\n' || r == '\r' }) {
			if bytes.HasPrefix(l, []byte("id:")) {
				f.id = append(f.id[:0], l...)
			}
		}
		// The current line's start, for id detection.
		start := len(f.frame) - f.line
		if start < 0 {
			start = 0
		}
		f.head = append(f.head[:0], f.frame[start:]...)
		f.frame = f.frame[:0]
	}
	if f.dropping {
		f.size += len(b)
		if room := 4<<10 - len(f.head); room > 0 {
			f.head = append(f.head, b[:min(room, len(b))]...)
		}
		f.head = bytes.TrimRight(f.head, "\r\n")
		return
	}
	f.frame = append(f.frame, b...)
}

func (f *frameLimiter) endFrame() {
	if f.dropping {
		if len(f.id) > 4<<10 {
			f.id = f.id[:4<<10]
		}
		if len(f.id) > 0 {
			f.out = append(f.out, f.id...)
			f.out = append(f.out, '\n')
		}
		f.out = append(f.out, "event: "+EventTooLarge+"\ndata: "+strconv.Itoa(f.size)+"\n\n"...)
		f.dropping, f.size = false, 0
		f.frame = f.frame[:0]
		return
	}
	f.out = append(f.out, f.frame...)
	f.frame = f.frame[:0]
}
