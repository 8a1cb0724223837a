// Package ingest reads the Wikimedia EventStreams recentchange feed (or any
// compatible SSE endpoint, such as this package's replay server) into the
// JetStream stream RECENTCHANGE with no gaps and no duplicates across
// reconnects and restarts.
//
// Guarantees: each event is published with Nats-Msg-Id = meta.id (JetStream
// drops a second copy within the duplicate window, whether it comes from a
// reconnect, a restart or a second replica); the resume position (the SSE id
// line, verbatim) is stored in KV only after every event up to it was
// acknowledged; bad frames go to dlq.ingest with a reason.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Config tunes the ingester. Zero values take the defaults noted.
type Config struct {
	// PositionKey is the KV key (bucket "ingest") of the resume position
	// (default "position.recentchange"). Replicas reading the same source share it.
	PositionKey string
	// Since chooses where to start when no position is stored: an RFC 3339
	// time, or a duration meaning "that long ago". Empty: the live edge.
	Since string
	// MaxEventSize: larger events are dead-lettered (default 1 MiB, NATS's
	// default max_payload). Only the first 64 KiB are kept in the dead letter.
	MaxEventSize int
	// MaxInFlight bounds unacknowledged publishes (default 1024).
	MaxInFlight int
	// PositionInterval is how often the position is stored (default 1s).
	PositionInterval time.Duration
	// BackoffMin/BackoffMax bound the reconnect delay (default 500ms/60s),
	// with full jitter; a server's Retry-After is honoured.
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds the wait for outstanding acks on shutdown (default 20s).
	DrainTimeout time.Duration
	// AckTimeout: an unacknowledged publish is retried after this (default 5s).
	AckTimeout time.Duration
	// StallAfter: with publishes outstanding and the position unchanged for
	// this long, ingest is stalled (JetStream not storing) and not ready
	// (default 3 × AckTimeout).
	StallAfter time.Duration
	// TruncationRetries: a frame that is invalid JSON and ends its connection
	// is assumed truncated and read again this many times before being
	// dead-lettered (default 3).
	TruncationRetries int
}

func (c *Config) defaults() {
	if c.PositionKey == "" {
		c.PositionKey = "position.recentchange"
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = 1 << 20
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.PositionInterval <= 0 {
		c.PositionInterval = time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Minute
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 3 * c.AckTimeout
	}
	if c.TruncationRetries <= 0 {
		c.TruncationRetries = 3
	}
}

// Ingester is the ingest stage.
type Ingester struct {
	cfg Config
	src Source
	nc  *nats.Conn
	js  jetstream.JetStream
	m   *metrics
	log zerolog.Logger
	now func() time.Time

	// set while running
	maxData   int // the largest event published: MaxEventSize, or less to fit the server's max_payload
	pub       *publisher
	lastID    string             // id of the newest frame handed to the publisher
	ev        event.RecentChange // the frame being handled, reused (handle runs on one goroutine)
	held      *heldFrame
	truncated map[string]int
	started   atomic.Bool
	// readiness (see Ready)
	frames     uint64                 // frames with content on the current connection
	srcErr     atomic.Pointer[string] // why the source delivers nothing (nil: it does)
	progressAt atomic.Int64           // unix ns: the position last moved or nothing was outstanding
	stalled    atomic.Bool
}

// heldFrame is an undecodable frame kept until we know whether the
// connection was cut inside it (truncated: read it again) or not (bad: dead-letter).
type heldFrame struct {
	f   Frame
	err error
}

// New builds an ingester that reads src and publishes through d.NC (with a
// JetStream context of its own, sized for its async publish window).
func New(d pipeline.Deps, cfg Config, src Source) (*Ingester, error) {
	cfg.defaults()
	now := d.Clock()
	m, err := newMetrics(d.Reg)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(d.NC,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxInFlight+16),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context for ingest: %w", err)
	}
	if _, err := parseSince(cfg.Since, now()); err != nil {
		return nil, err
	}
	return &Ingester{cfg: cfg, src: src, nc: d.NC, js: js, m: m, log: d.Logger("ingest"), now: now,
		truncated: map[string]int{}}, nil
}

// Ready reports whether the ingester is doing its job: it has loaded its
// position, its source delivers (the last connection did not fail before
// its first frame), and JetStream stores what it publishes (the position
// moves while publishes are outstanding).
func (in *Ingester) Ready() error {
	if !in.started.Load() {
		return errors.New("ingest not started")
	}
	if e := in.srcErr.Load(); e != nil {
		return fmt.Errorf("source unreachable: %s", *e)
	}
	if in.stalled.Load() {
		return fmt.Errorf("ingest stalled: publishes unacknowledged and the position unchanged for over %v (JetStream not storing?)",
			in.cfg.StallAfter)
	}
	return nil
}

// Run reads until ctx is cancelled, then stops reading, waits for the
// outstanding acks (up to DrainTimeout), stores the position and returns nil.
func (in *Ingester) Run(ctx context.Context) error {
	kv, err := pipeline.OpenKV(ctx, in.js, pipeline.BucketIngest, in.log)
	if err != nil {
		return fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketIngest, err)
	}
	start, err := loadPosition(ctx, kv, in.cfg.PositionKey)
	if err != nil {
		return err
	}
	since := ""
	if start == "" {
		t, _ := parseSince(in.cfg.Since, in.now())
		if !t.IsZero() {
			since = t.UTC().Format(time.RFC3339)
		}
	}
	in.maxData = in.cfg.MaxEventSize
	if mp := int(in.nc.MaxPayload()); mp > 0 && mp-headerRoom(mp) < in.maxData {
		// A publish over the server's max_payload is refused by the client
		// and would be retried forever: such events are dead-lettered.
		in.maxData = mp - headerRoom(mp)
		in.log.Warn().Int("server_max_payload", mp).Int("max_event_size", in.maxData).
			Msg("NATS server's max_payload is below the event size limit; larger events go to the dead letter stream")
	}
	in.log.Info().Str("position", start).Str("since", since).Int("max_event_size", in.maxData).Msg("ingest starting")
	in.lastID = start
	in.pub = newPublisher(in.js, in.cfg.MaxInFlight, start, in.m, in.log, in.now)
	in.started.Store(true)

	saverDone := make(chan struct{})
	saverCtx, stopSaver := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(saverDone)
		in.savePositions(saverCtx, kv, start)
	}()

	in.readLoop(ctx, since)

	// Drain: reading has stopped; wait for the acks, then store the position.
	in.log.Info().Msg("ingest draining: waiting for outstanding publish acks")
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.DrainTimeout)
	defer cancel()
	final, perr := in.pub.close(dctx)
	stopSaver()
	<-saverDone
	if err := storePosition(dctx, kv, in.cfg.PositionKey, final); err != nil {
		return fmt.Errorf("storing final position: %w", err)
	}
	in.m.positionStores.Inc()
	in.log.Info().Str("position", final).Msg("ingest stopped; position stored")
	if perr != nil {
		return fmt.Errorf("draining publishes: %w", perr)
	}
	return nil
}

// readLoop connects, reads and reconnects forever (capped exponential
// backoff with full jitter, Retry-After honoured) until ctx ends.
func (in *Ingester) readLoop(ctx context.Context, since string) {
	failures, quiet := 0, 0
	var lastWarn time.Time
	for ctx.Err() == nil {
		got := uint64(0)
		in.frames = 0
		in.m.connected.Set(1)
		err := in.src.Stream(ctx, in.lastID, since, func(f Frame) error {
			got++
			return in.handle(ctx, f)
		})
		in.m.connected.Set(0)
		in.connectionEnded(ctx)
		if ctx.Err() != nil {
			return
		}
		reason := "eof"
		var se *StatusError
		switch {
		case errors.As(err, &se):
			reason = fmt.Sprintf("http_%d", se.Code)
		case errors.Is(err, ErrIdle):
			reason = "idle"
		case err != nil:
			reason = "error"
		}
		in.m.reconnects.WithLabelValues(reason).Inc()
		if in.frames == 0 && err != nil {
			msg := reason + ": " + err.Error()
			in.srcErr.Store(&msg)
		}
		// Only frames with content are progress: a source that answers
		// ":ok" and closes (got 1, frames 0) must back off, not be hammered.
		if in.frames > 0 && err == nil || in.frames > 0 && errors.Is(err, ErrIdle) {
			failures = 0 // a clean cut after progress (EventStreams does it every ~15 min)
		} else {
			failures++
		}
		wait := in.backoff(failures)
		if se != nil && se.RetryAfter > wait {
			wait = se.RetryAfter
		}
		if now := in.now(); failures <= 1 || now.Sub(lastWarn) >= reconnectLogEvery {
			in.log.Warn().Err(err).Str("reason", reason).Uint64("frames", got).Dur("reconnect_in", wait).
				Int("failures_in_a_row", failures).Int("reconnects_not_logged", quiet).
				Str("last_event_id", in.lastID).Msg("SSE connection ended; reconnecting (logged at most once a minute while failing)")
			lastWarn, quiet = now, 0
		} else {
			quiet++
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if in.lastID != "" {
			since = ""
		}
	}
}

// reconnectLogEvery rate-limits the reconnect warning while a source keeps
// failing (rcwatch_ingest_reconnects_total counts every one).
const reconnectLogEvery = time.Minute

func (in *Ingester) backoff(failures int) time.Duration {
	if failures == 0 {
		return 0
	}
	d := in.cfg.BackoffMin << min(failures-1, 16)
	if d <= 0 || d > in.cfg.BackoffMax {
		d = in.cfg.BackoffMax
	}
	return pipeline.Jitter(d)
}

// handle processes one frame. It returns an error only when ctx ended.
func (in *Ingester) handle(ctx context.Context, f Frame) error {
	id := string(f.ID)
	if len(f.Data) == 0 && len(f.Event) == 0 && id == in.lastID {
		// r3labs/sse dispatches comment lines (":ok") with the previous id
		// filled in; it is not a frame.
		return nil
	}
	in.m.received.Inc()
	if in.frames++; in.frames == 1 && in.srcErr.Load() != nil {
		in.srcErr.Store(nil)
	}
	if in.held != nil {
		// The connection went on after the undecodable frame: it was bad, not cut.
		h := in.held
		in.held = nil
		if err := in.deadLetter(ctx, h.f, reasonOf(h.err), h.err); err != nil {
			return err
		}
	}
	if string(f.Event) == EventTooLarge {
		// The source dropped a frame over its size limit (it stands for it).
		return in.deadLetter(ctx, Frame{ID: f.ID}, "too_large", fmt.Errorf("%w: SSE frame of %s bytes dropped by the source (over SSEConfig.MaxEventSize)",
			event.ErrTooLarge, f.Data))
	}
	if ev := string(f.Event); ev != "" && ev != "message" {
		return in.deadLetter(ctx, f, "event_"+pipeline.SubjectToken(ev), fmt.Errorf("SSE event %q: %.200s", ev, f.Data))
	}
	if len(f.Data) == 0 {
		return in.deadLetter(ctx, f, "empty", errors.New("frame without data"))
	}
	if len(f.Data) > in.maxData {
		return in.deadLetter(ctx, f, "too_large", fmt.Errorf("%w: %d bytes > %d (MaxEventSize %d, NATS server max_payload %d)",
			event.ErrTooLarge, len(f.Data), in.maxData, in.cfg.MaxEventSize, in.nc.MaxPayload()))
	}
	ev := &in.ev // its strings are fresh per frame; only the struct is reused
	if err := event.DecodeInto(f.Data, ev); err != nil {
		// A cut connection leaves invalid JSON, or invalid UTF-8 when it
		// falls inside a character: hold the frame until we know which.
		cut := errors.Is(err, event.ErrInvalidJSON) || errors.Is(err, event.ErrInvalidUTF8)
		if cut && in.truncated[id] < in.cfg.TruncationRetries {
			in.held = &heldFrame{f: f, err: err}
			return nil
		}
		return in.deadLetter(ctx, f, reasonOf(err), err)
	}
	if ev.IsCanary() {
		in.m.canaries.Inc()
		return in.advance(ctx, in.pub.mark(ctx, id), id)
	}
	msg := &nats.Msg{
		Subject: pipeline.RecentChangeSubject(ev.Wiki, ev.Type),
		Data:    f.Data,
		Header:  nats.Header{jetstream.MsgIDHeader: {ev.Meta.ID}, pipeline.HeaderEventTime: {ev.Meta.DT}},
	}
	return in.advance(ctx, in.pub.publish(ctx, msg, id, ev.Time(), false), id)
}

func (in *Ingester) advance(ctx context.Context, err error, id string) error {
	if err != nil {
		return err
	}
	if id != "" {
		in.lastID = id
	}
	delete(in.truncated, id)
	return nil
}

// connectionEnded decides about a held frame when its connection is gone:
// the frame was probably cut by the disconnect, so it is read again.
func (in *Ingester) connectionEnded(ctx context.Context) {
	h := in.held
	if h == nil {
		return
	}
	in.held = nil
	id := string(h.f.ID)
	in.truncated[id]++
	in.m.malformed.WithLabelValues("truncated").Inc()
	if in.truncated[id] >= in.cfg.TruncationRetries {
		// It keeps arriving broken: it is not a cut, it is bad data.
		if err := in.deadLetter(context.WithoutCancel(ctx), h.f, reasonOf(h.err), h.err); err != nil {
			in.log.Error().Err(err).Msg("dead-lettering a repeatedly truncated frame failed")
		}
		return
	}
	in.log.Warn().Str("frame_id", id).Err(h.err).Int("times", in.truncated[id]).
		Msg("frame cut by the end of its connection; reading it again")
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, event.ErrInvalidUTF8):
		return "invalid_utf8"
	case errors.Is(err, event.ErrMissingID):
		return "missing_meta_id"
	case errors.Is(err, event.ErrTooLarge):
		return "too_large"
	}
	return "invalid_json"
}

const deadLetterKeep = 64 << 10

// headerRoom is what a message's headers may take of the server's
// max_payload (a dead letter's are under 3 KiB).
func headerRoom(maxPayload int) int { return min(4<<10, maxPayload/4) }

// deadLetter stores a bad frame on dlq.ingest (at most 64 KiB of it), logs
// it once with its position, counts it, and advances past it.
func (in *Ingester) deadLetter(ctx context.Context, f Frame, reason string, cause error) error {
	in.m.malformed.WithLabelValues(reason).Inc()
	id := string(f.ID)
	in.log.Error().Err(cause).Str("reason", reason).Str("frame_id", id).Int("bytes", len(f.Data)).
		Msg("frame dead-lettered")
	data := f.Data
	if keep := min(deadLetterKeep, in.maxData); len(data) > keep {
		data = data[:keep]
	}
	msg := &nats.Msg{Subject: pipeline.DeadLetterSubject("ingest"), Data: data, Header: nats.Header{}}
	msg.Header.Set(pipeline.HeaderReason, reason+": "+truncate(cause.Error(), 500))
	msg.Header.Set(pipeline.HeaderSource, "ingest id="+truncate(id, 1000))
	msg.Header.Set("Rc-Original-Size", fmt.Sprint(len(f.Data)))
	msg.Header.Set(jetstream.MsgIDHeader, "ingest:"+reason+":"+truncate(id, 1000))
	pos := id
	if pos == "" {
		pos = in.lastID
	}
	return in.advance(ctx, in.pub.publish(ctx, msg, pos, time.Time{}, true), id)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func (in *Ingester) savePositions(ctx context.Context, kv jetstream.KeyValue, stored string) {
	t := time.NewTicker(in.cfg.PositionInterval)
	defer t.Stop()
	seen := stored
	in.progressAt.Store(in.now().UnixNano())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pos := in.pub.safePosition()
		in.checkStall(pos != seen)
		seen = pos
		if pos == stored || pos == "" {
			continue
		}
		if err := storePosition(ctx, kv, in.cfg.PositionKey, pos); err != nil {
			in.log.Warn().Err(err).Msg("storing resume position failed; will retry")
			continue
		}
		in.m.positionStores.Inc()
		stored = pos
	}
}

// checkStall notes progress (the safe position moved, or nothing is
// outstanding) and flags a stall when publishes stay unacknowledged for
// StallAfter: JetStream is not storing what ingest publishes.
func (in *Ingester) checkStall(moved bool) {
	now := in.now()
	if moved || in.pub.outstanding() == 0 {
		in.progressAt.Store(now.UnixNano())
		if in.stalled.Swap(false) {
			in.log.Info().Msg("ingest publishes are acknowledged again")
		}
		return
	}
	if now.Sub(time.Unix(0, in.progressAt.Load())) >= in.cfg.StallAfter && !in.stalled.Swap(true) {
		in.log.Error().Int("outstanding", in.pub.outstanding()).Dur("for", in.cfg.StallAfter).
			Msg("ingest stalled: publishes unacknowledged and the position unchanged; reading waits")
	}
}

func loadPosition(ctx context.Context, kv jetstream.KeyValue, key string) (string, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("loading resume position %s: %w", key, err)
	}
	return string(e.Value()), nil
}

func storePosition(ctx context.Context, kv jetstream.KeyValue, key, pos string) error {
	if pos == "" {
		return nil
	}
	if _, err := kv.PutString(ctx, key, pos); err != nil {
		return fmt.Errorf("storing resume position %s: %w", key, err)
	}
	return nil
}

// parseSince accepts "", an RFC 3339 time, or a Go duration meaning "ago".
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-11-25T00:00:00Z) or a duration (2h)", s)
}
