// Package feed is the patroller feed: a web page and an HTTP API (JSON and
// Server-Sent Events) over the ALERTS stream, with server-side filters,
// backfill on opening, gap-free resume by stream sequence, claims kept in
// NATS KV, and retirement of alerts whose page was edited again. The page's
// static files are embedded; see docs/FEED.md.
package feed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Item is one alert as the API and the SSE stream send it.
type Item struct {
	Seq       uint64       `json:"seq"`
	Time      time.Time    `json:"time"`
	UserClass string       `json:"user_class"`
	Alert     *event.Alert `json:"alert"`
	Retired   *Retirement  `json:"retired,omitempty"`
	Claim     *Claim       `json:"claim,omitempty"`
}

// Retirement says why an alert no longer needs a patroller: its page was
// edited again (a revert or a later edit) by User in revision Rev.
type Retirement struct {
	Seq  uint64    `json:"seq"`
	ID   string    `json:"id"`
	User string    `json:"user,omitempty"`
	Rev  int64     `json:"rev,omitempty"`
	Type string    `json:"type"`
	At   time.Time `json:"at"`
	// Reverted is true when the later edit restored the page's size from
	// before the alert's edit: most likely a revert.
	Reverted bool `json:"reverted,omitempty"`
}

// retirement is the retirement of alert a (stream sequence seq) by the later edit pe.
func retirement(seq uint64, a *event.Alert, pe pageEdit) *Retirement {
	return &Retirement{Seq: seq, ID: a.ID, User: pe.user, Rev: pe.rev, Type: pe.typ, At: pe.at,
		Reverted: pe.size >= 0 && a.Event.OldSize != a.Event.NewSize && pe.size == a.Event.OldSize}
}

// pageKey is a page of a wiki.
type pageKey struct{ wiki, title string }

// openAlert is an alert that a later edit of its page will retire.
type openAlert struct {
	seq   uint64
	rev   int64
	ts    int64
	meta  string
	alert *event.Alert
}

// pageEdit is the newest edit seen of a page.
type pageEdit struct {
	size int64 // the page's length after the edit; -1 when unknown
	rev  int64
	ts   int64
	meta string
	user string
	typ  string
	at   time.Time
}

// Feed is the feed stage: Run reads ALERTS, RECENTCHANGE and the claims
// bucket and, when Config.Addr is set, serves HTTP; the Feed itself is the
// http.Handler.
type Feed struct {
	d   pipeline.Deps
	cfg Config
	log zerolog.Logger
	now func() time.Time
	m   *metrics
	mux *http.ServeMux

	mu        sync.Mutex
	seq       uint64 // the last alert sequence dispatched to the clients
	ring      *ring
	ringFrom  uint64    // the ring holds every alert from this sequence on
	ringSince time.Time // and every alert from this time on
	clients   map[*client]struct{}
	open      *bounded[pageKey, []openAlert]
	openN     int
	pages     *bounded[pageKey, pageEdit]
	retired   *bounded[uint64, *Retirement]
	claims    *bounded[uint64, *Claim]
	limiters  *limiters
	slots     chan struct{} // one per backfill reading the stream

	kv         atomic.Pointer[jetstream.KeyValue]
	caughtUpAt atomic.Uint64 // ready once seq reaches it
	alertsOK   atomic.Bool   // the alerts reader has caught up
	claimsOK   atomic.Bool   // the claims watch has its initial values
	rcOK       atomic.Bool   // the recentchange reader has started
	started    atomic.Bool   // the alerts reader has its position
	ln         atomic.Pointer[net.Listener]
	runErr     atomic.Pointer[error]
}

// New builds the feed; nothing is opened until Run.
func New(d pipeline.Deps, cfg Config) (*Feed, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if d.JS == nil {
		return nil, fmt.Errorf("%w: no JetStream context", ErrInvalidConfig)
	}
	m, err := newMetrics(d.Reg)
	if err != nil {
		return nil, err
	}
	f := &Feed{
		d: d, cfg: cfg, log: d.Logger("feed"), now: d.Clock(), m: m,
		ring: newRing(cfg.Ring), clients: map[*client]struct{}{},
		open: newBounded[pageKey, []openAlert](cfg.MaxOpen), pages: newBounded[pageKey, pageEdit](cfg.MaxOpen),
		retired: newBounded[uint64, *Retirement](cfg.MaxOpen), claims: newBounded[uint64, *Claim](cfg.MaxClaims),
		limiters: newLimiters(cfg.ClaimRate, cfg.ClaimBurst, cfg.MaxRateClients),
		slots:    make(chan struct{}, cfg.StreamBackfills),
	}
	f.routes()
	return f, nil
}

// Ready is nil once the feed reads the alerts and the edits, has read the
// claims, and (with Config.Addr) is listening.
func (f *Feed) Ready() error {
	switch {
	case f.runErr.Load() != nil:
		return *f.runErr.Load()
	case !f.caughtUp():
		return errors.New("feed: reading the recent alerts")
	case !f.claimsOK.Load():
		return errors.New("feed: reading claims")
	case !f.rcOK.Load():
		return errors.New("feed: edits reader not started")
	case f.cfg.Addr != "" && f.ln.Load() == nil:
		return errors.New("feed: not listening yet")
	}
	return nil
}

// Addr is the address the feed listens on once Run has started serving ("" before).
func (f *Feed) Addr() string {
	if ln := f.ln.Load(); ln != nil {
		return (*ln).Addr().String()
	}
	return ""
}

// URL is the page's address for a person to open, once listening.
func (f *Feed) URL() string {
	a := f.Addr()
	if a == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "http://" + a + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Run reads the streams and the claims and serves HTTP (with Config.Addr)
// until ctx is cancelled; open SSE connections are closed then.
func (f *Feed) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.readAlerts(gctx) })
	g.Go(func() error { return f.readEdits(gctx) })
	g.Go(func() error { return f.watchClaims(gctx) })
	if f.cfg.Addr != "" {
		g.Go(func() error { return f.serve(gctx) })
	}
	err := g.Wait()
	f.closeClients()
	if err != nil && ctx.Err() == nil {
		f.runErr.Store(&err)
		return err
	}
	return nil
}

func (f *Feed) serve(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", f.cfg.Addr)
	if err != nil && f.cfg.AnyPortIfBusy && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(f.cfg.Addr)
		f.log.Warn().Str("addr", f.cfg.Addr).Msg("feed: address in use, listening on a free port instead")
		ln, err = lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return fmt.Errorf("feed: listening on %s: %w", f.cfg.Addr, err)
	}
	f.ln.Store(&ln)
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	f.log.Info().Str("url", f.URL()).Msgf("patroller feed: open %s in a browser", f.URL())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("feed: serving HTTP: %w", err)
	case <-ctx.Done():
	}
	f.closeClients()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return nil
}

func (f *Feed) caughtUp() bool {
	if f.alertsOK.Load() {
		return true
	}
	f.mu.Lock()
	ok := f.caughtUpAt.Load() > 0 && f.seq >= f.caughtUpAt.Load() || f.caughtUpAt.Load() == 0 && f.started.Load()
	f.mu.Unlock()
	if ok {
		f.alertsOK.Store(true)
	}
	return ok
}

// pendingSince counts the messages of s from since on, with a short-lived
// consumer (the ordered consumer is created lazily and cannot say).
func pendingSince(ctx context.Context, s jetstream.Stream, since time.Time) (uint64, error) {
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: 10 * time.Second, MemoryStorage: true})
	if err != nil {
		return 0, fmt.Errorf("creating a probe consumer: %w", err)
	}
	info := c.CachedInfo()
	_ = s.DeleteConsumer(ctx, info.Name)
	return info.NumPending, nil
}

// decodeRaw decodes an alert read by sequence (a raw stream message, which
// actions.DecodeAlert, made for consumed messages, does not take).
func decodeRaw(data []byte) (*event.Alert, error) {
	if !utf8.Valid(data) {
		return nil, event.ErrInvalidUTF8
	}
	var a event.Alert
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", event.ErrInvalidJSON, err)
	}
	if a.ID == "" {
		return nil, fmt.Errorf("%w: alert without id", event.ErrInvalidJSON)
	}
	return &a, nil
}

// readAlerts follows ALERTS from Backfill ago with an ordered consumer: it
// fills the ring, tracks open alerts and dispatches each alert to the clients.
func (f *Feed) readAlerts(ctx context.Context) error {
	s, err := f.d.JS.Stream(ctx, pipeline.StreamAlerts)
	if err != nil {
		return fmt.Errorf("feed: looking up stream %s: %w", pipeline.StreamAlerts, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("feed: reading stream %s info: %w", pipeline.StreamAlerts, err)
	}
	since := f.now().Add(-f.cfg.Backfill)
	// The feed is ready once it holds every alert up to the stream's last
	// at start. When none of them is in the window, there is nothing to
	// read: a probe consumer tells.
	upto := info.State.LastSeq
	pending := uint64(1)
	if info.State.Msgs == 0 {
		pending = 0
	} else if n, err := pendingSince(ctx, s, since); err == nil {
		pending = n
	} else {
		f.log.Warn().Err(err).Msg("feed: probing the alerts window")
	}
	f.mu.Lock()
	f.ringFrom, f.ringSince = upto+1, since
	if pending == 0 {
		f.seq = max(f.seq, upto)
	}
	f.mu.Unlock()
	f.caughtUpAt.Store(upto)
	f.started.Store(true)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return fmt.Errorf("feed: creating the alerts consumer: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("feed: consuming alerts: %w", err)
	}
	// Next waits on ctx itself: an iterator stopped while the ordered
	// consumer is being recreated (a NATS restart) would not wake Next.
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("feed: reading alerts: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			f.m.decodeErrors.WithLabelValues(pipeline.StreamAlerts).Inc()
			continue
		}
		a, err := actions.DecodeAlert(msg)
		f.addAlert(md.Sequence.Stream, md.Timestamp, a, err)
	}
}

// addAlert takes alert seq into the ring and the open map, and dispatches it.
func (f *Feed) addAlert(seq uint64, at time.Time, a *event.Alert, err error) {
	f.m.alerts.Inc()
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq <= f.seq {
		return // an ordered consumer reset can repeat
	}
	f.seq = seq
	if err != nil {
		f.m.decodeErrors.WithLabelValues(pipeline.StreamAlerts).Inc()
		f.log.Warn().Err(err).Uint64("seq", seq).Msg("feed: skipping an undecodable alert")
		return
	}
	e := &entry{seq: seq, at: at, alert: a, class: ClassOf(a)}
	if seq < f.ringFrom {
		f.ringFrom = seq
	}
	if old := f.ring.push(e); old != nil {
		f.ringFrom, f.ringSince = old.seq+1, old.at.Add(time.Nanosecond)
	}
	// The ring keeps the backfill window; with a clock ahead of the
	// server's, even e may fall out of it.
	if cut := f.now().Add(-f.cfg.Backfill); f.ring.dropBefore(cut) > 0 {
		f.ringSince = cut
		if f.ring.n == 0 {
			f.ringFrom = seq + 1
		} else {
			f.ringFrom = f.ring.at(0).seq
		}
	}
	f.m.ring.Set(float64(f.ring.n))
	ret := f.track(e)
	item := Item{Seq: seq, Time: at, UserClass: e.class, Alert: a, Retired: ret}
	payload, err := json.Marshal(item)
	if err != nil {
		f.log.Error().Err(err).Uint64("seq", seq).Msg("feed: encoding an alert")
		return
	}
	f.m.latency.Observe(f.now().Sub(at).Seconds())
	f.dispatch(outMsg{event: evAlert, seq: seq, data: payload}, a)
}

// track adds e to the open alerts, or retires it at once when its page was
// already edited after it. Called with f.mu held.
func (f *Feed) track(e *entry) *Retirement {
	k := pageKey{e.alert.Event.Wiki, e.alert.Event.Title}
	if r, ok := f.retired.get(e.seq); ok {
		return r
	}
	if pe, ok := f.pages.get(k); ok && later(pe, e.alert) {
		r := retirement(e.seq, e.alert, pe)
		f.retire(r)
		return r
	}
	list, _ := f.open.get(k)
	if len(list) >= maxOpenPerPage {
		list = list[1:]
		f.openN--
		f.m.evicted.WithLabelValues("open").Inc()
	}
	list = append(list, openAlert{seq: e.seq, rev: e.alert.Event.NewRev, ts: e.alert.Event.Timestamp,
		meta: e.alert.Event.MetaID, alert: e.alert})
	f.openN++
	if len(list) > 1 {
		f.open.update(k, list)
	} else if old, ok := f.open.put(k, list); ok {
		f.openN -= len(old)
		f.m.evicted.WithLabelValues("open").Add(float64(len(old)))
	}
	f.m.open.Set(float64(f.openN))
	return nil
}

// maxOpenPerPage caps the open alerts of one page (several rules may fire
// on one edit; a later edit retires them all).
const maxOpenPerPage = 32

// later reports whether edit pe of a page came after the alert's event.
func later(pe pageEdit, a *event.Alert) bool {
	if pe.meta == a.Event.MetaID {
		return false
	}
	if pe.rev > 0 && a.Event.NewRev > 0 {
		return pe.rev > a.Event.NewRev
	}
	return pe.ts > a.Event.Timestamp
}

func (f *Feed) retire(r *Retirement) {
	if _, ok := f.retired.put(r.Seq, r); ok {
		f.m.evicted.WithLabelValues("retired").Inc()
	}
	f.m.retired.Inc()
}

// rcEdit is the part of a recentchange event that retirement reads.
type rcEdit struct {
	Meta struct {
		ID string `json:"id"`
	} `json:"meta"`
	Type      string `json:"type"`
	Title     string `json:"title"`
	Wiki      string `json:"wiki"`
	User      string `json:"user"`
	Timestamp int64  `json:"timestamp"`
	Revision  struct {
		New *int64 `json:"new"`
	} `json:"revision"`
	Length struct {
		New *int64 `json:"new"`
	} `json:"length"`
}

// readEdits follows RECENTCHANGE (edits and creations only, of Config.Wikis
// when set: categorize and log events, a third of the stream, are not sent)
// from Backfill ago, and retires the open alerts of each edited page.
func (f *Feed) readEdits(ctx context.Context) error {
	s, err := f.d.JS.Stream(ctx, pipeline.StreamRecentChange)
	if err != nil {
		return fmt.Errorf("feed: looking up stream %s: %w", pipeline.StreamRecentChange, err)
	}
	since := f.now().Add(-f.cfg.Backfill)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: pipeline.RecentChangeFilterSubjects(f.cfg.Wikis, f.cfg.RetireTypes),
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return fmt.Errorf("feed: creating the recentchange consumer: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("feed: consuming recentchange: %w", err)
	}
	f.rcOK.Store(true)
	// Next waits on ctx itself: an iterator stopped while the ordered
	// consumer is being recreated (a NATS restart) would not wake Next.
	defer it.Stop()
	var ev rcEdit
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("feed: reading recentchange: %w", err)
		}
		md, _ := msg.Metadata()
		ev = rcEdit{}
		if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.Title == "" {
			f.m.decodeErrors.WithLabelValues(pipeline.StreamRecentChange).Inc()
			continue
		}
		var at time.Time
		if md != nil {
			at = md.Timestamp
		}
		f.edited(ev, at)
	}
}

// edited records an edit of a page and retires the page's earlier alerts.
func (f *Feed) edited(ev rcEdit, at time.Time) {
	pe := pageEdit{ts: ev.Timestamp, meta: ev.Meta.ID, user: ev.User, typ: ev.Type, at: at, size: -1}
	if ev.Revision.New != nil {
		pe.rev = *ev.Revision.New
	}
	if ev.Length.New != nil {
		pe.size = *ev.Length.New
	}
	k := pageKey{ev.Wiki, ev.Title}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.pages.get(k); !ok || old.rev < pe.rev || old.rev == 0 && old.ts <= pe.ts {
		if _, ok := f.pages.put(k, pe); ok {
			f.m.evicted.WithLabelValues("pages").Inc()
		}
		f.m.pages.Set(float64(f.pages.len()))
	}
	list, ok := f.open.get(k)
	if !ok {
		return
	}
	keep := list[:0]
	for _, o := range list {
		if !later(pe, o.alert) {
			keep = append(keep, o)
			continue
		}
		f.openN--
		r := retirement(o.seq, o.alert, pe)
		f.retire(r)
		if data, err := json.Marshal(r); err == nil {
			f.dispatch(outMsg{event: evRetire, data: data}, o.alert)
		}
	}
	if len(keep) == 0 {
		f.open.del(k)
	} else {
		f.open.update(k, keep)
	}
	f.m.open.Set(float64(f.openN))
}
