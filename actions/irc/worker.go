// Package irc posts alerts to IRC channels (docs/IRC.md): one connection
// per network with a flood-safe send queue (network.go, send.go), one
// consumer per channel that runs only on the replica holding the channel's
// lease (channel.go, lease.go), and a control channel for !status, !mute
// and !unmute (control.go, mute.go).
package irc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Option tweaks the worker beyond its configuration. An option given a
// value that cannot work returns an error wrapping actions.ErrInvalidOption.
type Option func(*Worker) error

// WithFlood sets the token bucket of every network: rate lines per second
// with a burst of burst lines.
func WithFlood(rate float64, burst int) Option {
	return func(w *Worker) error {
		if rate <= 0 || burst < 1 {
			return fmt.Errorf("%w: WithFlood(%v, %d): rate and burst must be positive", actions.ErrInvalidOption, rate, burst)
		}
		for i := range w.cfg.Networks {
			w.cfg.Networks[i].Flood.Rate, w.cfg.Networks[i].Flood.Burst = rate, burst
		}
		return nil
	}
}

// Worker posts alerts from ALERTS to IRC channels (docs/IRC.md). It is a
// pipeline.Stage.
type Worker struct {
	d    pipeline.Deps
	cfg  Config
	js   jetstream.JetStream
	log  zerolog.Logger
	now  func() time.Time
	m    *metrics
	nets []*network

	kv    jetstream.KeyValue // set by Run
	mutes *muteStore

	// bg runs the work started by IRC events (control commands, rejoins)
	// for as long as Run runs; Run waits for it before it returns.
	bgMu      sync.Mutex
	bgCtx     context.Context
	bgStop    context.CancelFunc
	bgStopped bool
	bg        sync.WaitGroup
}

type metrics struct {
	lines      *prometheus.CounterVec
	folded     *prometheus.CounterVec
	delayed    *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	duplicates prometheus.Counter
	reconnects *prometheus.CounterVec
	connected  *prometheus.GaugeVec
	leaseHeld  *prometheus.GaugeVec
	queue      *prometheus.GaugeVec
	latency    prometheus.Histogram

	consumerPending *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_lines_sent_total",
			Help: "IRC lines confirmed by the server, by kind (alert, digest, control)."}, []string{"network", "kind"}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_alerts_folded_total",
			Help: "Alerts counted in a digest line instead of their own line, by reason (queue: the flood backlog was full; backlog: the channel's consumer was behind)."}, []string{"network", "reason"}),
		consumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_irc_consumer_pending",
			Help: "Alerts waiting in the channel's ALERTS consumer after the last one handled (NumPending)."}, []string{"network", "channel"}),
		delayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_lines_delayed_total",
			Help: "Alert lines that waited for the flood limit before being sent."}, []string{"network"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_alerts_dropped_total",
			Help: "Alerts not posted on purpose, by reason (mute, stale)."}, []string{"reason"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_irc_duplicates_skipped_total",
			Help: "Redelivered alerts already posted (idempotency key found)."}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_reconnects_total",
			Help: "IRC connections lost or failed, followed by a reconnect attempt."}, []string{"network"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_irc_connected",
			Help: "1 while registered on the IRC network."}, []string{"network"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_irc_lease_held",
			Help: "1 while this replica is the poster of the channel."}, []string{"network", "channel"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_irc_queue_lines",
			Help: "Lines waiting for the flood limit."}, []string{"network"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rcwatch_irc_alert_line_seconds",
			Help:    "From the alert's detected_at to the server's confirmation of its line.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lines, m.folded, m.delayed, m.dropped, m.duplicates, m.reconnects,
			m.connected, m.leaseHeld, m.queue, m.latency, m.consumerPending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering IRC metrics: %w", err)
			}
		}
	}
	return m, nil
}

// New validates cfg, resolves its secrets and builds the worker on d: its
// metrics register on d.Reg, its clock is d.Clock(). Buckets and consumers
// are opened by Run.
func New(d pipeline.Deps, cfg Config, opts ...Option) (*Worker, error) {
	cfg.Networks = append([]NetworkConfig(nil), cfg.Networks...)
	cfg.applyDefaults()
	w := &Worker{d: d, cfg: cfg, js: d.JS, now: d.Clock(),
		log: d.Logger("irc").With().Str("replica", cfg.ReplicaID).Logger()}
	w.bgCtx, w.bgStop = context.WithCancel(context.Background())
	for _, o := range opts {
		if err := o(w); err != nil {
			return nil, err
		}
	}
	if err := w.cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Reg)
	if err != nil {
		return nil, err
	}
	w.m = m
	for _, nc := range w.cfg.Networks {
		n, err := newNetwork(w, nc)
		if err != nil {
			return nil, err
		}
		w.nets = append(w.nets, n)
	}
	return w, nil
}

// Run connects to every network and posts until ctx is cancelled. On
// cancel, lines still waiting for the flood limit are handed back for
// redelivery, the channel consumers drain, the leases are released so
// another replica takes over at once, and the connections quit. Every
// goroutine the worker started has ended when Run returns.
func (w *Worker) Run(ctx context.Context) error {
	defer w.stopBackground()
	kv, err := pipeline.OpenKV(ctx, w.js, pipeline.BucketActions, w.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped during start-up
		}
		return fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketActions, err)
	}
	w.kv = kv
	w.mutes = &muteStore{js: w.js, kv: kv}
	netCtx, stopNets := context.WithCancel(context.WithoutCancel(ctx))
	defer stopNets()
	var netWG, chanWG sync.WaitGroup
	for _, n := range w.nets {
		n.attach(kv)
		netWG.Add(2)
		go func() { defer netWG.Done(); n.connectLoop(netCtx) }()
		go func() { defer netWG.Done(); n.sendLoop(netCtx) }()
		for _, c := range n.chans {
			chanWG.Add(1)
			go func() { defer chanWG.Done(); c.loop(ctx) }()
		}
	}
	w.log.Info().Int("networks", len(w.nets)).Msg("IRC worker started")
	<-ctx.Done()
	for _, n := range w.nets {
		n.queue.FailAll(errStopping, true)
	}
	chanWG.Wait()
	w.stopBackground()
	stopNets()
	netWG.Wait()
	w.log.Info().Msg("IRC worker stopped")
	return nil
}

// goBackground runs f in a goroutine tied to the worker's lifetime: its ctx
// ends when Run stops, and Run waits for it. After Run it does nothing.
func (w *Worker) goBackground(f func(ctx context.Context)) {
	w.bgMu.Lock()
	defer w.bgMu.Unlock()
	if w.bgStopped {
		return
	}
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		f(w.bgCtx)
	}()
}

// stopBackground cancels the background work and waits for it.
func (w *Worker) stopBackground() {
	w.bgMu.Lock()
	w.bgStopped = true
	w.bgMu.Unlock()
	w.bgStop()
	w.bg.Wait()
}

// Ready reports whether the worker is doing its job (for /readyz): every
// network is registered, and the consumer of every channel this replica
// posts to is running, not stalled, not behind the stream's retention
// (pipeline.Runner.Ready). A replica that holds no lease (a standby) is
// ready while it is connected.
func (w *Worker) Ready() error {
	var down []string
	var errs []error
	for _, n := range w.nets {
		n.mu.Lock()
		if !n.connected {
			down = append(down, n.cfg.Name)
		}
		n.mu.Unlock()
		for _, c := range n.chans {
			if c.runner == nil || !c.holding.Load() {
				continue
			}
			if err := c.runner.Ready(); err != nil {
				errs = append(errs, fmt.Errorf("channel %s on %s: %w", c.name, n.cfg.Name, err))
			}
		}
	}
	if len(down) > 0 {
		errs = append([]error{fmt.Errorf("not connected to IRC network(s) %s", strings.Join(down, ", "))}, errs...)
	}
	return errors.Join(errs...)
}

// firstStart is when a channel consumer that does not exist yet starts: the
// alerts of the last max_alert_age (an hour when max_alert_age is off), so
// that alerts published before the worker first started are posted, while a
// newly configured channel does not replay days of alerts. The idempotency
// keys keep an alert already posted from a second line.
func (w *Worker) firstStart() time.Time {
	window := w.cfg.MaxAlertAge
	if window <= 0 {
		window = firstStartWindow
	}
	return w.now().Add(-window)
}

// firstStartWindow bounds a new channel's first alerts when max_alert_age
// is off.
const firstStartWindow = time.Hour
