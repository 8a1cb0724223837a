package actions

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/lrstanley/girc"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// IRCOption tweaks the worker beyond its configuration.
type IRCOption func(*IRCWorker) error

// ErrInvalidOption is wrapped by option errors.
var ErrInvalidOption = errors.New("invalid option")

// WithFlood sets the token bucket of every network: rate lines per second
// with a burst of burst lines.
func WithFlood(rate float64, burst int) IRCOption {
	return func(w *IRCWorker) error {
		if rate <= 0 || burst < 1 {
			return fmt.Errorf("%w: WithFlood(%v, %d): rate and burst must be positive", ErrInvalidOption, rate, burst)
		}
		for i := range w.cfg.Networks {
			w.cfg.Networks[i].Flood.Rate, w.cfg.Networks[i].Flood.Burst = rate, burst
		}
		return nil
	}
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) IRCOption {
	return func(w *IRCWorker) error {
		if now == nil {
			return fmt.Errorf("%w: WithClock(nil)", ErrInvalidOption)
		}
		w.now = now
		return nil
	}
}

// barrierTimeout bounds the wait for the PONG that confirms a line.
const barrierTimeout = 15 * time.Second

// IRCWorker posts alerts from ALERTS to IRC channels (docs/IRC.md).
type IRCWorker struct {
	cfg  IRCConfig
	js   jetstream.JetStream
	log  zerolog.Logger
	now  func() time.Time
	m    *ircMetrics
	nets []*ircNetwork

	kv    jetstream.KeyValue // set by Run
	mutes *muteStore
}

type ircMetrics struct {
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
}

func newIRCMetrics(reg prometheus.Registerer) (*ircMetrics, error) {
	m := &ircMetrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_lines_sent_total",
			Help: "IRC lines confirmed by the server, by kind (alert, digest, control)."}, []string{"network", "kind"}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_irc_alerts_folded_total",
			Help: "Alerts counted in a digest line instead of their own line."}, []string{"network"}),
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
			m.connected, m.leaseHeld, m.queue, m.latency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering IRC metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NewIRCWorker validates cfg, resolves its secrets and builds the worker.
// Metrics register on reg (nil: none).
func NewIRCWorker(js jetstream.JetStream, cfg IRCConfig, reg prometheus.Registerer, log zerolog.Logger, opts ...IRCOption) (*IRCWorker, error) {
	cfg.Networks = append([]IRCNetworkConfig(nil), cfg.Networks...)
	cfg.applyDefaults()
	w := &IRCWorker{cfg: cfg, js: js, log: log.With().Str("stage", "irc").Str("replica", cfg.ReplicaID).Logger(), now: time.Now}
	for _, o := range opts {
		if err := o(w); err != nil {
			return nil, err
		}
	}
	if err := w.cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newIRCMetrics(reg)
	if err != nil {
		return nil, err
	}
	w.m = m
	for _, nc := range w.cfg.Networks {
		n, err := newIRCNetwork(w, nc, reg)
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
// another replica takes over at once, and the connections quit.
func (w *IRCWorker) Run(ctx context.Context) error {
	kv, err := w.js.KeyValue(ctx, pipeline.BucketActions)
	if err != nil {
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
	stopNets()
	netWG.Wait()
	w.log.Info().Msg("IRC worker stopped")
	return nil
}

// Ready reports an error while a network is not registered (for /readyz).
func (w *IRCWorker) Ready() error {
	var down []string
	for _, n := range w.nets {
		n.mu.Lock()
		if !n.connected {
			down = append(down, n.cfg.Name)
		}
		n.mu.Unlock()
	}
	if len(down) > 0 {
		return fmt.Errorf("not connected to IRC network(s) %s", strings.Join(down, ", "))
	}
	return nil
}

// ircNetwork is one connection with its flood queue and channels.
type ircNetwork struct {
	w      *IRCWorker
	cfg    IRCNetworkConfig
	log    zerolog.Logger
	client *girc.Client
	queue  *floodQueue
	bucket *tokenBucket
	chans  []*ircChannel
	ctrl   *ircChannel // the control channel (lease only, no consumer)

	mu        sync.Mutex
	connected bool
	joined    map[string]bool // lower-case channel names
	changed   chan struct{}   // closed and replaced on every state change
	disc      chan struct{}   // closed when the current connection ends
	pongs     map[string]chan struct{}
	seq       uint64
	nickTry   string // last nick tried after a collision, before registration

	sent, digests, folded, delayed atomic.Int64
}

func newIRCNetwork(w *IRCWorker, cfg IRCNetworkConfig, reg prometheus.Registerer) (*ircNetwork, error) {
	n := &ircNetwork{w: w, cfg: cfg, log: w.log.With().Str("network", cfg.Name).Logger(),
		queue: newFloodQueue(cfg.Flood), bucket: newTokenBucket(cfg.Flood.Rate, cfg.Flood.Burst, w.now()),
		joined: map[string]bool{}, changed: make(chan struct{}), disc: make(chan struct{}), pongs: map[string]chan struct{}{}}
	close(n.disc)
	gc := girc.Config{
		Server: cfg.Host, Port: cfg.Port, Nick: cfg.Nick, User: cfg.User, Name: cfg.RealName,
		SSL: cfg.TLS, AllowFlood: true, DisableAutoWHOOnJoin: true, DisableAutoMODEOnJoin: true,
		Version: "rcwatch", RecoverFunc: girc.DefaultRecoverHandler, DisableSTS: true,
	}
	if cfg.TLS {
		gc.TLSConfig = &tls.Config{ServerName: cfg.Host, InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in for test networks
	}
	if cfg.ServerPassword.IsSet() {
		p, err := cfg.ServerPassword.Resolve()
		if err != nil {
			return nil, fmt.Errorf("network %s: server password: %w", cfg.Name, err)
		}
		gc.ServerPass = p
	}
	if cfg.SASLUser != "" {
		p, err := cfg.SASLPassword.Resolve()
		if err != nil {
			return nil, fmt.Errorf("network %s: SASL password: %w", cfg.Name, err)
		}
		gc.SASL = &girc.SASLPlain{User: cfg.SASLUser, Pass: p}
	}
	client := girc.New(gc)
	client.Config.HandleNickCollide = func(old string) string { return n.nextNick(old) }
	n.client = client
	client.Handlers.Add(girc.RPL_WELCOME, n.onWelcome)
	client.Handlers.Add(girc.JOIN, n.onJoin)
	client.Handlers.Add(girc.PART, func(_ *girc.Client, e girc.Event) { n.onLeave(e, false) })
	client.Handlers.Add(girc.KICK, func(_ *girc.Client, e girc.Event) { n.onLeave(e, true) })
	client.Handlers.Add(girc.DISCONNECTED, n.onDisconnect)
	client.Handlers.Add(girc.PONG, n.onPong)
	client.Handlers.Add(girc.PRIVMSG, n.onPrivmsg)
	for _, cc := range cfg.Channels {
		c, err := newIRCChannel(n, cc, reg)
		if err != nil {
			return nil, err
		}
		n.chans = append(n.chans, c)
	}
	if cfg.Control != nil {
		n.ctrl = &ircChannel{net: n, name: cfg.Control.Channel, log: n.log.With().Str("channel", cfg.Control.Channel).Logger()}
		n.chans = append(n.chans, n.ctrl)
	}
	return n, nil
}

// attach gives the channels their leases once the KV bucket is open.
func (n *ircNetwork) attach(kv jetstream.KeyValue) {
	for _, c := range n.chans {
		c.lease = newLease(n.w.js, kv, leaseKey(n.cfg.Name, c.name), n.w.cfg.ReplicaID, n.w.cfg.LeaseTTL, n.w.now)
	}
}

// nextNick picks the nick after a collision: nick_, nick__, … while it fits
// NICKLEN, then the configured nick cut short plus three random digits.
// Before registration girc reports the configured nick as "old" for every
// collision, so the last nick tried is remembered here.
func (n *ircNetwork) nextNick(old string) string {
	maxLen := 9
	if v, ok := n.client.GetServerOptionInt("NICKLEN"); ok && v > 0 {
		maxLen = v
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nickTry != "" && !n.connected {
		old = n.nickTry
	}
	next := old + "_"
	if len(next) > maxLen {
		base := n.cfg.Nick
		if len(base) > maxLen-3 {
			base = base[:max(maxLen-3, 1)]
		}
		next = base + fmt.Sprintf("%03d", rand.IntN(1000)) //nolint:gosec // not a secret
	}
	n.nickTry = next
	return next
}

func (n *ircNetwork) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *ircNetwork) onWelcome(c *girc.Client, e girc.Event) {
	nick := c.GetNick()
	if len(e.Params) > 0 {
		nick = e.Params[0]
	}
	n.mu.Lock()
	n.connected = true
	n.nickTry = ""
	n.disc = make(chan struct{})
	n.notifyLocked()
	n.mu.Unlock()
	n.queue.Open()
	n.w.m.connected.WithLabelValues(n.cfg.Name).Set(1)
	n.log.Info().Str("nick", nick).Msg("IRC registered; joining channels")
	for _, ch := range n.chans {
		c.Cmd.Join(ch.name)
	}
}

func (n *ircNetwork) onJoin(c *girc.Client, e girc.Event) {
	if e.Source == nil || len(e.Params) == 0 || !strings.EqualFold(e.Source.Name, c.GetNick()) {
		return
	}
	n.mu.Lock()
	n.joined[strings.ToLower(e.Params[0])] = true
	n.notifyLocked()
	n.mu.Unlock()
	n.log.Info().Str("channel", e.Params[0]).Msg("joined")
}

func (n *ircNetwork) onLeave(e girc.Event, kicked bool) {
	if len(e.Params) == 0 {
		return
	}
	who := ""
	if kicked && len(e.Params) > 1 {
		who = e.Params[1]
	} else if e.Source != nil {
		who = e.Source.Name
	}
	if !strings.EqualFold(who, n.client.GetNick()) {
		return
	}
	ch := e.Params[0]
	n.mu.Lock()
	delete(n.joined, strings.ToLower(ch))
	n.notifyLocked()
	n.mu.Unlock()
	n.log.Warn().Str("channel", ch).Bool("kicked", kicked).Msg("left channel; rejoining in 5s")
	time.AfterFunc(5*time.Second, func() {
		if n.client.IsConnected() {
			n.client.Cmd.Join(ch)
		}
	})
}

func (n *ircNetwork) onDisconnect(_ *girc.Client, _ girc.Event) {
	n.mu.Lock()
	wasConnected := n.connected
	n.connected = false
	n.nickTry = ""
	clear(n.joined)
	select {
	case <-n.disc:
	default:
		close(n.disc)
	}
	n.notifyLocked()
	n.mu.Unlock()
	n.queue.FailAll(errNotConnected, true)
	n.w.m.connected.WithLabelValues(n.cfg.Name).Set(0)
	if wasConnected {
		n.log.Warn().Msg("IRC connection lost")
	}
}

func (n *ircNetwork) onPong(_ *girc.Client, e girc.Event) {
	tok := e.Last()
	n.mu.Lock()
	ch, ok := n.pongs[tok]
	if ok {
		delete(n.pongs, tok)
		close(ch)
	}
	n.mu.Unlock()
}

// connectLoop keeps the connection up: reconnect with exponential backoff
// and jitter, reset after a connection that lasted a minute.
func (n *ircNetwork) connectLoop(ctx context.Context) {
	loopDone := make(chan struct{})
	defer close(loopDone)
	stop := context.AfterFunc(ctx, func() {
		n.client.Quit("rcwatch stopping")
		// A QUIT sent while (re)connecting is dropped: keep closing until
		// the loop has returned.
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-loopDone:
				return
			case <-t.C:
				n.client.Close()
			}
		}
	})
	defer stop()
	delay := n.cfg.ReconnectMin
	for ctx.Err() == nil {
		start := time.Now()
		n.log.Info().Str("host", n.cfg.Host).Int("port", n.cfg.Port).Bool("tls", n.cfg.TLS).Msg("connecting to IRC")
		err := n.client.Connect()
		n.onDisconnect(n.client, girc.Event{})
		if ctx.Err() != nil {
			return
		}
		n.w.m.reconnects.WithLabelValues(n.cfg.Name).Inc()
		if time.Since(start) > time.Minute {
			delay = n.cfg.ReconnectMin
		}
		wait := delay/2 + rand.N(delay/2+1) //nolint:gosec // jitter
		n.log.Warn().Err(err).Dur("retry_in", wait).Msg("IRC connection ended; reconnecting")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(delay*2, n.cfg.ReconnectMax)
	}
}

// state returns whether channel is joined and the change signal.
func (n *ircNetwork) state(channel string) (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.connected && n.joined[strings.ToLower(channel)], n.changed
}

// sendLoop takes lines from the queue as the token bucket allows, writes
// each and waits for the server to confirm it.
func (n *ircNetwork) sendLoop(ctx context.Context) {
	defer n.queue.FailAll(errStopping, true)
	for {
		n.w.m.queue.WithLabelValues(n.cfg.Name).Set(float64(n.queue.Len()))
		if n.queue.Len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-n.queue.wake:
			}
			continue
		}
		ok, wait := n.bucket.Take(n.w.now())
		if !ok {
			n.queue.markHeadDelayed()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		it := n.queue.Pop()
		if it == nil {
			n.bucket.tokens = min(n.bucket.burst, n.bucket.tokens+1)
			continue
		}
		n.send(it)
	}
}

func (n *ircNetwork) channelByName(name string) *ircChannel {
	for _, c := range n.chans {
		if strings.EqualFold(c.name, name) {
			return c
		}
	}
	return nil
}

// send writes one line and finishes its alerts with the outcome.
func (n *ircNetwork) send(it *outItem) {
	now := n.w.now()
	c := n.channelByName(it.channel)
	if c == nil || c.lease == nil || !c.lease.Valid(now) {
		n.bucket.tokens = min(n.bucket.burst, n.bucket.tokens+1)
		it.finish(outcome{err: errLeaseLost})
		return
	}
	text := n.render(it, c)
	err := n.writeLine(it.channel, text)
	it.finish(outcome{sentAt: n.w.now(), err: err})
	if err != nil {
		n.log.Warn().Err(err).Str("channel", it.channel).Str("kind", it.kind.String()).Msg("line not confirmed; its alerts will be redelivered")
		return
	}
	n.w.m.lines.WithLabelValues(n.cfg.Name, it.kind.String()).Inc()
	n.sent.Add(1)
	switch it.kind {
	case itemDigest:
		n.digests.Add(1)
		n.folded.Add(int64(len(it.folded)))
		n.w.m.folded.WithLabelValues(n.cfg.Name).Add(float64(len(it.folded)))
	case itemAlert:
		if it.delayed {
			n.delayed.Add(1)
			n.w.m.delayed.WithLabelValues(n.cfg.Name).Inc()
		}
	}
}

// textBudget is the byte budget of a message to channel with the current
// nick: the 512-byte line limit with the relayed prefix, and girc's own
// split threshold so that a line is never split in two.
func (n *ircNetwork) textBudget(channel string) int {
	b := TextBudget(n.client.GetNick(), "~"+n.cfg.User, n.cfg.HostLen, channel)
	split := n.client.MaxEventLength() - len("PRIVMSG ") - len(channel) - len(" :") - 1
	return min(b, split)
}

func (n *ircNetwork) render(it *outItem, c *ircChannel) string {
	opts := FormatOptions{Plain: c.cfg.Plain, ShowWiki: c.cfg.ShowWiki, MaxBytes: n.textBudget(it.channel)}
	switch it.kind {
	case itemAlert:
		return FormatAlert(it.single.alert, opts)
	case itemDigest:
		return FormatDigest(it.dkind, it.dkey, len(it.folded), it.latest(), opts)
	}
	return FormatControl(it.text, opts.MaxBytes)
}

// writeLine sends a PRIVMSG followed by a PING with a unique token, and
// returns once the PONG arrives: the server processes a client's commands in
// order, so the PONG proves the line was received and relayed.
func (n *ircNetwork) writeLine(channel, text string) error {
	n.mu.Lock()
	if !n.connected {
		n.mu.Unlock()
		return errNotConnected
	}
	n.seq++
	tok := "rcw" + strconv.FormatUint(n.seq, 10)
	done := make(chan struct{})
	n.pongs[tok] = done
	disc := n.disc
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pongs, tok)
		n.mu.Unlock()
	}()
	n.client.Cmd.Message(channel, text)
	n.client.Cmd.Ping(tok)
	t := time.NewTimer(barrierTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-disc:
		return errNotConnected
	case <-t.C:
		return fmt.Errorf("no PONG %v after a line to %s", barrierTimeout, channel)
	}
}

// onPrivmsg handles control commands in the control channel; only the
// replica holding the control channel's lease answers.
func (n *ircNetwork) onPrivmsg(_ *girc.Client, e girc.Event) {
	ctl := n.cfg.Control
	if ctl == nil || e.Source == nil || len(e.Params) < 2 || !strings.EqualFold(e.Params[0], ctl.Channel) {
		return
	}
	if n.ctrl.lease == nil || !n.ctrl.lease.Valid(n.w.now()) {
		return
	}
	cmd, ok, err := parseControl(e.Last(), n.w.cfg.MaxMute)
	if !ok {
		return
	}
	if !trusted(ctl.Trusted, e.Source.Name, e.Source.String()) {
		n.log.Info().Str("nick", e.Source.Name).Msg("control command from an untrusted nick ignored")
		return
	}
	go n.control(e.Source.Name, cmd, err)
}

func (n *ircNetwork) control(nick string, cmd controlCommand, perr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply := func(s string) { n.queue.AddControl(n.cfg.Control.Channel, nick+": "+s) }
	if perr != nil {
		reply(perr.Error())
		return
	}
	now := n.w.now()
	switch cmd.name {
	case "status":
		reply(n.w.status(ctx, now))
	case "mute":
		m, err := n.w.mutes.Mute(ctx, cmd.rule, cmd.dur, nick, now)
		if err != nil {
			n.log.Error().Err(err).Msg("!mute failed")
			reply("mute failed: " + err.Error())
			return
		}
		n.log.Info().Str("rule", cmd.rule).Time("until", m.Until).Str("by", nick).Msg("rule muted")
		reply(fmt.Sprintf("muted rule %s until %s (%v)", cmd.rule, m.Until.Format(time.RFC3339), cmd.dur))
	case "unmute":
		was, err := n.w.mutes.Unmute(ctx, cmd.rule, now)
		if err != nil {
			reply("unmute failed: " + err.Error())
			return
		}
		n.log.Info().Str("rule", cmd.rule).Str("by", nick).Msg("rule unmuted")
		if was {
			reply("unmuted rule " + cmd.rule)
		} else {
			reply("rule " + cmd.rule + " was not muted")
		}
	}
}

// status is the !status reply.
func (w *IRCWorker) status(ctx context.Context, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "replica %s:", w.cfg.ReplicaID)
	for _, n := range w.nets {
		n.mu.Lock()
		conn := n.connected
		n.mu.Unlock()
		var held []string
		for _, c := range n.chans {
			if c.lease != nil && c.lease.Valid(now) && c != n.ctrl {
				held = append(held, c.name)
			}
		}
		state := "down"
		if conn {
			state = "up"
		}
		fmt.Fprintf(&b, " %s %s, posting to %d/%d channels [%s], queue %d; sent %d (digests %d), folded %d, delayed %d;",
			n.cfg.Name, state, len(held), len(n.cfg.Channels), strings.Join(held, " "), n.queue.Len(),
			n.sent.Load(), n.digests.Load(), n.folded.Load(), n.delayed.Load())
	}
	mutes, err := w.mutes.List(ctx, now)
	switch {
	case err != nil:
		b.WriteString(" mutes: unknown (" + err.Error() + ")")
	case len(mutes) == 0:
		b.WriteString(" no mutes")
	default:
		b.WriteString(" muted:")
		for _, m := range mutes {
			fmt.Fprintf(&b, " %s until %s", m.Rule, m.Until.Format("15:04Z"))
		}
	}
	return b.String()
}

// ircChannel is one alert channel: a lease, and a consumer that runs only
// while this replica holds the lease. The control channel has a lease and
// no consumer.
type ircChannel struct {
	net    *ircNetwork
	name   string
	cfg    IRCChannelConfig
	log    zerolog.Logger
	runner *pipeline.Runner
	lease  *lease
}

func newIRCChannel(n *ircNetwork, cfg IRCChannelConfig, reg prometheus.Registerer) (*ircChannel, error) {
	c := &ircChannel{net: n, name: cfg.Name, cfg: cfg, log: n.log.With().Str("channel", cfg.Name).Logger()}
	durable := "irc-" + keyToken(n.cfg.Name) + "-" + keyToken(cfg.Name)
	rc := pipeline.RunnerConfig{
		Stage: durable, Stream: pipeline.StreamAlerts, Durable: durable,
		// Handlers wait for their line; enough of them must wait at once for
		// a burst to reach the backlog and fold.
		Workers: 256, MaxAckPending: 1024, AckWait: n.w.cfg.AckWait,
		// Alerts that cannot be posted now ask for a redelivery (Retry), which
		// must never run out: no delivery limit.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if r := cfg.Route; !r.fromActions() && len(r.Wikis) > 0 {
		for _, wiki := range r.Wikis {
			rc.FilterSubjects = append(rc.FilterSubjects, "alert."+pipeline.SubjectToken(wiki)+".>")
		}
	}
	r, err := pipeline.NewRunner(pipeline.Deps{JS: n.w.js, Reg: reg, Log: n.w.log}, rc, c.handle)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", cfg.Name, err)
	}
	c.runner = r
	return c, nil
}

// loop waits until the channel is joined, competes for its lease, and
// consumes while holding it.
func (c *ircChannel) loop(ctx context.Context) {
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
			case <-time.After(ttl/4 + rand.N(ttl/4+1)): //nolint:gosec // jitter
			}
			continue
		}
		c.hold(ctx)
	}
}

// hold runs the consumer while the lease is renewed and the channel joined.
func (c *ircChannel) hold(ctx context.Context) {
	n := c.net
	ttl := n.w.cfg.LeaseTTL
	n.w.m.leaseHeld.WithLabelValues(n.cfg.Name, c.name).Set(1)
	c.log.Info().Msg("lease acquired; posting")
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
// idempotency checks, then the flood queue, then the idempotency key. It
// returns nil (ack) only after the alert's line — or the digest that counts
// it — was confirmed by the server, or when the alert is not for this
// channel, muted, stale or already posted.
func (c *ircChannel) handle(ctx context.Context, msg jetstream.Msg) error {
	w := c.net.w
	var a event.Alert
	if err := json.Unmarshal(msg.Data(), &a); err != nil {
		return pipeline.Invalid("bad_alert", fmt.Errorf("decoding alert: %w", err))
	}
	if a.ID == "" {
		return pipeline.Invalid("bad_alert", errors.New("alert without id"))
	}
	if !c.cfg.Route.Matches(&a, c.net.cfg.Name, c.name) {
		return nil
	}
	now := w.now()
	log := c.log.With().Str("alert", a.ID).Logger()
	if w.cfg.MaxAlertAge > 0 && !a.DetectedAt.IsZero() && now.Sub(a.DetectedAt) > w.cfg.MaxAlertAge {
		w.m.dropped.WithLabelValues("stale").Inc()
		log.Info().Time("detected_at", a.DetectedAt).Msg("alert too old for IRC; not posted")
		return nil
	}
	if m, err := w.mutes.Muted(ctx, a.Rule.ID, now); err != nil {
		return err
	} else if m != nil {
		w.m.dropped.WithLabelValues("mute").Inc()
		log.Debug().Str("rule", a.Rule.ID).Msg("rule muted; not posted")
		return nil
	}
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
	p := &pending{alert: &a, channel: c.name, enqueued: now, done: make(chan outcome, 1)}
	if _, err := c.net.queue.Add(p); err != nil {
		return pipeline.Retry(err, time.Second)
	}
	o := c.wait(p, msg)
	if o.err != nil {
		return pipeline.Retry(o.err, time.Second)
	}
	val := []byte(`{"at":"` + o.sentAt.UTC().Format(time.RFC3339Nano) + `","folded":` + strconv.FormatBool(o.folded) + `}`)
	if err := w.storeSent(ctx, key, val); err != nil {
		log.Warn().Err(err).Msg("line posted but its idempotency key was not stored; a redelivery could post it again")
	}
	if !a.DetectedAt.IsZero() {
		w.m.latency.Observe(o.sentAt.Sub(a.DetectedAt).Seconds())
	}
	return nil
}

// wait waits for the alert's outcome, telling JetStream the message is in
// progress so AckWait does not expire while it waits for the flood limit.
func (c *ircChannel) wait(p *pending, msg jetstream.Msg) outcome {
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
func (w *IRCWorker) storeSent(ctx context.Context, key string, val []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	wait := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := w.kv.Create(cctx, key, val, jetstream.KeyTTL(w.cfg.IdempotencyTTL))
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
