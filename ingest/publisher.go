package ingest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// publisher publishes asynchronously with a bounded number of messages in
// flight and tracks the resume position that is safe to store: the SSE id of
// the newest frame such that it and every frame before it were acknowledged
// by JetStream (or needed no publish at all). A failed publish is retried,
// with the same Nats-Msg-Id, until it succeeds or the publisher is stopped;
// the position never moves past it meanwhile.
type publisher struct {
	js jetstream.JetStream
	// slots is the back-pressure bound (capacity = max in flight): a slot
	// is taken before a message is handed to the client and given back once
	// the collector is done with it. Taking it first means a message that
	// was published is always queued, so the position accounts for
	// everything JetStream may have stored.
	slots chan struct{}
	queue chan *pending // same capacity as slots: sending never blocks
	done  chan struct{}
	// stop ends retries at the shutdown deadline.
	stop    context.Context
	abandon context.CancelFunc
	m       *metrics
	log     zerolog.Logger
	now     func() time.Time

	mu   sync.Mutex
	safe string
	err  error
}

type pending struct {
	msg  *nats.Msg // nil: nothing to publish, only advance the position
	fut  jetstream.PubAckFuture
	pos  string
	sent time.Time
	evt  time.Time // meta.dt, for the lag gauge
	dead bool      // a dead letter, not an event
}

func newPublisher(js jetstream.JetStream, maxInFlight int, start string, m *metrics, log zerolog.Logger, now func() time.Time) *publisher {
	stop, abandon := context.WithCancel(context.Background())
	p := &publisher{js: js, slots: make(chan struct{}, maxInFlight), queue: make(chan *pending, maxInFlight), done: make(chan struct{}),
		stop: stop, abandon: abandon, m: m, log: log, now: now, safe: start}
	go p.collect()
	return p
}

// publish sends msg asynchronously and queues it for acknowledgement. It
// blocks while maxInFlight messages await their acks (back-pressure) or
// until ctx ends. When ctx has ended it publishes nothing and returns ctx's
// error; once it publishes, the message is queued and counted in the
// position (a message stored by JetStream but left out of the position
// would leave the stored position one frame behind the stream).
func (p *publisher) publish(ctx context.Context, msg *nats.Msg, pos string, evt time.Time, dead bool) error {
	if err := p.reserve(ctx); err != nil {
		return err
	}
	it := &pending{msg: msg, pos: pos, evt: evt, dead: dead, sent: p.now()}
	// A failure to hand the message to the client (reconnect buffer full,
	// too many stalled) is retried by the collector; no need to block here.
	if fut, err := p.js.PublishMsgAsync(msg); err == nil {
		it.fut = fut
	} else {
		p.m.publishErrors.Inc() // counted: a refusal that repeats is a stall, not noise
		p.log.Debug().Err(err).Msg("async publish not accepted; collector retries")
	}
	p.enqueue(it)
	return nil
}

// mark advances the position past a frame that needs no publish (a dropped
// canary), in order with everything in flight.
func (p *publisher) mark(ctx context.Context, pos string) error {
	if err := p.reserve(ctx); err != nil {
		return err
	}
	p.enqueue(&pending{pos: pos})
	return nil
}

// reserve takes an in-flight slot, waiting while all are taken, unless ctx
// has ended (checked first: select picks at random among ready cases).
func (p *publisher) reserve(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue hands a reserved item to the collector; it never blocks (the
// queue has a place for every slot).
func (p *publisher) enqueue(it *pending) {
	p.queue <- it
	p.m.inflight.Set(float64(len(p.slots)))
}

// outstanding is the number of items queued or awaiting their ack.
func (p *publisher) outstanding() int { return len(p.slots) }

func (p *publisher) release() {
	<-p.slots
	p.m.inflight.Set(float64(len(p.slots)))
}

// safePosition is the newest position every earlier frame of which is stored.
func (p *publisher) safePosition() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.safe
}

// close stops accepting, waits for every outstanding ack (retrying failures)
// until ctx ends, and returns the final safe position.
func (p *publisher) close(ctx context.Context) (string, error) {
	close(p.queue)
	select {
	case <-p.done:
	case <-ctx.Done():
		p.abandon()
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.safe, p.err
}

func (p *publisher) collect() {
	defer close(p.done)
	for it := range p.queue {
		if it.msg != nil {
			if err := p.await(it); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				p.release()
				// Drain the rest without advancing the position.
				for range p.queue {
					p.release()
				}
				return
			}
		}
		p.mu.Lock()
		p.safe = it.pos
		p.mu.Unlock()
		p.release()
	}
}

// await waits for it's ack, republishing (same Nats-Msg-Id) on failure with
// capped backoff until it is stored or the publisher is abandoned.
func (p *publisher) await(it *pending) error {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if it.fut != nil {
			select {
			case ack := <-it.fut.Ok():
				p.acked(it, ack)
				return nil
			case err := <-it.fut.Err():
				p.m.publishErrors.Inc()
				if attempt == 1 || attempt%20 == 0 {
					p.log.Warn().Err(err).Str("subject", it.msg.Subject).Int("attempt", attempt).
						Msg("publish not acknowledged; retrying")
				}
			case <-p.stop.Done():
				return errors.New("stopped before JetStream acknowledged every publish")
			}
		}
		select {
		case <-time.After(wait):
		case <-p.stop.Done():
			return errors.New("stopped before JetStream acknowledged every publish")
		}
		wait = min(wait*2, 2*time.Second)
		fut, err := p.js.PublishMsgAsync(it.msg)
		if err != nil {
			p.m.publishErrors.Inc()
			if attempt == 1 || attempt%20 == 0 {
				p.log.Warn().Err(err).Str("subject", it.msg.Subject).Int("attempt", attempt).
					Msg("publish not accepted by the client; retrying")
			}
			it.fut = nil
			continue
		}
		it.fut = fut
		it.sent = p.now()
	}
}

func (p *publisher) acked(it *pending, ack *jetstream.PubAck) {
	now := p.now()
	p.m.publishLatency.Observe(now.Sub(it.sent).Seconds())
	switch {
	case it.dead:
		p.m.deadLetters.Inc()
	case ack.Duplicate:
		p.m.duplicates.Inc()
	default:
		p.m.published.Inc()
	}
	if !it.dead && !it.evt.IsZero() {
		p.m.lag.Set(now.Sub(it.evt).Seconds())
	}
}
