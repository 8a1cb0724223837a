package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections.
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
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server (store %s) not ready after 30s", cfg.StoreDir)
	}
	return &Embedded{srv: srv}, nil
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
}

// Connect dials a NATS server (or cluster: comma-separated URLs). The
// connection reconnects forever; the caller closes or drains it.
func Connect(url, name string, log zerolog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url, clientOptions(name, log)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
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
		log.Warn().Err(err).Dur("retry_in", delay).Msg("JetStream not ready; retrying")
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
