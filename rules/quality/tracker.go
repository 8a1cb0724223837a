package quality

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// OtherLabel is the wiki or rule label that the series beyond the caps
// (Config.MaxWikis, Config.MaxRules) are folded into.
const OtherLabel = "other"

// Config declares the live self-measurement.
type Config struct {
	// Window: an alerted edit counts as reverted when the revert comes
	// within it (by event time). It is also the per-key TTL of the page
	// state in the bucket. Zero disables the tracker (rules.StageConfig).
	Window time.Duration
	// PendingTTL is the TTL of a page key that holds only reverts (no
	// alerted edit): long enough for an alert evaluated after its revert
	// (another worker or replica still enriching the edit) to find it
	// (default 10m).
	PendingTTL time.Duration
	// Wikis always get their own label; beyond them the first MaxWikis
	// (default 30) wikis seen do, and later ones are counted as "other".
	Wikis    []string
	MaxWikis int
	// MaxRules distinct rule labels (default 200); later ones are "other".
	MaxRules int
	// MaxEntries per page: alerted edits and reverts each (default 64); the
	// oldest go first, counted by rcwatch_quality_dropped_total.
	MaxEntries int
	// Timeout bounds the KV work of one event (default 2s); on timeout the
	// event's figures are lost, logged and counted, and the event goes on.
	Timeout time.Duration
	// Attempts at a conflicting concurrent write (default 10), each after
	// a short jittered pause. Within one process the workers take turns on
	// a page (striped locks), so conflicts come only from other replicas.
	Attempts int
}

func (c *Config) defaults() {
	if c.PendingTTL <= 0 {
		c.PendingTTL = 10 * time.Minute
	}
	if c.Window > 0 && c.PendingTTL > c.Window {
		c.PendingTTL = c.Window
	}
	if c.MaxWikis <= 0 {
		c.MaxWikis = 30
	}
	if c.MaxRules <= 0 {
		c.MaxRules = 200
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 64
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 10
	}
}

type metrics struct {
	alerted, alertedReverted  *prometheus.CounterVec // rule, wiki
	reverted, revertedAlerted *prometheus.CounterVec // wiki
	reverts                   *prometheus.CounterVec // kind
	errors                    *prometheus.CounterVec // op
	dropped, conflicts        prometheus.Counter
	window                    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		alerted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_alerted_total",
			Help: "Edits (and page creations) a rule alerted on, counted once per edit and rule."}, []string{"rule", "wiki"}),
		alertedReverted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_alerted_reverted_total",
			Help: "Edits a rule alerted on that were reverted within the window (precision: this / rcwatch_quality_alerted_total; recall: this / rcwatch_quality_reverted_total)."}, []string{"rule", "wiki"}),
		reverted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_reverted_total",
			Help: "Edits recognised as reverted (undo, rollback, tool or other revert summary)."}, []string{"wiki"}),
		revertedAlerted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_reverted_alerted_total",
			Help: "Reverted edits that some rule had alerted on within the window (overall recall: this / rcwatch_quality_reverted_total)."}, []string{"wiki"}),
		reverts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_reverts_total",
			Help: "Revert edits recognised, by kind (undo, rollback, revert)."}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_quality_errors_total",
			Help: "Self-measurement updates lost, by operation (get, put, decode); the event itself is unaffected."}, []string{"op"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_quality_dropped_total",
			Help: "Alerted edits or reverts dropped from a page's state by the per-page cap."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_quality_conflicts_total",
			Help: "Page state writes retried because another worker or replica wrote it first."}),
		window: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_quality_window_seconds",
			Help: "The revert window: an alerted edit counts as reverted when the revert comes within it."}),
	}
	for _, c := range []prometheus.Collector{m.alerted, m.alertedReverted, m.reverted, m.revertedAlerted, m.reverts, m.errors, m.dropped, m.conflicts, m.window} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering quality metrics: %w", err)
		}
	}
	return m, nil
}

// Tracker keeps, in the KV bucket pipeline.BucketQuality, each page's
// alerted edits and recent reverts, and counts the figures as events come.
// It is shared state: several rules replicas on one durable consumer see
// each other's alerts and reverts.
type Tracker struct {
	cfg Config
	js  jetstream.JetStream
	log zerolog.Logger
	m   *metrics

	// pages serialises this process's workers on a page: a page key
	// hashes to one of these locks (bounded, whatever the page count).
	// Without it, consecutive edits of one page (a QuickStatements batch
	// on one item) handled by parallel workers kept overwriting each
	// other's state until the attempts ran out.
	pages [64]sync.Mutex
	seed  maphash.Seed

	mu     sync.Mutex
	kv     jetstream.KeyValue
	pinned map[string]bool
	wikis  map[string]bool
	rules  map[string]bool
}

// New builds a tracker and registers its metrics on d.Reg; Open opens its
// bucket.
func New(d pipeline.Deps, cfg Config) (*Tracker, error) {
	cfg.defaults()
	if cfg.Window <= 0 {
		return nil, errors.New("quality: the revert window must be positive")
	}
	m, err := newMetrics(d.Reg)
	if err != nil {
		return nil, err
	}
	m.window.Set(cfg.Window.Seconds())
	// Failures are counted one by one but logged at most 5 a minute: a full
	// bucket fails every alerted event.
	log := d.Logger("rules").With().Str("part", "quality").Logger().
		Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute})
	t := &Tracker{cfg: cfg, js: d.JS, log: log, seed: maphash.MakeSeed(),
		m: m, pinned: map[string]bool{}, wikis: map[string]bool{}, rules: map[string]bool{}}
	for _, w := range cfg.Wikis {
		t.pinned[w] = true
	}
	return t, nil
}

// Open opens the bucket (created by pipeline.Ensure).
func (t *Tracker) Open(ctx context.Context) error {
	kv, err := pipeline.OpenKV(ctx, t.js, pipeline.BucketQuality, t.log)
	if err != nil {
		return fmt.Errorf("opening KV bucket %s for the self-measurement: %w", pipeline.BucketQuality, err)
	}
	t.mu.Lock()
	t.kv = kv
	t.mu.Unlock()
	return nil
}

// Ready reports whether the bucket is open.
func (t *Tracker) Ready() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kv == nil {
		return fmt.Errorf("quality: KV bucket %s not open", pipeline.BucketQuality)
	}
	return nil
}

// Key is the bucket key of a page's state.
func Key(wiki, title string) string {
	h := sha256.Sum256([]byte(wiki + "\x00" + title))
	return "p." + hex.EncodeToString(h[:12])
}

// alertedEdit is an edit some rule alerted on.
type alertedEdit struct {
	Rev      int64    `json:"r"`
	User     string   `json:"u,omitempty"`
	At       int64    `json:"t"` // event time, unix seconds
	Rules    []string `json:"k"`
	Reverted bool     `json:"v,omitempty"`
}

// revertMark is a revert seen on the page.
type revertMark struct {
	By     int64   `json:"b,omitempty"` // the revert's own revision
	ByUser string  `json:"bu,omitempty"`
	At     int64   `json:"t"`
	Kind   string  `json:"k"`
	Revs   []int64 `json:"r,omitempty"`
	User   string  `json:"u,omitempty"`
	// A rollback's alerted edits found so far and reverted edits counted
	// (at least one, or the count its summary gives).
	Found   int `json:"f,omitempty"`
	Counted int `json:"c,omitempty"`
}

type pageState struct {
	Alerted []alertedEdit `json:"a,omitempty"`
	Reverts []revertMark  `json:"v,omitempty"`
}

// covers reports whether revert r reverted edit e within window.
func (r *revertMark) covers(e *alertedEdit, window time.Duration) bool {
	if e.At > r.At || r.At-e.At > int64(window/time.Second) || (r.By != 0 && e.Rev == r.By) {
		return false
	}
	switch r.Kind {
	case KindUndo:
		return slices.Contains(r.Revs, e.Rev)
	case KindRevert:
		return len(r.Revs) > 0 && e.Rev == r.Revs[0] && e.User != r.ByUser
	case KindRollback:
		return SameUser(e.User, r.User)
	}
	return false
}

// deltas are the counts one update adds, applied once it is stored.
type deltas struct {
	alerted, alertedReverted  map[string]int // rule
	reverted, revertedAlerted int
	revertKind                string
	dropped                   int
}

// apply merges one event into st and reports what it adds; changed is
// false when st already held it (a redelivered event).
func apply(st *pageState, ev *event.RecentChange, rules []string, rv *Revert, window time.Duration, maxEntries int) (d deltas, changed bool) {
	at := ev.Time().Unix()
	var rev int64
	if ev.Revision.New != nil {
		rev = *ev.Revision.New
	}
	d.alerted, d.alertedReverted = map[string]int{}, map[string]int{}
	// Forget what the window no longer covers.
	cut := at - int64(window/time.Second)
	st.Alerted = slices.DeleteFunc(st.Alerted, func(e alertedEdit) bool { return e.At < cut })
	st.Reverts = slices.DeleteFunc(st.Reverts, func(r revertMark) bool { return r.At < cut })

	if len(rules) > 0 && rev != 0 {
		i := slices.IndexFunc(st.Alerted, func(e alertedEdit) bool { return e.Rev == rev })
		if i < 0 {
			st.Alerted = append(st.Alerted, alertedEdit{Rev: rev, User: ev.User, At: at})
			i = len(st.Alerted) - 1
		}
		e := &st.Alerted[i]
		var added []string
		for _, r := range rules {
			if !slices.Contains(e.Rules, r) {
				e.Rules = append(e.Rules, r)
				added = append(added, r)
				d.alerted[r]++
			}
		}
		switch {
		case len(added) == 0:
		case e.Reverted: // a new rule on an edit already known reverted
			for _, r := range added {
				d.alertedReverted[r]++
			}
			changed = true
		default:
			changed = true
			// The revert may have been evaluated first (another worker
			// or replica was still enriching this edit).
			for k := range st.Reverts {
				m := &st.Reverts[k]
				if !m.covers(e, window) {
					continue
				}
				e.Reverted = true
				d.revertedAlerted++
				for _, r := range e.Rules {
					d.alertedReverted[r]++
				}
				if m.Kind == KindRollback { // one more edit than it was known to revert?
					m.Found++
					if m.Found > m.Counted {
						d.reverted += m.Found - m.Counted
						m.Counted = m.Found
					}
				}
				break
			}
		}
	}

	if rv != nil && (rev == 0 || !slices.ContainsFunc(st.Reverts, func(r revertMark) bool { return r.By == rev })) {
		changed = true
		d.revertKind = rv.Kind
		m := revertMark{By: rev, ByUser: ev.User, At: at, Kind: rv.Kind, Revs: rv.Revs, User: rv.User}
		st.Reverts = append(st.Reverts, m)
		found := 0
		for k := range st.Alerted {
			e := &st.Alerted[k]
			if e.Reverted || !m.covers(e, window) {
				continue
			}
			e.Reverted = true
			found++
			d.revertedAlerted++
			for _, r := range e.Rules {
				d.alertedReverted[r]++
			}
		}
		switch rv.Kind {
		case KindUndo:
			d.reverted = len(rv.Revs)
		case KindRevert:
			d.reverted = 1
		case KindRollback:
			d.reverted = max(rv.Count, found, 1)
			last := &st.Reverts[len(st.Reverts)-1]
			last.Found, last.Counted = found, d.reverted
		}
	}
	if n := len(st.Alerted) - maxEntries; n > 0 {
		st.Alerted = st.Alerted[n:]
		d.dropped += n
	}
	if n := len(st.Reverts) - maxEntries; n > 0 {
		st.Reverts = st.Reverts[n:]
		d.dropped += n
	}
	return d, changed
}

// Observe takes one evaluated event and the IDs of the rules that alerted
// on it. An alerted edit is written to its page's state (one read and one
// write); a recognised revert reads the page's state, marks the alerted
// edits it reverted and records itself there, so that an alert evaluated
// after its revert still finds it and a redelivered revert is not counted
// twice. Errors are logged and counted, never returned: the event goes on.
func (t *Tracker) Observe(ctx context.Context, ev *event.RecentChange, alerted []string) {
	if !Revertable(ev) {
		return
	}
	var rv *Revert
	if r, ok := Recognise(ev); ok {
		rv = &r
	}
	if rv == nil && len(alerted) == 0 {
		return
	}
	t.mu.Lock()
	kv := t.kv
	t.mu.Unlock()
	if kv == nil {
		t.m.errors.WithLabelValues("closed").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	key := Key(ev.Wiki, ev.Title)
	lock := &t.pages[maphash.String(t.seed, key)%uint64(len(t.pages))]
	lock.Lock()
	defer lock.Unlock()
	for attempt := 0; attempt < t.cfg.Attempts; attempt++ {
		if attempt > 0 { // another replica wrote the page: let it finish
			pause := time.Duration(attempt) * time.Millisecond
			select {
			case <-time.After(pipeline.Jitter(pause)):
			case <-ctx.Done():
				t.fail("put", ev, ctx.Err())
				return
			}
		}
		var st pageState
		var last uint64
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil:
			last = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				t.m.errors.WithLabelValues("decode").Inc()
				st = pageState{} // a bad value is replaced
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			t.fail("get", ev, err)
			return
		}
		d, changed := apply(&st, ev, alerted, rv, t.cfg.Window, t.cfg.MaxEntries)
		if !changed {
			return
		}
		data, err := json.Marshal(&st)
		if err != nil {
			t.fail("encode", ev, err)
			return
		}
		ttl := t.cfg.Window
		if len(st.Alerted) == 0 {
			ttl = t.cfg.PendingTTL
		}
		if last == 0 {
			_, err = kv.Create(ctx, key, data, jetstream.KeyTTL(ttl))
		} else {
			_, err = pipeline.KVPutTTL(ctx, t.js, kv, key, data, ttl, last)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, pipeline.ErrRevisionMismatch) {
			t.m.conflicts.Inc()
			continue
		}
		if err != nil {
			t.fail("put", ev, err)
			return
		}
		t.count(ev.Wiki, d)
		return
	}
	t.fail("put", ev, fmt.Errorf("%d concurrent writes in a row", t.cfg.Attempts))
}

func (t *Tracker) fail(op string, ev *event.RecentChange, err error) {
	t.m.errors.WithLabelValues(op).Inc()
	t.log.Warn().Err(err).Str("op", op).Str("wiki", ev.Wiki).Str("meta_id", ev.Meta.ID).
		Msg("self-measurement update lost; the event is unaffected")
}

func (t *Tracker) count(wiki string, d deltas) {
	t.mu.Lock()
	w := wiki
	if !t.pinned[wiki] {
		w = capLabel(t.wikis, wiki, t.cfg.MaxWikis)
	}
	rl := map[string]string{}
	ids := slices.Sorted(maps.Keys(d.alerted)) // the first rules get the labels, in a stable order
	ids = append(ids, slices.Sorted(maps.Keys(d.alertedReverted))...)
	for _, r := range ids {
		rl[r] = capLabel(t.rules, r, t.cfg.MaxRules)
	}
	t.mu.Unlock()
	for r, n := range d.alerted {
		t.m.alerted.WithLabelValues(rl[r], w).Add(float64(n))
	}
	for r, n := range d.alertedReverted {
		t.m.alertedReverted.WithLabelValues(rl[r], w).Add(float64(n))
	}
	if d.revertKind != "" {
		t.m.reverts.WithLabelValues(d.revertKind).Inc()
	}
	if d.reverted > 0 {
		t.m.reverted.WithLabelValues(w).Add(float64(d.reverted))
	}
	if d.revertedAlerted > 0 {
		t.m.revertedAlerted.WithLabelValues(w).Add(float64(d.revertedAlerted))
	}
	if d.dropped > 0 {
		t.m.dropped.Add(float64(d.dropped))
	}
}

// capLabel is v when it has, or may still get, its own series (at most n
// in seen); OtherLabel beyond. t.mu is held.
func capLabel(seen map[string]bool, v string, n int) string {
	if seen[v] {
		return v
	}
	if len(seen) < n {
		seen[v] = true
		return v
	}
	return OtherLabel
}
