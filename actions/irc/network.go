package irc

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lrstanley/girc"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/pipeline"
)

// network is one connection with its flood queue and channels.
type network struct {
	w      *Worker
	cfg    NetworkConfig
	log    zerolog.Logger
	client *girc.Client
	queue  *floodQueue
	bucket *tokenBucket
	chans  []*channel
	ctrl   *channel // the control channel (lease only, no consumer)

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

func newNetwork(w *Worker, cfg NetworkConfig) (*network, error) {
	n := &network{w: w, cfg: cfg, log: w.log.With().Str("network", cfg.Name).Logger(),
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
		c, err := newChannel(n, cc)
		if err != nil {
			return nil, err
		}
		n.chans = append(n.chans, c)
	}
	if cfg.Control != nil {
		n.ctrl = &channel{net: n, name: cfg.Control.Channel, log: n.log.With().Str("channel", cfg.Control.Channel).Logger()}
		n.chans = append(n.chans, n.ctrl)
	}
	return n, nil
}

// attach gives the channels their leases once the KV bucket is open.
func (n *network) attach(kv jetstream.KeyValue) {
	for _, c := range n.chans {
		c.lease = newLease(n.w.js, kv, leaseKey(n.cfg.Name, c.name), n.w.cfg.ReplicaID, n.w.cfg.LeaseTTL, n.w.now)
	}
}

// nextNick picks the nick after a collision: nick_, nick__, … while it fits
// NICKLEN, then the configured nick cut short plus three random digits.
// Before registration girc reports the configured nick as "old" for every
// collision, so the last nick tried is remembered here.
func (n *network) nextNick(old string) string {
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

func (n *network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *network) onWelcome(c *girc.Client, e girc.Event) {
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

func (n *network) onJoin(c *girc.Client, e girc.Event) {
	if e.Source == nil || len(e.Params) == 0 || !strings.EqualFold(e.Source.Name, c.GetNick()) {
		return
	}
	n.mu.Lock()
	n.joined[strings.ToLower(e.Params[0])] = true
	n.notifyLocked()
	n.mu.Unlock()
	n.log.Info().Str("channel", e.Params[0]).Msg("joined")
}

func (n *network) onLeave(e girc.Event, kicked bool) {
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
	n.w.goBackground(func(ctx context.Context) {
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			if n.client.IsConnected() {
				n.client.Cmd.Join(ch)
			}
		}
	})
}

func (n *network) onDisconnect(_ *girc.Client, _ girc.Event) {
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

func (n *network) onPong(_ *girc.Client, e girc.Event) {
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
func (n *network) connectLoop(ctx context.Context) {
	// On cancel, quit; a QUIT sent while (re)connecting is dropped, so keep
	// closing the connection until the loop has returned. The closer is
	// waited for: nothing outlives connectLoop.
	loopDone := make(chan struct{})
	closerDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closerDone)
		n.client.Quit("rcwatch stopping")
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
	defer func() {
		close(loopDone)
		if !stop() {
			<-closerDone
		}
	}()
	delay := n.cfg.ReconnectMin
	for ctx.Err() == nil {
		start := n.w.now()
		n.log.Info().Str("host", n.cfg.Host).Int("port", n.cfg.Port).Bool("tls", n.cfg.TLS).Msg("connecting to IRC")
		err := n.client.Connect()
		n.onDisconnect(n.client, girc.Event{})
		if ctx.Err() != nil {
			return
		}
		n.w.m.reconnects.WithLabelValues(n.cfg.Name).Inc()
		if n.w.now().Sub(start) > time.Minute {
			delay = n.cfg.ReconnectMin
		}
		wait := pipeline.Jitter(delay)
		n.log.Warn().Err(err).Dur("retry_in", wait).Msg("IRC connection ended; reconnecting")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, n.cfg.ReconnectMax)
	}
}

// state returns whether channel is joined and the change signal.
func (n *network) state(channel string) (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.connected && n.joined[strings.ToLower(channel)], n.changed
}

func (n *network) channelByName(name string) *channel {
	for _, c := range n.chans {
		if strings.EqualFold(c.name, name) {
			return c
		}
	}
	return nil
}
