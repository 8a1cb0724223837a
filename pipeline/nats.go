package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// EmbeddedConfig configures the in-process NATS server of `rcwatch run`.
type EmbeddedConfig struct {
	// StoreDir holds JetStream file storage (default ./data).
	StoreDir string
	// Host and Port to listen on for other processes; Port -1 picks a free
	// port, 0 means the in-process connection only (no listener).
	Host string
	Port int
	// Name of the server (stable across restarts, so its store is reused).
	Name string
}

// Embedded is a running in-process NATS server with JetStream.
type Embedded struct {
	srv  *server.Server
	lock *DataDirLock
}

// StartEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections. It locks StoreDir first (ErrDataDirInUse
// when another process has it) and checks the listen port is free, so each
// start-up failure names its cause.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		cfg.StoreDir = "./data"
	}
	if cfg.Name == "" {
		cfg.Name = "rcwatch"
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port < -1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("NATS port %d: want 0 (in-process only), -1 (any free port) or 1-65535", cfg.Port)
	}
	lock, err := LockDataDir(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	if cfg.Port > 0 {
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			lock.Unlock()
			return nil, fmt.Errorf("NATS port %d: cannot listen on %s: %w", cfg.Port, addr, err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.Port == 0,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		lock.Unlock()
		return nil, fmt.Errorf("embedded NATS server (store %s, port %d) not ready after 30s", cfg.StoreDir, cfg.Port)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		lock.Unlock()
		return nil, fmt.Errorf("embedded NATS server: JetStream could not start on %s (is it writable, with free space?)", cfg.StoreDir)
	}
	return &Embedded{srv: srv, lock: lock}, nil
}

// ClientURL is the URL other processes connect to ("" with no listener).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server exposes the server for tests that restart it.
func (e *Embedded) Server() *server.Server { return e.srv }

// Connect opens an in-process client connection.
func (e *Embedded) Connect(name string, log zerolog.Logger) (*nats.Conn, error) {
	return nats.Connect("", append(clientOptions(name, log), nats.InProcessServer(e.srv))...)
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Unlock()
}

// Connect dials a NATS server (or cluster: comma-separated URLs). The
// connection reconnects forever; the caller closes or drains it.
func Connect(url, name string, log zerolog.Logger) (*nats.Conn, error) {
	if err := checkURLs(url); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, clientOptions(name, log)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", RedactURL(url), err)
	}
	return nc, nil
}

func clientOptions(name string, log zerolog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("NATS disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS async error")
		}),
	}
}

// JetStream wraps a connection with a default API timeout.
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	return js, nil
}

// WaitJetStream retries Ensure until JetStream answers (a cluster needs a
// meta leader first) or ctx ends.
func WaitJetStream(ctx context.Context, js jetstream.JetStream, t Topology, log zerolog.Logger) error {
	delay := 100 * time.Millisecond
	for {
		err := Ensure(ctx, js, t)
		if err == nil {
			return nil
		}
		if isPermanent(err) {
			return err
		}
		if nc := js.Conn(); nc != nil && !nc.IsConnected() {
			// Name the server and why it cannot be reached, not only the timeout.
			servers := nc.Servers()
			ev := log.Warn().Str("nats", RedactURL(strings.Join(servers, ","))).Dur("retry_in", delay)
			if derr := dialAny(ctx, servers); derr != nil {
				ev = ev.AnErr("connect_error", derr)
			}
			ev.Err(err).Msg("NATS not reachable; retrying")
		} else {
			log.Warn().Err(err).Dur("retry_in", delay).Msg("JetStream not ready; retrying")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for JetStream: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func isPermanent(err error) bool {
	return errors.Is(err, ErrConfigDrift) || errors.Is(err, ErrInvalidLimits)
}

// FreePort returns a free TCP port on 127.0.0.1 (for tests and for the
// embedded server's listener when the caller asks for one).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return strconv.Atoi(p)
}

// checkURLs refuses a NATS URL list the client would retry forever without
// a chance: an unparsable URL or a scheme NATS does not speak.
func checkURLs(urls string) error {
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := neturl.Parse(u)
		if err != nil {
			return fmt.Errorf("NATS URL %q: %w", RedactURL(u), errors.Unwrap(err))
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("NATS URL %s: scheme %q, want nats://, tls://, ws:// or wss://", RedactURL(u), p.Scheme)
		}
		if p.Hostname() == "" {
			return fmt.Errorf("NATS URL %s: no host", RedactURL(u))
		}
		if port := p.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("NATS URL %s: port %q out of range", RedactURL(u), port)
			}
		}
	}
	return nil
}

// RedactURL hides the password or token of each URL in a NATS URL list.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		at := strings.LastIndex(u, "@")
		scheme := strings.Index(u, "://")
		if at < 0 || scheme < 0 || at < scheme {
			continue
		}
		userinfo := u[scheme+3 : at]
		if user, _, ok := strings.Cut(userinfo, ":"); ok {
			parts[i] = u[:scheme+3] + user + ":xxxxx" + u[at:]
		} else {
			parts[i] = u[:scheme+3] + "xxxxx" + u[at:]
		}
	}
	return strings.Join(parts, ",")
}

// dialAny tries a TCP connection to each server URL and returns the last
// dial error (nil when one answers): the cause a client's "not connected"
// hides, such as "connection refused" or "no such host".
func dialAny(ctx context.Context, urls []string) error {
	var last error
	for _, u := range urls {
		p, err := neturl.Parse(u)
		if err != nil {
			last = err
			continue
		}
		port := p.Port()
		if port == "" {
			port = "4222"
		}
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.Hostname(), port))
		if err == nil {
			c.Close()
			return nil
		}
		last = err
	}
	return last
}
