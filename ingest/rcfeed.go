package ingest

// The MediaWiki RC feed adapter: a wiki configured with
//
//	$wgRCFeeds['rcwatch'] = ['formatter' => 'JSONRCFeedFormatter', 'uri' => 'udp://HOST:PORT'];
//
// pushes one JSON datagram per recent change, with the recentchange core
// fields but none of EventStreams' envelope. RCFeed receives them, turns each
// into an EventStreams-compatible event (meta.id, meta.dt, meta.domain,
// meta.stream, meta.uri, title_url, notify_url) and serves them as SSE with
// ids that Last-Event-ID resumes from, out of a bounded in-memory ring.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
)

// RCFeedConfig configures the RC feed adapter.
type RCFeedConfig struct {
	// Buffer is how many events the ring keeps for Last-Event-ID resumes
	// (default 100,000, about 100 MB at worst). A client resuming from an
	// event older than the ring gets the oldest event kept, and the gap is
	// logged and counted (rcwatch_rcfeed_resume_gap_events_total): the
	// events in between are lost to it, as they are to an EventStreams
	// client resuming past Kafka's retention.
	Buffer int
	// Stream is meta.stream (default "mediawiki.recentchange").
	Stream string
	// Topic names the synthetic topic of the SSE id lines (default
	// "rcfeed.mediawiki.recentchange").
	Topic string
	// MaxDatagram is the largest datagram read (default 65,535, UDP's limit);
	// a longer one is truncated by the kernel and rejected as invalid JSON.
	MaxDatagram int
	// Now stamps meta.dt when a datagram has no usable timestamp.
	Now func() time.Time
}

// ErrRCFeedDatagram is wrapped by every rejection of a datagram.
var ErrRCFeedDatagram = errors.New("not a MediaWiki RC feed message")

// RCFeed is the adapter. Add converts one datagram; Listen reads datagrams
// from a UDP socket; ServeHTTP serves the SSE stream.
type RCFeed struct {
	cfg RCFeedConfig
	log zerolog.Logger
	m   rcfeedMetrics

	mu     sync.Mutex
	ring   [][]byte    // ring[off % len] holds the event at offset off
	times  []time.Time // meta.dt of each, for ?since=
	recv   []int64     // when each datagram arrived (unix ns), for rcwatch_rcfeed_delay_seconds
	next   int64       // offset of the next event
	wake   chan struct{}
	closed bool
}

type rcfeedMetrics struct {
	received, resumeGaps prometheus.Counter
	rejected             *prometheus.CounterVec
	buffered, clients    prometheus.Gauge
	delay                prometheus.Histogram
}

// NewRCFeed builds the adapter; its metrics are registered on reg.
func NewRCFeed(cfg RCFeedConfig, reg prometheus.Registerer, log zerolog.Logger) (*RCFeed, error) {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 100_000
	}
	if cfg.Stream == "" {
		cfg.Stream = "mediawiki.recentchange"
	}
	if cfg.Topic == "" {
		cfg.Topic = "rcfeed.mediawiki.recentchange"
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = 65535
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := rcfeedMetrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_rcfeed_received_total",
			Help: "RC feed datagrams turned into events."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_rcfeed_rejected_total",
			Help: "RC feed datagrams rejected, by reason."}, []string{"reason"}),
		resumeGaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_rcfeed_resume_gap_events_total",
			Help: "Events a resuming client missed because they had left the ring."}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_rcfeed_buffered_events",
			Help: "Events held in the ring for Last-Event-ID resumes."}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_rcfeed_clients",
			Help: "SSE clients connected."}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rcwatch_rcfeed_delay_seconds",
			Help:    "From a datagram's arrival to its event's flush to an SSE client (events that arrived while the client was connected).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
	}
	for _, c := range []prometheus.Collector{m.received, m.rejected, m.resumeGaps, m.buffered, m.clients, m.delay} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering RC feed metrics: %w", err)
		}
	}
	return &RCFeed{cfg: cfg, log: log, m: m, ring: make([][]byte, cfg.Buffer), times: make([]time.Time, cfg.Buffer),
		recv: make([]int64, cfg.Buffer), wake: make(chan struct{})}, nil
}

// Topic is the topic of the SSE ids.
func (f *RCFeed) Topic() string { return f.cfg.Topic }

// ID returns the SSE id line of the event at offset off.
func (f *RCFeed) ID(off int64) string {
	return `[{"topic":"` + f.cfg.Topic + `","partition":0,"offset":` + strconv.FormatInt(off, 10) + `}]`
}

// Len is the number of events received so far (the next offset).
func (f *RCFeed) Len() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// Listen reads datagrams from conn until ctx ends or conn fails, adding each
// one; a rejected datagram is logged and counted, and reading goes on. It
// closes conn when ctx ends.
func (f *RCFeed) Listen(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	buf := make([]byte, f.cfg.MaxDatagram+1)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading the RC feed: %w", err)
		}
		if n > f.cfg.MaxDatagram {
			f.reject("too_large", fmt.Errorf("%w: datagram of more than %d bytes", ErrRCFeedDatagram, f.cfg.MaxDatagram), from)
			continue
		}
		if _, err := f.Add(buf[:n]); err != nil {
			f.reject(rejectReason(err), err, from)
		}
	}
}

func (f *RCFeed) reject(reason string, err error, from net.Addr) {
	f.m.rejected.WithLabelValues(reason).Inc()
	ev := f.log.Warn().Err(err).Str("reason", reason)
	if from != nil {
		ev = ev.Str("from", from.String())
	}
	ev.Msg("RC feed datagram rejected")
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, errRCInvalidUTF8):
		return "invalid_utf8"
	case errors.Is(err, errRCNotJSON):
		return "invalid_json"
	default:
		return "invalid_fields"
	}
}

var (
	errRCInvalidUTF8 = fmt.Errorf("%w: invalid UTF-8", ErrRCFeedDatagram)
	errRCNotJSON     = fmt.Errorf("%w: not a JSON object", ErrRCFeedDatagram)
)

// Add converts one datagram and appends the event to the ring, waking the
// SSE clients. It returns the event's offset.
func (f *RCFeed) Add(datagram []byte) (int64, error) {
	recv := f.cfg.Now().UnixNano()
	ev, dt, err := f.convert(datagram)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	off := f.next
	f.ring[off%int64(len(f.ring))] = ev
	f.times[off%int64(len(f.ring))] = dt
	f.recv[off%int64(len(f.ring))] = recv
	f.next++
	wake := f.wake
	f.wake = make(chan struct{})
	f.mu.Unlock()
	close(wake)
	f.m.received.Inc()
	f.m.buffered.Set(float64(min(off+1, int64(len(f.ring)))))
	return off, nil
}

// Convert turns one JSONRCFeedFormatter message into an EventStreams
// recentchange event. Every field of the message is kept; it adds $schema,
// meta (id, dt, domain, stream, uri), title_url and, for edits and page
// creations, notify_url. meta.id is derived from the wiki and the rc id, so
// the same change sent twice has the same id (and JetStream's de-duplication
// drops the repeat). server_script_path "/" (what MediaWiki writes for an
// empty $wgScriptPath) becomes "", as EventStreams would have it.
func (f *RCFeed) Convert(datagram []byte) ([]byte, error) {
	ev, _, err := f.convert(datagram)
	return ev, err
}

// convert is Convert, also returning meta.dt.
func (f *RCFeed) convert(datagram []byte) ([]byte, time.Time, error) {
	var zero time.Time
	if !utf8.Valid(datagram) {
		return nil, zero, errRCInvalidUTF8
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(datagram))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, zero, fmt.Errorf("%w: %v", errRCNotJSON, err)
	}
	if dec.More() {
		return nil, zero, fmt.Errorf("%w: trailing data after the object", errRCNotJSON)
	}
	// The feed's keys are lower case. Ingest's decoder matches keys without
	// regard to case, so "Id" would be the event's id there but not here:
	// read every top-level key as its lower case (an exact lower-case key
	// wins), so that both sides see one event (found by FuzzRCFeedConvert).
	// In sorted order, so that the same datagram always reads the same.
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lk := strings.ToLower(k)
		if lk == k {
			continue
		}
		if _, ok := m[lk]; !ok {
			m[lk] = m[k]
		}
		delete(m, k)
	}
	str := func(k string, required bool) (string, error) {
		v, ok := m[k]
		if !ok || v == nil {
			if required {
				return "", fmt.Errorf("%w: missing %q", ErrRCFeedDatagram, k)
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: %q is %T, want a string", ErrRCFeedDatagram, k, v)
		}
		return s, nil
	}
	num := func(k string) (int64, bool, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return 0, false, nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return 0, false, fmt.Errorf("%w: %q is %T, want a number", ErrRCFeedDatagram, k, v)
		}
		i, err := n.Int64()
		if err != nil {
			return 0, false, fmt.Errorf("%w: %q is not an integer: %s", ErrRCFeedDatagram, k, n)
		}
		return i, true, nil
	}
	wiki, err := str("wiki", true)
	if err != nil {
		return nil, zero, err
	}
	typ, err := str("type", true)
	if err != nil {
		return nil, zero, err
	}
	title, err := str("title", true)
	if err != nil {
		return nil, zero, err
	}
	serverURL, err := str("server_url", true)
	if err != nil {
		return nil, zero, err
	}
	scriptPath, err := str("server_script_path", false)
	if err != nil {
		return nil, zero, err
	}
	serverName, err := str("server_name", false)
	if err != nil {
		return nil, zero, err
	}
	rcid, hasID, err := num("id")
	if err != nil {
		return nil, zero, err
	}
	ts, hasTS, err := num("timestamp")
	if err != nil {
		return nil, zero, err
	}
	if _, _, err := num("namespace"); err != nil {
		return nil, zero, err
	}
	if wiki == "" || typ == "" {
		return nil, zero, fmt.Errorf("%w: empty wiki or type", ErrRCFeedDatagram)
	}
	if scriptPath == "/" {
		scriptPath = ""
		m["server_script_path"] = ""
	}
	domain := serverName
	if u, err := url.Parse(serverURL); err == nil && u.Hostname() != "" {
		domain = u.Hostname()
	}
	if domain == "" {
		return nil, zero, fmt.Errorf("%w: no host in server_url %q", ErrRCFeedDatagram, serverURL)
	}
	if serverName == "" {
		m["server_name"] = domain
	}

	var dt time.Time
	if hasTS && ts > 0 && ts < math.MaxInt32*4 {
		dt = time.Unix(ts, 0).UTC()
	} else {
		dt = f.cfg.Now().UTC()
	}
	// The id: stable per (wiki, rc id); a message without an rc id gets one
	// from its own bytes, so an identical repeat is still recognised.
	var key string
	if hasID {
		key = "rcfeed:" + wiki + ":rc:" + strconv.FormatInt(rcid, 10)
	} else {
		key = "rcfeed:" + wiki + ":raw:" + string(datagram)
	}
	titleURL := serverURL + scriptPath + "/index.php?title=" + url.QueryEscape(strings.ReplaceAll(title, " ", "_"))
	meta := map[string]any{
		"id":     uuidFrom(key),
		"dt":     dt.Format(time.RFC3339),
		"domain": domain,
		"stream": f.cfg.Stream,
		"uri":    titleURL,
	}
	if old, ok := m["meta"].(map[string]any); ok { // a wrapped message keeps its own meta fields
		for k, v := range old {
			if _, set := meta[k]; !set {
				meta[k] = v
			}
		}
	}
	m["meta"] = meta
	m["$schema"] = "/mediawiki/recentchange/1.0.0"
	if _, ok := m["title_url"]; !ok {
		m["title_url"] = titleURL
	}
	if _, ok := m["notify_url"]; !ok && (typ == "edit" || typ == "new") {
		if rev, ok := m["revision"].(map[string]any); ok {
			newRev, _ := rev["new"].(json.Number)
			oldRev, _ := rev["old"].(json.Number)
			switch {
			case newRev != "" && oldRev != "":
				m["notify_url"] = serverURL + scriptPath + "/index.php?diff=" + string(newRev) + "&oldid=" + string(oldRev)
			case newRev != "":
				m["notify_url"] = serverURL + scriptPath + "/index.php?oldid=" + string(newRev)
			}
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, zero, fmt.Errorf("%w: re-encoding: %v", ErrRCFeedDatagram, err)
	}
	// Fields passed through unchecked (length, revision, bot, …) must still
	// make an event ingest accepts: reject here, with the reason, rather
	// than serve what ingest would dead-letter.
	if err := event.DecodeInto(out, new(event.RecentChange)); err != nil {
		return nil, zero, fmt.Errorf("%w: %v", ErrRCFeedDatagram, err)
	}
	return out, dt, nil
}

// uuidFrom is a UUID-shaped (version 5 layout) id derived from key.
func uuidFrom(key string) string {
	sum := sha1.Sum([]byte(key))
	sum[6] = (sum[6] & 0x0f) | 0x50
	sum[8] = (sum[8] & 0x3f) | 0x80
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Close ends every SSE response (they return as if the server cut them).
func (f *RCFeed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.wake)
		f.wake = make(chan struct{})
	}
}

// since returns the events from offset off on (at most max) and when each
// arrived, the offset after them, the channel closed when more arrive, the
// number of events skipped because they left the ring, and whether the feed
// is closed.
func (f *RCFeed) since(off int64, max int) (evs [][]byte, recv []int64, next int64, wake chan struct{}, gap int64, closed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if oldest := f.next - int64(len(f.ring)); off < oldest {
		gap, off = oldest-off, oldest
	}
	if off > f.next {
		off = f.next
	}
	for ; off < f.next && len(evs) < max; off++ {
		evs = append(evs, f.ring[off%int64(len(f.ring))])
		recv = append(recv, f.recv[off%int64(len(f.ring))])
	}
	return evs, recv, off, f.wake, gap, f.closed
}

// offsetOf parses a Last-Event-ID of ours and returns the offset to serve next.
func (f *RCFeed) offsetOf(lastID string) (int64, error) {
	return offsetInID(lastID, f.cfg.Topic, -1)
}

// sinceOffset is the offset of the first event kept whose meta.dt is at or
// after since (an RFC 3339 time or epoch milliseconds, as EventStreams takes).
func (f *RCFeed) sinceOffset(since string) (int64, error) {
	t, err := parseSinceParam(since)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	off := max(f.next-int64(len(f.ring)), 0)
	for ; off < f.next; off++ {
		if !f.times[off%int64(len(f.ring))].Before(t) {
			break
		}
	}
	return off, nil
}

// ServeHTTP serves the events as EventStreams does: ":ok", then one frame
// per event ("event: message", "id: [{topic,partition,offset}]", "data:").
// Without Last-Event-ID a client starts at new events (EventStreams' live
// default), or with ?since= at the first event kept from that time on; with
// a Last-Event-ID it resumes after that event, from the ring.
func (f *RCFeed) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	f.m.clients.Inc()
	defer f.m.clients.Dec()
	off := f.Len()
	if lastID := req.Header.Get("Last-Event-ID"); lastID != "" {
		var err error
		if off, err = f.offsetOf(lastID); err != nil {
			httpError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	} else if since := req.URL.Query().Get("since"); since != "" {
		var err error
		if off, err = f.sinceOffset(since); err != nil {
			httpError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	connected := f.cfg.Now().UnixNano()
	bw, flush, ok := startSSE(w)
	if !ok {
		return
	}
	for {
		evs, recv, next, wake, gap, closed := f.since(off, 256)
		if gap > 0 {
			f.m.resumeGaps.Add(float64(gap))
			f.log.Warn().Int64("missed", gap).Int64("from", off).Int64("resumed_at", off+gap).
				Msg("RC feed client resumed from before the ring: events lost to it")
		}
		for i, ev := range evs {
			writeFrame(bw, f.ID(next-int64(len(evs))+int64(i)), ev)
		}
		if len(evs) > 0 && !flush() {
			return
		}
		now := f.cfg.Now().UnixNano()
		for _, r := range recv {
			if r >= connected {
				f.m.delay.Observe(float64(now-r) / float64(time.Second))
			}
		}
		off = next
		if len(evs) > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-wake:
		case <-req.Context().Done():
			return
		}
	}
}
