package feed

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is returned by New for a configuration that cannot work.
var ErrInvalidConfig = errors.New("invalid feed config")

// Config is the feed's configuration. Zero fields take the DefaultConfig value.
type Config struct {
	// Addr is the HTTP listen address Run serves on ("" : Run serves
	// nothing, and the caller mounts the Feed as an http.Handler).
	Addr string
	// AnyPortIfBusy makes Run listen on a free port of Addr's host when
	// Addr's port is taken (`rcwatch run` with the default address).
	AnyPortIfBusy bool
	// Backfill is how far back a new page or /api/alerts looks.
	Backfill time.Duration
	// MaxBackfill caps the alerts one connection receives at opening (the
	// newest are kept; a "gap" event says how many were left out).
	MaxBackfill int
	// Ring is how many recent alerts the feed keeps in memory to serve
	// backfills without reading the stream.
	Ring int
	// StreamBackfills caps the backfills reading ALERTS at once (those
	// older than the ring); more wait for a slot.
	StreamBackfills int
	// ClientBuffer is each SSE connection's queue; a connection whose
	// queue is full is dropped (and its browser resumes by Last-Event-ID).
	ClientBuffer int
	// MaxClients caps the open SSE connections (503 beyond).
	MaxClients int
	// Heartbeat is the SSE comment interval that keeps proxies and
	// dead-connection detection going.
	Heartbeat time.Duration
	// MaxOpen caps the open alerts tracked for retirement and the pages
	// whose last edit is remembered.
	MaxOpen int
	// ClaimTTL is how long a claim lives in KV.
	ClaimTTL time.Duration
	// MaxClaims caps the claims held in memory.
	MaxClaims int
	// ClaimRate and ClaimBurst are the per-client claim rate limit.
	ClaimRate  float64
	ClaimBurst int
	// MaxRateClients caps the per-client limiters kept (the oldest go).
	MaxRateClients int
	// RetireTypes are the recentchange types that retire an alert on the
	// same page (edit, new: categorize and log events are not read).
	RetireTypes []string
	// ClientIPHeader names the header a reverse proxy puts the client's
	// address in (X-Forwarded-For: its last address is used), for the
	// claim rate limit; "" uses the connection's peer address.
	ClientIPHeader string
	// Wikis restricts the recentchange events read for retirement (empty: all).
	Wikis []string
}

// DefaultConfig is the configuration of `rcwatch feed` and `rcwatch run`.
func DefaultConfig() Config {
	return Config{
		Backfill:        time.Hour,
		MaxBackfill:     2000,
		Ring:            20000,
		ClientBuffer:    512,
		StreamBackfills: 4,
		MaxClients:      2000,
		Heartbeat:       15 * time.Second,
		MaxOpen:         100000,
		ClaimTTL:        time.Hour,
		MaxClaims:       20000,
		ClaimRate:       1,
		ClaimBurst:      10,
		MaxRateClients:  10000,
		RetireTypes:     []string{"edit", "new"},
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.Backfill, d.Backfill)
	setDur(&c.Heartbeat, d.Heartbeat)
	setDur(&c.ClaimTTL, d.ClaimTTL)
	setInt(&c.MaxBackfill, d.MaxBackfill)
	setInt(&c.Ring, d.Ring)
	setInt(&c.ClientBuffer, d.ClientBuffer)
	setInt(&c.StreamBackfills, d.StreamBackfills)
	setInt(&c.MaxClients, d.MaxClients)
	setInt(&c.MaxOpen, d.MaxOpen)
	setInt(&c.MaxClaims, d.MaxClaims)
	setInt(&c.ClaimBurst, d.ClaimBurst)
	setInt(&c.MaxRateClients, d.MaxRateClients)
	if c.ClaimRate == 0 {
		c.ClaimRate = d.ClaimRate
	}
	if len(c.RetireTypes) == 0 {
		c.RetireTypes = d.RetireTypes
	}
	var errs []error
	for name, v := range map[string]int{"max backfill": c.MaxBackfill, "ring": c.Ring, "client buffer": c.ClientBuffer,
		"max clients": c.MaxClients, "max open": c.MaxOpen, "max claims": c.MaxClaims, "claim burst": c.ClaimBurst,
		"max rate clients": c.MaxRateClients, "stream backfills": c.StreamBackfills} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s %d is negative", ErrInvalidConfig, name, v))
		}
	}
	for name, v := range map[string]time.Duration{"backfill": c.Backfill, "heartbeat": c.Heartbeat, "claim TTL": c.ClaimTTL} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s %v is negative", ErrInvalidConfig, name, v))
		}
	}
	if c.ClaimTTL > 0 && c.ClaimTTL < time.Second {
		errs = append(errs, fmt.Errorf("%w: claim TTL %v is under the server's 1s minimum", ErrInvalidConfig, c.ClaimTTL))
	}
	if c.ClaimRate < 0 {
		errs = append(errs, fmt.Errorf("%w: claim rate %v is negative", ErrInvalidConfig, c.ClaimRate))
	}
	return c, errors.Join(errs...)
}
