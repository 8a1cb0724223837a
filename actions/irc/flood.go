package irc

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rcwatch/rcwatch/event"
)

// tokenBucket is the flood limiter of one connection: Rate tokens per second
// up to Burst. Time is an argument, so tests step it.
type tokenBucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (b *tokenBucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// Take spends a token if one is available at now; otherwise it says how long
// until one is.
func (b *tokenBucket) Take(now time.Time) (bool, time.Duration) {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	need := (1 - b.tokens) / b.rate
	return false, time.Duration(need*float64(time.Second)) + time.Millisecond
}

// Errors a waiting alert can end with; all mean "not posted, redeliver".
var (
	errNotConnected = errors.New("IRC connection is down")
	errLeaseLost    = errors.New("this replica no longer holds the channel lease")
	errStopping     = errors.New("IRC worker is stopping")
)

// outcome is what happened to one alert handed to the queue.
type outcome struct {
	folded bool      // counted in a digest line rather than its own line
	sentAt time.Time // when the server confirmed the line
	err    error
}

// pending is one alert waiting for its line.
type pending struct {
	alert    *event.Alert
	channel  string // as configured
	enqueued time.Time
	done     chan outcome // buffered 1; receives exactly once
	item     *outItem     // where it waits (guarded by the queue's mutex)
}

type itemKind int

const (
	itemAlert itemKind = iota
	itemDigest
	itemControl
)

func (k itemKind) String() string { return [...]string{"alert", "digest", "control"}[k] }

// DigestOther groups alerts of a channel once MaxDigests is reached.
const DigestOther DigestKind = "other"

// DigestBacklog counts the alerts of one (rule, wiki) taken from a channel's
// backlog in the consumer (Config.BacklogFold).
const DigestBacklog DigestKind = "backlog"

// outItem is one line waiting for a token: a single alert, a digest of
// folded alerts, or a control reply.
type outItem struct {
	kind    itemKind
	channel string
	single  *pending
	dkind   DigestKind
	dkey    string
	wiki    string // backlog digests: the wiki of dkey's rule
	folded  []*pending
	text    string // control replies
	delayed bool   // waited behind others or for a token
}

// floodQueue is the bounded backlog of one connection. At most Backlog
// single lines wait; beyond that alerts are folded into digest lines (by
// user when that user already has lines waiting in the channel, else by
// rule), at most MaxDigests of them plus one "other" digest per channel.
// Nothing is dropped: every alert ends as its own line, in a digest line, or
// with an error that makes its handler ask for redelivery.
type floodQueue struct {
	cfg FloodConfig

	mu      sync.Mutex
	items   []*outItem
	singles int
	digests int
	closed  error // when set, Add fails with it
	wake    chan struct{}
}

func newFloodQueue(cfg FloodConfig) *floodQueue {
	return &floodQueue{cfg: cfg, wake: make(chan struct{}, 1)}
}

func (q *floodQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Add queues p, folding it into a digest when the backlog is full. It
// reports whether p was folded.
func (q *floodQueue) Add(p *pending) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed != nil {
		return false, q.closed
	}
	defer q.signal()
	if q.singles < q.cfg.Backlog {
		it := &outItem{kind: itemAlert, channel: p.channel, single: p, delayed: len(q.items) > 0}
		p.item = it
		q.items = append(q.items, it)
		q.singles++
		return false, nil
	}
	user, rule := p.alert.Event.User, p.alert.Rule.ID
	join := func(it *outItem) {
		it.folded = append(it.folded, p)
		p.item = it
	}
	// An existing digest for this user, then for this rule.
	for _, kind := range []DigestKind{DigestByUser, DigestByRule} {
		key := rule
		if kind == DigestByUser {
			if user == "" {
				continue
			}
			key = user
		}
		for _, it := range q.items {
			if it.kind == itemDigest && it.channel == p.channel && it.dkind == kind && it.dkey == key {
				join(it)
				return true, nil
			}
		}
	}
	if q.digests >= q.cfg.MaxDigests {
		for _, it := range q.items {
			if it.kind == itemDigest && it.channel == p.channel && it.dkind == DigestOther {
				join(it)
				return true, nil
			}
		}
		it := &outItem{kind: itemDigest, channel: p.channel, dkind: DigestOther, dkey: "other rules"}
		join(it)
		q.items = append(q.items, it)
		return true, nil
	}
	kind, key := DigestByRule, rule
	if user != "" {
		for _, it := range q.items {
			if it.kind == itemAlert && it.channel == p.channel && it.single.alert.Event.User == user {
				kind, key = DigestByUser, user
				break
			}
		}
	}
	it := &outItem{kind: itemDigest, channel: p.channel, dkind: kind, dkey: key}
	join(it)
	q.items = append(q.items, it)
	q.digests++
	return true, nil
}

// AddBacklog counts p into its channel's waiting backlog digest for the
// same (rule, wiki), creating it at the end of the queue when there is none
// waiting: one line per (rule, wiki) per turn, however long the backlog.
// Backlog digests are bounded by the alerts in hand (the consumer's
// MaxAckPending), not by MaxDigests.
func (q *floodQueue) AddBacklog(p *pending) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed != nil {
		return q.closed
	}
	defer q.signal()
	rule, wiki := p.alert.Rule.ID, p.alert.Event.Wiki
	var bd *outItem
	for _, it := range q.items {
		if it.kind == itemDigest && it.dkind == DigestBacklog && it.channel == p.channel && it.dkey == rule && it.wiki == wiki {
			bd = it
			break
		}
	}
	if bd == nil {
		bd = &outItem{kind: itemDigest, channel: p.channel, dkind: DigestBacklog, dkey: rule, wiki: wiki}
		q.items = append(q.items, bd)
		// The alerts of this (rule, wiki) queued before the channel fell
		// behind join the backlog digest instead of taking lines of their
		// own ahead of it.
		q.absorb(bd)
	}
	bd.folded = append(bd.folded, p)
	p.item = bd
	return nil
}

// absorb moves the waiting alerts of bd's channel, rule and wiki from
// single lines and flood digests into the backlog digest bd (mu held).
func (q *floodQueue) absorb(bd *outItem) {
	match := func(x *pending) bool { return x.alert.Rule.ID == bd.dkey && x.alert.Event.Wiki == bd.wiki }
	kept := q.items[:0]
	for _, it := range q.items {
		if it == bd || it.channel != bd.channel || it.kind == itemControl || it.dkind == DigestBacklog {
			kept = append(kept, it)
			continue
		}
		var stay []*pending
		for _, x := range it.pendings() {
			if match(x) {
				bd.folded = append(bd.folded, x)
				x.item = bd
			} else {
				stay = append(stay, x)
			}
		}
		switch {
		case len(stay) == len(it.pendings()):
			kept = append(kept, it)
		case len(stay) == 0:
			switch {
			case it.kind == itemAlert:
				q.singles--
			case it.dkind != DigestOther:
				q.digests--
			}
		default: // a digest keeps its other alerts
			it.folded = stay
			kept = append(kept, it)
		}
	}
	clear(q.items[len(kept):])
	q.items = kept
}

// AddControl queues a control reply ahead of alert lines.
func (q *floodQueue) AddControl(channel, text string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed != nil {
		return
	}
	i := 0
	for i < len(q.items) && q.items[i].kind == itemControl {
		i++
	}
	q.items = append(q.items[:i], append([]*outItem{{kind: itemControl, channel: channel, text: text}}, q.items[i:]...)...)
	q.signal()
}

// Len is the number of lines waiting.
func (q *floodQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// markHeadDelayed notes that the head line waits for a token.
func (q *floodQueue) markHeadDelayed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		q.items[0].delayed = true
	}
}

// Pop takes the head line; after this, Cancel no longer finds its alerts.
func (q *floodQueue) Pop() *outItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	it := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	q.forget(it)
	return it
}

// forget updates the counters for an item leaving the queue (mu held).
func (q *floodQueue) forget(it *outItem) {
	switch {
	case it.kind == itemAlert:
		q.singles--
	case it.kind == itemDigest && it.dkind != DigestOther && it.dkind != DigestBacklog:
		q.digests--
	}
	for _, p := range it.pendings() {
		p.item = nil
	}
}

func (it *outItem) pendings() []*pending {
	if it.single != nil {
		return []*pending{it.single}
	}
	return it.folded
}

// Cancel removes p if it is still waiting (true); false means its line is
// being sent and its outcome will come.
func (q *floodQueue) Cancel(p *pending) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := p.item
	if it == nil {
		return false
	}
	p.item = nil
	if it.kind == itemDigest {
		for i, x := range it.folded {
			if x == p {
				it.folded = append(it.folded[:i], it.folded[i+1:]...)
				break
			}
		}
		if len(it.folded) > 0 {
			return true
		}
	}
	for i, x := range q.items {
		if x == it {
			q.items = append(q.items[:i], q.items[i+1:]...)
			q.forget(it)
			break
		}
	}
	return true
}

// FailChannel ends every waiting alert of channel with err (lease lost).
func (q *floodQueue) FailChannel(channel string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.items[:0]
	for _, it := range q.items {
		if it.kind != itemControl && strings.EqualFold(it.channel, channel) {
			q.forget(it)
			it.finish(outcome{err: err})
			continue
		}
		kept = append(kept, it)
	}
	clear(q.items[len(kept):])
	q.items = kept
}

// FailAll ends every waiting line with err; when closed is set, later Adds
// fail with it too until Open.
func (q *floodQueue) FailAll(err error, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		q.forget(it)
		it.finish(outcome{err: err})
	}
	q.items = nil
	if closed {
		q.closed = err
	}
}

// Open lets Add accept alerts again.
func (q *floodQueue) Open() {
	q.mu.Lock()
	q.closed = nil
	q.mu.Unlock()
}

// finish delivers the outcome to every alert of the line.
func (it *outItem) finish(o outcome) {
	for _, p := range it.pendings() {
		po := o
		if it.kind == itemDigest && o.err == nil {
			po.folded = true
		}
		p.done <- po
	}
}

// latest is the newest alert of a digest.
func (it *outItem) latest() *event.Alert {
	if len(it.folded) == 0 {
		return nil
	}
	return it.folded[len(it.folded)-1].alert
}
