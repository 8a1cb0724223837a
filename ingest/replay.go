package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ReplayConfig configures the replay server.
type ReplayConfig struct {
	// Events are the data payloads, served in order (one SSE frame each).
	Events [][]byte
	// Topic names the synthetic Kafka topic of the id lines
	// (default "replay.mediawiki.recentchange").
	Topic string
	// Loop serves the events again and again; with UniqueIDs (the default
	// for loops) every frame of every pass has a distinct meta.id, so
	// JetStream sees new events: later passes rewrite it, and so does the
	// first pass for an event whose id an earlier event already had
	// (recordings hold a few repeats).
	Loop      bool
	UniqueIDs bool
	// Limit stops after this many events in all (0: all of them, or forever with Loop).
	Limit int
	// Rate paces frames to N per second per connection (0: as fast as possible).
	Rate float64
	// CutEvery closes a connection after N frames; CutAfter after a duration
	// (EventStreams cuts about every 15 minutes). 0 disables each.
	CutEvery int
	CutAfter time.Duration
	// MaxConns answers 429 with Retry-After to connections beyond it (0: no limit).
	MaxConns int
	// CloseAtEnd closes the connection when there is nothing more to serve;
	// by default it stays open and idle, like a quiet live stream.
	CloseAtEnd bool
}

// Replay is an EventStreams-compatible SSE endpoint serving recorded events:
// ":ok" first, then frames of "event: message", "id: <JSON array>" as
// Wikimedia writes it, and one "data:" line. It honours Last-Event-ID
// (resumes after that event) and ?since= (an RFC 3339 time or epoch ms, when
// no Last-Event-ID is sent).
type Replay struct {
	cfg   ReplayConfig
	times []time.Time // meta.dt of each event, for ?since=
	dup   []bool      // the event's meta.id is an earlier event's
	idAt  [][2]int    // where the event's meta.id lies ({0, 0}: none found)
	log   zerolog.Logger

	conns  atomic.Int64
	served atomic.Int64
	mu     sync.Mutex
	seen   []string // Last-Event-ID headers received, in order
}

// NewReplay builds the server.
func NewReplay(cfg ReplayConfig, log zerolog.Logger) *Replay {
	if cfg.Topic == "" {
		cfg.Topic = "replay.mediawiki.recentchange"
	}
	r := &Replay{cfg: cfg, log: log, times: make([]time.Time, len(cfg.Events)), dup: make([]bool, len(cfg.Events)),
		idAt: make([][2]int, len(cfg.Events))}
	ids := make(map[string]bool, len(cfg.Events))
	for i, e := range cfg.Events {
		var v struct {
			Meta struct {
				ID string `json:"id"`
				DT string `json:"dt"`
			} `json:"meta"`
		}
		if json.Unmarshal(e, &v) == nil {
			r.times[i], _ = time.Parse(time.RFC3339Nano, v.Meta.DT)
			r.dup[i] = v.Meta.ID != "" && ids[v.Meta.ID]
			ids[v.Meta.ID] = true
		}
		r.idAt[i], _ = metaIDAt(e)
	}
	return r
}

// Served is the number of frames written so far, over all connections.
func (r *Replay) Served() int64 { return r.served.Load() }

// LastEventIDs returns the Last-Event-ID header of every request so far ("" when absent).
func (r *Replay) LastEventIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// total is the number of events the server will ever serve (-1: unbounded).
func (r *Replay) total() int64 {
	n := int64(len(r.cfg.Events))
	switch {
	case r.cfg.Limit > 0 && (r.cfg.Loop || int64(r.cfg.Limit) < n):
		return int64(r.cfg.Limit)
	case r.cfg.Loop && n > 0:
		return -1
	}
	return n
}

// ID returns the id line of the event at global offset off.
func (r *Replay) ID(off int64) string {
	return `[{"topic":"` + r.cfg.Topic + `","partition":0,"offset":` + strconv.FormatInt(off, 10) + `}]`
}

// offsetOf parses a Last-Event-ID of ours and returns the offset to serve next.
func (r *Replay) offsetOf(lastID string) (int64, error) {
	return offsetInID(lastID, r.cfg.Topic, 0)
}

func (r *Replay) sinceOffset(s string) (int64, error) {
	t, err := parseSinceParam(s)
	if err != nil {
		return 0, err
	}
	for i, et := range r.times {
		if !et.Before(t) {
			return int64(i), nil
		}
	}
	return int64(len(r.times)), nil
}

// ServeHTTP implements http.Handler.
func (r *Replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	n := r.conns.Add(1)
	defer r.conns.Add(-1)
	lastID := req.Header.Get("Last-Event-ID")
	r.mu.Lock()
	r.seen = append(r.seen, lastID)
	r.mu.Unlock()
	if r.cfg.MaxConns > 0 && n > int64(r.cfg.MaxConns) {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusTooManyRequests, "too_many_requests", "Too Many Concurrent Connections From Your Client IP")
		return
	}
	var off int64
	var err error
	switch {
	case lastID != "":
		off, err = r.offsetOf(lastID)
	case req.URL.Query().Get("since") != "":
		off, err = r.sinceOffset(req.URL.Query().Get("since"))
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	bw, flush, ok := startSSE(w)
	if !ok {
		return
	}

	var pace *pacer
	if r.cfg.Rate > 0 {
		pace = newPacer(time.Now(), r.cfg.Rate)
		defer pace.stop()
	}
	var cut <-chan time.Time
	if r.cfg.CutAfter > 0 {
		t := time.NewTimer(r.cfg.CutAfter)
		defer t.Stop()
		cut = t.C
	}
	total := r.total()
	sent := 0
	var buf []byte
	for ; total < 0 || off < total; off++ {
		var due <-chan time.Time
		if pace != nil {
			if due = pace.wait(time.Now(), sent); due != nil && !flush() { // what is due goes out before the wait
				return
			}
		}
		if due != nil {
			select {
			case <-due:
			case <-cut:
				flush()
				return
			case <-req.Context().Done():
				return
			}
		} else {
			select {
			case <-cut:
				flush()
				return
			case <-req.Context().Done():
				return
			default:
			}
		}
		data, at, salt, rewrite := r.rewrite(off)
		if rewrite {
			buf = appendNewID(buf[:0], data, at, salt) // the frame is written before the next one reuses buf
			data = buf
		}
		writeFrame(bw, r.ID(off), data)
		r.served.Add(1)
		sent++
		if sent%64 == 0 {
			if !flush() {
				return
			}
		}
		if r.cfg.CutEvery > 0 && sent >= r.cfg.CutEvery {
			flush()
			return
		}
	}
	flush()
	if r.cfg.CloseAtEnd {
		return
	}
	select { // stay open and quiet, like a live stream with nothing new
	case <-req.Context().Done():
	case <-cut:
	}
}

// payload is the event at global offset off. In a loop with UniqueIDs,
// later passes get a meta.id derived from the pass, and an event repeating
// an earlier event's id one derived from its offset: every frame is a new
// event to JetStream.
func (r *Replay) payload(off int64) []byte {
	data, at, salt, ok := r.rewrite(off)
	if !ok {
		return data
	}
	out := make([]byte, 0, len(data))
	return appendNewID(out, data, at, salt)
}

// rewrite says whether the event at off is served with a new meta.id: the
// event, where its id lies (start, end) and the salt of the new one.
func (r *Replay) rewrite(off int64) (data []byte, at [2]int, salt int64, ok bool) {
	n := int64(len(r.cfg.Events))
	i := off % n
	data = r.cfg.Events[i]
	if !r.cfg.UniqueIDs || !r.cfg.Loop || r.idAt[i][1] == 0 {
		return data, at, 0, false
	}
	switch pass := off / n; {
	case r.dup[i]:
		return data, r.idAt[i], -(off + 1), true // negative: never a pass number
	case pass > 0:
		return data, r.idAt[i], pass, true
	}
	return data, at, 0, false
}

// metaIDAt finds the value of the first "id" after "meta": data[at[0]:at[1]].
func metaIDAt(data []byte) (at [2]int, ok bool) {
	mi := bytes.Index(data, []byte(`"meta"`))
	if mi < 0 {
		return at, false
	}
	rest := data[mi:]
	ki := bytes.Index(rest, []byte(`"id"`))
	if ki < 0 {
		return at, false
	}
	vs := bytes.IndexByte(rest[ki+4:], '"')
	if vs < 0 {
		return at, false
	}
	start := mi + ki + 4 + vs + 1
	ve := bytes.IndexByte(data[start:], '"')
	if ve < 0 {
		return at, false
	}
	return [2]int{start, start + ve}, true
}

// appendNewID appends data to dst with the id at data[at[0]:at[1]] replaced
// by a UUID-shaped id derived from it and salt (the same for the same pair).
func appendNewID(dst, data []byte, at [2]int, salt int64) []byte {
	var key [128]byte
	h := sha1.Sum(strconv.AppendInt(append(key[:0], data[at[0]:at[1]]...), salt, 10))
	var hx [32]byte
	hex.Encode(hx[:], h[:16])
	dst = append(dst, data[:at[0]]...)
	dst = append(dst, hx[0:8]...)
	dst = append(dst, '-')
	dst = append(dst, hx[8:12]...)
	dst = append(dst, '-')
	dst = append(dst, hx[12:16]...)
	dst = append(dst, '-')
	dst = append(dst, hx[16:20]...)
	dst = append(dst, '-')
	dst = append(dst, hx[20:32]...)
	return append(dst, data[at[1]:]...)
}

func writeFrame(w *bufio.Writer, id string, data []byte) {
	_, _ = w.WriteString("event: message\nid: ")
	_, _ = w.WriteString(id)
	_ = w.WriteByte('\n')
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 { // EventStreams JSON: one line
		_, _ = w.WriteString("data: ")
		_, _ = w.Write(data)
		_, _ = w.WriteString("\n\n")
		return
	}
	// One data: line per line of the payload; like KafkaSSE, a run of CR/LF
	// counts as one line break (EventStreams JSON has none).
	for {
		i := bytes.IndexAny(data, "\r\n")
		_, _ = w.WriteString("data: ")
		if i < 0 {
			_, _ = w.Write(data)
			_, _ = w.WriteString("\n\n")
			return
		}
		_, _ = w.Write(data[:i])
		_ = w.WriteByte('\n')
		for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
			i++
		}
		data = data[i:]
	}
}

func httpError(w http.ResponseWriter, code int, typ, title string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "title": title, "status": code})
}

// LoadEvents reads recorded events from files: .sse captures (the data of
// each frame), .jsonl (one event per line) and .json (concatenated JSON
// values). The bytes of each event are kept exactly.
func LoadEvents(paths ...string) ([][]byte, error) {
	var all [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading events: %w", err)
		}
		var evs [][]byte
		switch strings.ToLower(filepath.Ext(p)) {
		case ".sse":
			evs = ParseSSE(b)
		case ".jsonl", ".ndjson":
			for _, line := range bytes.Split(b, []byte("\n")) {
				if line = bytes.TrimRight(line, "\r"); len(bytes.TrimSpace(line)) > 0 {
					evs = append(evs, line)
				}
			}
		case ".json":
			dec := json.NewDecoder(bytes.NewReader(b))
			for {
				var raw json.RawMessage
				if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return nil, fmt.Errorf("reading %s: %w", p, err)
				}
				evs = append(evs, raw)
			}
		default:
			return nil, fmt.Errorf("reading %s: unknown extension (want .sse, .jsonl or .json)", p)
		}
		all = append(all, evs...)
	}
	return all, nil
}

// ParseSSE returns the data of each frame of an SSE capture (frames without
// data are skipped; multi-line data is joined with '\n'; a last frame with no
// terminating blank line is kept, as browsers would not).
func ParseSSE(b []byte) [][]byte {
	var out [][]byte
	var data []byte
	has := false
	for _, line := range bytes.Split(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n")) {
		switch {
		case len(line) == 0:
			if has {
				out = append(out, data)
			}
			data, has = nil, false
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(line[5:], []byte(" "))
			if has {
				data = append(data, '\n')
			}
			data = append(data, v...)
			has = true
		}
	}
	if has {
		out = append(out, data)
	}
	return out
}

// Payload is the data of the frame at global offset off, as served (load
// harnesses publish the same bytes for their baseline).
func (r *Replay) Payload(off int64) []byte { return r.payload(off) }

// pacer spaces frames at a rate from its start: frame k is due at
// start + k/rate. A frame whose time has passed (a late wake-up, a slow
// reader) goes out at once, so the average holds at the rate; a ticker
// would drop the missed ticks and serve less.
type pacer struct {
	start time.Time
	every float64 // nanoseconds between frames
	timer *time.Timer
}

func newPacer(start time.Time, rate float64) *pacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacer{start: start, every: float64(time.Second) / rate, timer: t}
}

// wait returns a channel that fires when frame k is due, or nil when it is
// already due.
func (p *pacer) wait(now time.Time, k int) <-chan time.Time {
	d := p.start.Add(time.Duration(float64(k) * p.every)).Sub(now)
	if d <= 0 {
		return nil
	}
	p.timer.Reset(d)
	return p.timer.C
}

func (p *pacer) stop() { p.timer.Stop() }
