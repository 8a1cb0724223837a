package ingest

import (
	"context"
	"errors"
	"fmt"
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
	return &SSESource{cfg: cfg, http: &http.Client{Transport: tr}}, nil
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
	err = readFrames(resp.Body, s.cfg.MaxEventSize, []byte(lastID), func(f Frame) error {
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
