package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// SSE event names.
const (
	evAlert  = "alert"
	evRetire = "retire"
	evClaim  = "claim"
	evGap    = "gap"
	evReady  = "ready"
)

// outMsg is one SSE event; seq is its id (alerts only).
type outMsg struct {
	event string
	seq   uint64
	data  []byte
}

// client is one open SSE connection.
type client struct {
	filter Filter
	ch     chan outMsg
	gone   chan struct{} // closed when the feed drops the client
	once   sync.Once
}

func (c *client) drop() { c.once.Do(func() { close(c.gone) }) }

// errTooManyClients is returned by subscribe when MaxClients are open.
var errTooManyClients = errors.New("too many feed connections")

// subscribe registers a client and returns the sequence up to which it must
// backfill: every alert after it reaches the client's queue.
func (f *Feed) subscribe(flt Filter) (*client, uint64, error) {
	c := &client{filter: flt, ch: make(chan outMsg, f.cfg.ClientBuffer), gone: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.clients) >= f.cfg.MaxClients {
		f.m.dropped.WithLabelValues("full").Inc()
		return nil, 0, errTooManyClients
	}
	f.clients[c] = struct{}{}
	f.m.clients.Set(float64(len(f.clients)))
	return c, f.seq, nil
}

func (f *Feed) unsubscribe(c *client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.clients[c]; ok {
		delete(f.clients, c)
		f.m.clients.Set(float64(len(f.clients)))
	}
}

// dispatch queues m for every client whose filter matches (all when a is
// nil). A client whose queue is full is dropped, never waited for: its
// browser reconnects and resumes by Last-Event-ID. Called with f.mu held.
func (f *Feed) dispatch(m outMsg, a *event.Alert) {
	for c := range f.clients {
		if a != nil && !c.filter.Match(a) {
			continue
		}
		select {
		case c.ch <- m:
		default:
			delete(f.clients, c)
			c.drop()
			f.m.dropped.WithLabelValues("slow").Inc()
			f.m.clients.Set(float64(len(f.clients)))
		}
	}
}

func (f *Feed) closeClients() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.clients {
		delete(f.clients, c)
		c.drop()
	}
	f.m.clients.Set(0)
}

// backfill returns the items matching flt after sequence after (or, when
// after is 0, from Backfill ago) up to sequence upto, oldest first, at most
// MaxBackfill of them (the newest); gap is true when older ones were left out.
func (f *Feed) backfill(ctx context.Context, flt Filter, after, upto uint64) (items []Item, gap bool, err error) {
	since := f.now().Add(-f.cfg.Backfill)
	if after >= upto {
		return nil, false, nil
	}
	f.mu.Lock()
	inRing := after > 0 && after+1 >= f.ringFrom || after == 0 && !since.Before(f.ringSince)
	if inRing {
		f.m.backfills.WithLabelValues("ring").Inc()
		start := f.ring.find(after + 1)
		if after == 0 {
			start = f.ring.findTime(since)
		}
		end := f.ring.find(upto + 1)
		for i := end - 1; i >= start; i-- {
			e := f.ring.at(i)
			if !flt.Match(e.alert) {
				continue
			}
			if len(items) == f.cfg.MaxBackfill {
				gap = true
				break
			}
			items = append(items, f.itemLocked(e))
		}
		f.mu.Unlock()
		reverse(items)
		return items, gap, nil
	}
	f.mu.Unlock()
	f.m.backfills.WithLabelValues("stream").Inc()
	f.m.backfillWaiting.Inc()
	select {
	case f.slots <- struct{}{}:
		f.m.backfillWaiting.Dec()
	case <-ctx.Done():
		f.m.backfillWaiting.Dec()
		return nil, false, fmt.Errorf("feed: waiting for a backfill slot: %w", ctx.Err())
	}
	defer func() { <-f.slots }()
	return f.backfillStream(ctx, flt, after, since, upto)
}

func reverse(items []Item) {
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
}

// itemLocked builds the item of e with its current retirement and claim.
func (f *Feed) itemLocked(e *entry) Item {
	it := Item{Seq: e.seq, Time: e.at, UserClass: e.class, Alert: e.alert}
	if r, ok := f.retired.get(e.seq); ok {
		it.Retired = r
	}
	if c, ok := f.claims.get(e.seq); ok && c.ID == e.alert.ID {
		it.Claim = c
	}
	return it
}

// backfillStream reads the backfill from ALERTS with an ordered consumer
// filtered by subject (wikis, rules) as far as the filter allows.
func (f *Feed) backfillStream(ctx context.Context, flt Filter, after uint64, since time.Time, upto uint64) ([]Item, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: pipeline.AlertFilterSubjects(flt.Wikis, flt.Rules)}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	} else {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := f.d.JS.OrderedConsumer(ctx, pipeline.StreamAlerts, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("feed: creating a backfill consumer: %w", err)
	}
	// Newest MaxBackfill matches, in a ring.
	keep := make([]Item, 0, min(f.cfg.MaxBackfill, 256))
	head, gap := 0, false
	add := func(it Item) {
		if len(keep) < f.cfg.MaxBackfill {
			keep = append(keep, it)
			return
		}
		gap = true
		keep[head] = it
		head = (head + 1) % len(keep)
	}
	for done := false; !done; {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return nil, false, fmt.Errorf("feed: reading the backfill: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq > upto {
				done = true
				continue
			}
			if md.NumPending == 0 || seq == upto {
				done = true
			}
			a, err := actions.DecodeAlert(msg)
			if err != nil || !flt.Match(a) {
				continue
			}
			f.mu.Lock()
			it := f.itemLocked(&entry{seq: seq, at: md.Timestamp, alert: a, class: ClassOf(a)})
			f.mu.Unlock()
			add(it)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, false, fmt.Errorf("feed: reading the backfill: %w", err)
		}
		if n == 0 {
			done = true
		}
	}
	out := make([]Item, 0, len(keep))
	out = append(out, keep[head:]...)
	out = append(out, keep[:head]...)
	return out, gap, nil
}
