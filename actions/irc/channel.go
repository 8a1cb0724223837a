package irc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// channel is one alert channel: a lease, and a consumer that runs only
// while this replica holds the lease. The control channel has a lease and
// no consumer.
type channel struct {
	net    *network
	name   string
	cfg    ChannelConfig
	log    zerolog.Logger
	runner *pipeline.Runner
	lease  *lease

	holding atomic.Bool // this replica holds the lease and runs the consumer

	// inflight holds the ids of the alerts whose handler is running: a
	// redelivery that arrives while the first delivery still waits for its
	// line or its key (acks and progress reports fail while NATS elects a
	// leader, so AckWait can expire under a running handler) is handed back
	// for later instead of getting a second line.
	mu       sync.Mutex
	inflight map[string]struct{}
}

// claim marks id in flight; false if it already is.
func (c *channel) claim(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inflight[id]; ok {
		return false
	}
	if c.inflight == nil {
		c.inflight = map[string]struct{}{}
	}
	c.inflight[id] = struct{}{}
	return true
}

func (c *channel) unclaim(id string) {
	c.mu.Lock()
	delete(c.inflight, id)
	c.mu.Unlock()
}

// durableName is the channel's consumer: irc-<network>-<channel>.
func durableName(network, channel string) string {
	return "irc-" + actions.KeyToken(network) + "-" + actions.KeyToken(channel)
}

func newChannel(n *network, cfg ChannelConfig) (*channel, error) {
	c := &channel{net: n, name: cfg.Name, cfg: cfg, log: n.log.With().Str("channel", cfg.Name).Logger()}
	durable := durableName(n.cfg.Name, cfg.Name)
	rc := pipeline.RunnerConfig{
		Stage: durable, Stream: pipeline.StreamAlerts, Durable: durable,
		// Handlers wait for their line; enough of them must wait at once for
		// a burst to reach the backlog and fold.
		// Folding from the backlog (Config.BacklogFold) counts at most the
		// alerts in hand into each digest line: 1024 per line at 2 lines/s
		// outruns a 2,000 alerts/s flood. (The race detector allows 8,128
		// goroutines.)
		Workers: 1024, MaxAckPending: 2048, AckWait: n.w.cfg.AckWait,
		// Alerts that cannot be posted now ask for a redelivery (Retry), which
		// must never run out: no delivery limit.
		MaxDeliver: -1,
		// A new consumer starts at Worker.firstStart (actions.StartFrom).
	}
	if r := cfg.Route; !r.fromActions() {
		rc.FilterSubjects = actions.FilterSubjects(r.Wikis)
	}
	d := n.w.d
	d.JS = actions.StartFrom(d.JS, n.w.firstStart)
	d.Log = d.Log.With().Str("replica", n.w.cfg.ReplicaID).Logger() // the runner adds stage=<durable>
	r, err := pipeline.NewRunner(d, rc, c.handle)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", cfg.Name, err)
	}
	c.runner = r
	return c, nil
}

// loop waits until the channel is joined, competes for its lease, and
// consumes while holding it.
func (c *channel) loop(ctx context.Context) {
	ttl := c.net.w.cfg.LeaseTTL
	for ctx.Err() == nil {
		joined, changed := c.net.state(c.name)
		if !joined {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		got, err := c.lease.TryAcquire(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("lease check failed")
		}
		if !got {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pipeline.Jitter(ttl / 2)):
			}
			continue
		}
		c.hold(ctx)
	}
}

// hold runs the consumer while the lease is renewed and the channel joined.
func (c *channel) hold(ctx context.Context) {
	n := c.net
	ttl := n.w.cfg.LeaseTTL
	n.w.m.leaseHeld.WithLabelValues(n.cfg.Name, c.name).Set(1)
	c.log.Info().Msg("lease acquired; posting")
	c.holding.Store(true)
	defer c.holding.Store(false)
	runCtx, cancel := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		defer cancel()
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			joined, changed := n.state(c.name)
			if !joined {
				c.log.Warn().Msg("not in the channel any more; giving up the lease")
				return
			}
			select {
			case <-runCtx.Done():
				return
			case <-changed:
				continue
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(runCtx, ttl/3)
			err := c.lease.Renew(rctx)
			rcancel()
			if err != nil {
				if c.lease.Valid(n.w.now()) && !errors.Is(err, errLeaseLost) {
					c.log.Warn().Err(err).Msg("lease renewal failed; retrying")
					continue
				}
				c.log.Warn().Err(err).Msg("lease lost")
				return
			}
		}
	}()
	var runErr error
	if c.runner != nil {
		runErr = c.runner.Run(runCtx)
	} else {
		<-runCtx.Done()
	}
	cancel()
	<-renewDone
	n.queue.FailChannel(c.name, errLeaseLost)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := c.lease.Release(rctx); err != nil {
		c.log.Warn().Err(err).Msg("releasing lease failed; it expires by itself")
	}
	rcancel()
	n.w.m.leaseHeld.WithLabelValues(n.cfg.Name, c.name).Set(0)
	if runErr != nil {
		c.log.Error().Err(runErr).Msg("consumer stopped with an error; retrying in 1s")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return
	}
	c.log.Info().Msg("lease released")
}

// handle posts one alert to this channel: route, staleness, mute and
// idempotency checks, then the flood queue (whose send loop stores the
// idempotency key once the server confirmed the line). It
// returns nil (ack) only after the alert's line — or the digest that counts
// it — was confirmed by the server, or when the alert is not for this
// channel, muted, stale or already posted.
func (c *channel) handle(ctx context.Context, msg jetstream.Msg) error {
	w := c.net.w
	a, err := actions.DecodeAlert(msg)
	if err != nil {
		return err
	}
	if !c.cfg.Route.Matches(a, c.net.cfg.Name, c.name) {
		return nil
	}
	now := w.now()
	log := c.log.With().Str("alert", a.ID).Logger()
	if w.cfg.MaxAlertAge > 0 && !a.DetectedAt.IsZero() && now.Sub(a.DetectedAt) > w.cfg.MaxAlertAge {
		w.m.dropped.WithLabelValues("stale").Inc()
		log.Info().Time("detected_at", a.DetectedAt).Msg("alert too old for IRC; not posted")
		return nil
	}
	if c.behind(msg, now) {
		return c.handleBehind(ctx, msg, a, now)
	}
	if m, err := w.mutes.Muted(ctx, a.Rule.ID, now); err != nil {
		return err
	} else if m != nil {
		w.m.dropped.WithLabelValues("mute").Inc()
		log.Debug().Str("rule", a.Rule.ID).Msg("rule muted; not posted")
		return nil
	}
	if !c.claim(a.ID) {
		w.m.duplicates.Inc()
		log.Debug().Msg("redelivered while its first delivery is still in hand; retrying later")
		return pipeline.Retry(errors.New("alert already in hand"), c.net.w.cfg.AckWait)
	}
	defer c.unclaim(a.ID)
	key := sentKey(c.net.cfg.Name, c.name, a.ID)
	if _, err := w.kv.Get(ctx, key); err == nil {
		w.m.duplicates.Inc()
		log.Debug().Msg("already posted; skipping the redelivery")
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		return fmt.Errorf("reading idempotency key: %w", err)
	}
	if !c.lease.Valid(now) {
		return pipeline.Retry(errLeaseLost, time.Second)
	}
	p := &pending{alert: a, channel: c.name, enqueued: now, done: make(chan outcome, 1)}
	if _, err := c.net.queue.Add(p); err != nil {
		return pipeline.Retry(err, time.Second)
	}
	o := c.wait(p, msg)
	if o.err != nil {
		return pipeline.Retry(o.err, time.Second)
	}
	// The send loop stored the idempotency key before the outcome came.
	if !a.DetectedAt.IsZero() {
		w.m.latency.Observe(o.sentAt.Sub(a.DetectedAt).Seconds())
	}
	return nil
}

// handleBehind counts an alert into its channel's backlog digest for its
// (rule, wiki) while the channel is behind, and returns nil (ack) once that
// digest line was confirmed by the server. To keep up with a flood it reads
// mutes through a 1 s cache and neither reads nor writes the alert's
// idempotency key: an alert redelivered after its digest line (a lost ack, a
// crash between line and ack) is counted again in a later digest, or posted
// as its own line if the channel has caught up by then — it is never lost.
func (c *channel) handleBehind(ctx context.Context, msg jetstream.Msg, a *event.Alert, now time.Time) error {
	w := c.net.w
	if m, err := w.mutes.MutedCached(ctx, a.Rule.ID, now); err != nil {
		return err
	} else if m != nil {
		w.m.dropped.WithLabelValues("mute").Inc()
		return nil
	}
	if !c.lease.Valid(now) {
		return pipeline.Retry(errLeaseLost, time.Second)
	}
	p := &pending{alert: a, channel: c.name, enqueued: now, done: make(chan outcome, 1)}
	if err := c.net.queue.AddBacklog(p); err != nil {
		return pipeline.Retry(err, time.Second)
	}
	if o := c.wait(p, msg); o.err != nil {
		return pipeline.Retry(o.err, time.Second)
	}
	return nil
}

// behind reports whether the channel's consumer is behind (BacklogFold):
// more than Pending alerts wait after msg, or msg was stored in ALERTS more
// than Age ago. It also sets the consumer's pending gauge.
func (c *channel) behind(msg jetstream.Msg, now time.Time) bool {
	meta, err := msg.Metadata()
	if err != nil {
		return false
	}
	w := c.net.w
	w.m.consumerPending.WithLabelValues(c.net.cfg.Name, c.name).Set(float64(meta.NumPending))
	bf := w.cfg.BacklogFold
	if bf.Off {
		return false
	}
	return meta.NumPending > uint64(bf.Pending) || (bf.Age > 0 && now.Sub(meta.Timestamp) > bf.Age) //nolint:gosec // Pending is validated positive
}

// wait waits for the alert's outcome, telling JetStream the message is in
// progress so AckWait does not expire while it waits for the flood limit.
func (c *channel) wait(p *pending, msg jetstream.Msg) outcome {
	t := time.NewTicker(c.net.w.cfg.AckWait / 3)
	defer t.Stop()
	limit := time.NewTimer(2 * time.Minute)
	defer limit.Stop()
	for {
		select {
		case o := <-p.done:
			return o
		case <-t.C:
			_ = msg.InProgress()
		case <-limit.C:
			if c.net.queue.Cancel(p) {
				return outcome{err: errors.New("line waited more than 2m")}
			}
		}
	}
}

// storeSent writes the idempotency key of a posted line. The line is out, so
// the key matters more than latency: a write that fails while the NATS
// cluster elects a new leader is retried for up to 30 s before giving up.
func (w *Worker) storeSent(ctx context.Context, key string, val []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := w.kv.Create(cctx, key, val, jetstream.KeyTTL(w.cfg.IdempotencyTTL))
		ccancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}
