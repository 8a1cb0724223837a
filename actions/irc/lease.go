package irc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/pipeline"
)

// lease is one replica's claim to post in one channel: a key in the actions
// KV bucket with a per-key TTL, created only if absent and renewed with a
// compare-and-set publish that also resets the TTL. A dead holder's key
// expires after TTL, and another replica creates it.
//
// The holder trusts its lease until start+TTL−TTL/5, where start is taken
// before the create or renew request was sent: the server's expiry is
// counted from when it stored the message, which is later, so the holder
// stops posting before anyone else can start.
type lease struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	key   string
	owner string
	ttl   time.Duration
	now   func() time.Time

	mu         sync.Mutex
	rev        uint64
	validUntil time.Time
}

// leaseValue is what a lease key holds (read by operators and tests).
type leaseValue struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
}

func newLease(js jetstream.JetStream, kv jetstream.KeyValue, key, owner string, ttl time.Duration, now func() time.Time) *lease {
	return &lease{js: js, kv: kv, key: key, owner: owner, ttl: ttl, now: now}
}

func (l *lease) margin() time.Duration { return l.ttl / 5 }

// TryAcquire creates the lease key; false when another replica holds it.
func (l *lease) TryAcquire(ctx context.Context) (bool, error) {
	start := l.now()
	val, _ := json.Marshal(leaseValue{Owner: l.owner, Since: start.UTC()})
	rev, err := l.kv.Create(ctx, l.key, val, jetstream.KeyTTL(l.ttl))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating lease %s: %w", l.key, err)
	}
	l.mu.Lock()
	l.rev, l.validUntil = rev, start.Add(l.ttl-l.margin())
	l.mu.Unlock()
	return true, nil
}

// Renew extends the lease; an error means it is lost (or may be).
func (l *lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	if rev == 0 {
		return errLeaseLost
	}
	start := l.now()
	val, _ := json.Marshal(leaseValue{Owner: l.owner, Since: start.UTC()})
	newRev, err := pipeline.KVPutTTL(ctx, l.js, l.kv, l.key, val, l.ttl, rev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, pipeline.ErrRevisionMismatch) {
			l.rev, l.validUntil = 0, time.Time{}
			return fmt.Errorf("%w: %s", errLeaseLost, l.key)
		}
		return fmt.Errorf("renewing lease %s: %w", l.key, err)
	}
	l.rev, l.validUntil = newRev, start.Add(l.ttl-l.margin())
	return nil
}

// Valid reports whether the holder may still post at now.
func (l *lease) Valid(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0 && now.Before(l.validUntil)
}

// Release deletes the key if this replica still holds it, so another
// replica takes over at once.
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	rev := l.rev
	l.rev, l.validUntil = 0, time.Time{}
	l.mu.Unlock()
	if rev == 0 {
		return nil
	}
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.key, err)
	}
	return nil
}

// leaseKey is irc.lease.<network>.<channel>.
func leaseKey(network, channel string) string {
	return "irc.lease." + actions.KeyToken(network) + "." + actions.KeyToken(channel)
}

// sentKey is the idempotency key of one alert in one channel.
func sentKey(network, channel, alertID string) string {
	h := sha256.Sum256([]byte(strings.ToLower(network) + "\x00" + strings.ToLower(channel) + "\x00" + alertID))
	return "irc.sent." + hex.EncodeToString(h[:16])
}

// LeaseOwner returns the replica holding channel's lease on network, or ""
// (for !status, operators and tests).
func LeaseOwner(ctx context.Context, kv jetstream.KeyValue, network, channel string) (string, error) {
	e, err := kv.Get(ctx, leaseKey(network, channel))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading lease of %s %s: %w", network, channel, err)
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return "", fmt.Errorf("decoding lease of %s %s: %w", network, channel, err)
	}
	return v.Owner, nil
}
