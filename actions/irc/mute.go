package irc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/pipeline"
)

// muteStore keeps rule mutes in the actions KV bucket, one key per rule with
// a per-key TTL equal to the mute's duration: they expire by themselves and
// every replica sees them.
type muteStore struct {
	js jetstream.JetStream
	kv jetstream.KeyValue

	mu    sync.Mutex
	cache map[string]cachedMute // MutedCached's answers
}

type cachedMute struct {
	m    *Mute
	read time.Time
}

// muteCacheTTL is how long MutedCached reuses an answer: a !mute takes up
// to this long to reach a channel folding its backlog.
const muteCacheTTL = time.Second

// MutedCached is Muted with answers reused for muteCacheTTL: a channel
// folding its backlog handles thousands of alerts a second, and one KV read
// each would starve the lease renewals on the same connection.
func (s *muteStore) MutedCached(ctx context.Context, rule string, now time.Time) (*Mute, error) {
	s.mu.Lock()
	c, ok := s.cache[rule]
	s.mu.Unlock()
	if ok && now.Sub(c.read) < muteCacheTTL && now.Sub(c.read) >= 0 {
		if c.m != nil && !now.Before(c.m.Until) {
			return nil, nil
		}
		return c.m, nil
	}
	m, err := s.Muted(ctx, rule, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.cache == nil || len(s.cache) > 10_000 {
		s.cache = map[string]cachedMute{} // bounded: rules are few
	}
	s.cache[rule] = cachedMute{m: m, read: now}
	s.mu.Unlock()
	return m, nil
}

// Mute is one muted rule.
type Mute struct {
	Rule  string    `json:"rule"`
	Until time.Time `json:"until"`
	By    string    `json:"by"`
}

func muteKey(rule string) string { return "irc.mute." + actions.KeyToken(rule) }

// Mute silences rule until now+d (replacing any earlier mute).
func (s *muteStore) Mute(ctx context.Context, rule string, d time.Duration, by string, now time.Time) (Mute, error) {
	m := Mute{Rule: rule, Until: now.Add(d).UTC(), By: by}
	val, _ := json.Marshal(m)
	if _, err := pipeline.KVPutTTL(ctx, s.js, s.kv, muteKey(rule), val, d, 0); err != nil {
		return Mute{}, fmt.Errorf("storing mute of %s: %w", rule, err)
	}
	return m, nil
}

// Unmute lifts a mute; false when the rule was not muted.
func (s *muteStore) Unmute(ctx context.Context, rule string, now time.Time) (bool, error) {
	m, err := s.Muted(ctx, rule, now)
	if err != nil {
		return false, err
	}
	if err := s.kv.Purge(ctx, muteKey(rule)); err != nil {
		return false, fmt.Errorf("deleting mute of %s: %w", rule, err)
	}
	return m != nil, nil
}

// Muted returns the mute in force for rule at now, or nil.
func (s *muteStore) Muted(ctx context.Context, rule string, now time.Time) (*Mute, error) {
	e, err := s.kv.Get(ctx, muteKey(rule))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading mute of %s: %w", rule, err)
	}
	var m Mute
	if err := json.Unmarshal(e.Value(), &m); err != nil || m.Rule != rule || !now.Before(m.Until) {
		return nil, nil //nolint:nilerr // an unreadable, colliding or expired record is no mute
	}
	return &m, nil
}

// List returns the mutes in force at now, by rule.
func (s *muteStore) List(ctx context.Context, now time.Time) ([]Mute, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, "irc.mute.>")
	if err != nil {
		return nil, fmt.Errorf("listing mutes: %w", err)
	}
	var out []Mute
	for k := range lister.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var m Mute
		if json.Unmarshal(e.Value(), &m) == nil && now.Before(m.Until) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule < out[j].Rule })
	return out, nil
}
