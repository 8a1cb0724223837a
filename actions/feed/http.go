package feed

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

//go:embed static
var staticFiles embed.FS

// csp is the page's Content-Security-Policy: only the feed's own scripts,
// styles and connections; no inline script or style, no frames, no plugins.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// writeTimeout bounds one write to an SSE connection.
const writeTimeout = 10 * time.Second

func (f *Feed) routes() {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := renderIndex(sub, f.cfg.ClaimTTL)
	if err != nil {
		panic(err) // the embedded page is fixed at build time; TestIndexClaimTTL reads it
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
	})
	mux.HandleFunc("GET /api/alerts", f.handleAlerts)
	mux.HandleFunc("GET /api/alerts/stream", f.handleStream)
	mux.HandleFunc("POST /api/claims", f.handleClaim)
	f.mux = mux
}

// claimTTLMark is the footer's claim lifetime in the embedded page, which
// renderIndex replaces with the configured one.
const claimTTLMark = `<span id="claim-ttl" data-seconds="3600">an hour</span>`

// renderIndex is the page with the configured claim lifetime in its footer
// (data-seconds holds it for scripts).
func renderIndex(files fs.FS, ttl time.Duration) ([]byte, error) {
	page, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("reading the embedded page: %w", err)
	}
	if !bytes.Contains(page, []byte(claimTTLMark)) {
		return nil, errors.New("rendering the embedded page: its footer has no claim TTL mark")
	}
	span := fmt.Sprintf(`<span id="claim-ttl" data-seconds="%d">%s</span>`,
		int64(ttl/time.Second), html.EscapeString(humanDuration(ttl)))
	return bytes.Replace(page, []byte(claimTTLMark), []byte(span), 1), nil
}

// humanDuration writes d for a reader: "an hour", "an hour and 30 minutes",
// "45 seconds"; under a second counts as a second.
func humanDuration(d time.Duration) string {
	d = max(d.Round(time.Second), time.Second)
	var parts []string
	for _, u := range []struct {
		size      time.Duration
		one, name string
	}{{time.Hour, "an hour", "hours"}, {time.Minute, "a minute", "minutes"}, {time.Second, "a second", "seconds"}} {
		n := d / u.size
		d -= n * u.size
		switch {
		case n == 1:
			parts = append(parts, u.one)
		case n > 1:
			parts = append(parts, strconv.FormatInt(int64(n), 10)+" "+u.name)
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// ServeHTTP serves the page, its static files and the API, with the
// security headers on every answer.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	f.mux.ServeHTTP(w, r)
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AlertsResponse is the answer of GET /api/alerts.
type AlertsResponse struct {
	// Alerts are the matching alerts, newest first.
	Alerts []Item `json:"alerts"`
	// LastSeq is the feed's position: pass it as Last-Event-ID (or
	// ?last_id=) to the stream to continue from here without a gap.
	LastSeq uint64 `json:"last_seq"`
	// Truncated is true when older matching alerts were left out (limit).
	Truncated bool `json:"truncated,omitempty"`
}

// handleAlerts is GET /api/alerts?filters&last_id=N&limit=N: the recent
// matching alerts (after last_id, or from Backfill ago), newest first.
func (f *Feed) handleAlerts(w http.ResponseWriter, r *http.Request) {
	flt, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	after, err := lastID(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	f.mu.Lock()
	upto := f.seq
	f.mu.Unlock()
	items, gap, err := f.backfill(r.Context(), flt, after, upto)
	if err != nil {
		f.log.Error().Err(err).Msg("feed: answering /api/alerts")
		writeJSON(w, http.StatusServiceUnavailable, apiError{"reading alerts failed"})
		return
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, apiError{"limit: want a positive number"})
			return
		}
		if len(items) > n {
			items, gap = items[len(items)-n:], true
		}
	}
	reverse(items)
	if items == nil {
		items = []Item{}
	}
	writeJSON(w, http.StatusOK, AlertsResponse{Alerts: items, LastSeq: upto, Truncated: gap})
}

// lastID is the position to resume after: the Last-Event-ID header (a
// reconnecting EventSource) or the last_id parameter; 0 when neither.
func lastID(r *http.Request) (uint64, error) {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("last_id")
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, errors.New("Last-Event-ID / last_id: want an alert sequence number")
	}
	return n, nil
}

// handleStream is GET /api/alerts/stream: Server-Sent Events. Each alert
// is an "alert" event whose id is its stream sequence; "retire" and "claim"
// events carry no id, so a reconnect resumes after the last alert.
func (f *Feed) handleStream(w http.ResponseWriter, r *http.Request) {
	flt, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	after, err := lastID(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	c, upto, err := f.subscribe(flt)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
		return
	}
	defer f.unsubscribe(c)
	ctx := r.Context()
	items, gap, err := f.backfill(ctx, flt, after, upto)
	if err != nil {
		f.log.Error().Err(err).Msg("feed: backfilling an SSE connection")
		writeJSON(w, http.StatusServiceUnavailable, apiError{"reading alerts failed"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	sw := &sseWriter{w: w, rc: rc, m: f.m}
	sw.raw("retry: 2000\n\n")
	last := after
	if gap && len(items) > 0 {
		sw.event(evGap, 0, []byte(`{"before":`+strconv.FormatUint(items[0].Seq, 10)+`}`))
	}
	for i := range items {
		data, err := json.Marshal(&items[i])
		if err != nil {
			continue
		}
		sw.event(evAlert, items[i].Seq, data)
		last = items[i].Seq
	}
	if after > 0 {
		f.resumeState(sw, flt, after)
	}
	last = max(last, upto)
	sw.event(evReady, 0, []byte(`{"last_seq":`+strconv.FormatUint(last, 10)+`}`))
	if sw.flush() != nil {
		return
	}
	tick := time.NewTicker(f.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.gone:
			// Dropped as too slow, or the feed is stopping: the browser
			// reconnects and resumes after the last id it has.
			return
		case <-tick.C:
			sw.raw(": ping\n\n")
		case m := <-c.ch:
			if m.seq != 0 {
				if m.seq <= last {
					continue // already sent in the backfill
				}
				last = m.seq
			}
			sw.event(m.event, m.seq, m.data)
			// Write what else is queued before one flush.
			for n := len(c.ch); n > 0 && sw.err == nil; n-- {
				m := <-c.ch
				if m.seq != 0 {
					if m.seq <= last {
						continue
					}
					last = m.seq
				}
				sw.event(m.event, m.seq, m.data)
			}
		}
		if sw.flush() != nil {
			return
		}
	}
}

// resumeState sends, to a resuming page, the current claims and the
// retirements of the alerts it already holds (those up to after, within
// the backfill window), which it may have missed while away.
func (f *Feed) resumeState(sw *sseWriter, flt Filter, after uint64) {
	since := f.now().Add(-f.cfg.Backfill)
	var out []outMsg
	f.mu.Lock()
	for i := f.ring.findTime(since); i < f.ring.n; i++ {
		e := f.ring.at(i)
		if e.seq > after {
			break
		}
		if !flt.Match(e.alert) {
			continue
		}
		if r, ok := f.retired.get(e.seq); ok {
			if data, err := json.Marshal(r); err == nil {
				out = append(out, outMsg{event: evRetire, data: data})
			}
		}
		if c, ok := f.claims.get(e.seq); ok && c.ID == e.alert.ID {
			if data, err := json.Marshal(c); err == nil {
				out = append(out, outMsg{event: evClaim, data: data})
			}
		}
	}
	f.mu.Unlock()
	for _, m := range out {
		sw.event(m.event, 0, m.data)
	}
}

// sseWriter writes SSE events; the first error sticks.
type sseWriter struct {
	w   io.Writer
	rc  *http.ResponseController
	m   *metrics
	err error
	buf []byte
}

func (s *sseWriter) raw(str string) { s.buf = append(s.buf, str...) }

func (s *sseWriter) event(name string, id uint64, data []byte) {
	s.buf = append(s.buf, "event: "...)
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, '\n')
	if id != 0 {
		s.buf = append(s.buf, "id: "...)
		s.buf = strconv.AppendUint(s.buf, id, 10)
		s.buf = append(s.buf, '\n')
	}
	// JSON has no raw newlines, so the data is one line.
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	s.m.sent.WithLabelValues(name).Inc()
}

func (s *sseWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
		return err
	}
	s.buf = s.buf[:0]
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// handleClaim is POST /api/claims with a JSON ClaimRequest.
func (f *Feed) handleClaim(w http.ResponseWriter, r *http.Request) {
	// A cross-site page can send a form POST but not a JSON one without
	// CORS, and a browser names the Origin of a cross-site request.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		f.claimResult(w, http.StatusUnsupportedMediaType, "invalid", "Content-Type must be application/json")
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		f.claimResult(w, http.StatusForbidden, "invalid", "cross-origin claims are refused")
		return
	}
	ok, evicted, n := f.limiters.allow(f.clientAddr(r), f.now())
	if evicted {
		f.m.evicted.WithLabelValues("limiters").Inc()
	}
	f.m.limiters.Set(float64(n))
	if !ok {
		w.Header().Set("Retry-After", "10")
		f.claimResult(w, http.StatusTooManyRequests, "limited", ErrClaimLimited.Error())
		return
	}
	var req ClaimRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxClaimBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		f.claimResult(w, http.StatusBadRequest, "invalid", "the body must be a JSON claim of at most 2 KB")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	c, err := f.Claim(ctx, req)
	switch {
	case err == nil:
		f.m.claimRequests.WithLabelValues("ok").Inc()
		writeJSON(w, http.StatusOK, c)
	case errors.Is(err, ErrClaimInvalid):
		f.claimResult(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, ErrClaimUnknown):
		f.claimResult(w, http.StatusNotFound, "unknown", err.Error())
	case errors.Is(err, ErrClaimForged):
		f.claimResult(w, http.StatusUnprocessableEntity, "forged", err.Error())
	case errors.Is(err, ErrClaimConflict):
		f.m.claimRequests.WithLabelValues("conflict").Inc()
		writeJSON(w, http.StatusConflict, struct {
			Error string `json:"error"`
			Claim *Claim `json:"claim,omitempty"`
		}{err.Error(), c})
	default:
		f.log.Error().Err(err).Uint64("seq", req.Seq).Msg("feed: recording a claim")
		f.claimResult(w, http.StatusServiceUnavailable, "error", "recording the claim failed")
	}
}

func (f *Feed) claimResult(w http.ResponseWriter, status int, result, msg string) {
	f.m.claimRequests.WithLabelValues(result).Inc()
	writeJSON(w, status, apiError{msg})
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}
