package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// muteStore keeps rule mutes in the actions KV bucket, one key per rule with
// a per-key TTL equal to the mute's duration: they expire by themselves and
// every replica sees them.
type muteStore struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// Mute is one muted rule.
type Mute struct {
	Rule  string    `json:"rule"`
	Until time.Time `json:"until"`
	By    string    `json:"by"`
}

func muteKey(rule string) string { return "irc.mute." + keyToken(rule) }

// Mute silences rule until now+d (replacing any earlier mute).
func (s *muteStore) Mute(ctx context.Context, rule string, d time.Duration, by string, now time.Time) (Mute, error) {
	m := Mute{Rule: rule, Until: now.Add(d).UTC(), By: by}
	val, _ := json.Marshal(m)
	if _, err := kvPublishTTL(ctx, s.js, s.kv, muteKey(rule), val, d, 0); err != nil {
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

// parseMuteDuration accepts Go durations plus d (days) and w (weeks).
func parseMuteDuration(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (examples: 30m, 2h, 1d)", s)
	}
	return d, nil
}

// trusted reports whether source ("nick!user@host") matches a trusted
// entry: a bare nick, or a mask with * and ? (case-insensitive).
func trusted(entries []string, nick, source string) bool {
	nick, source = strings.ToLower(nick), strings.ToLower(source)
	for _, e := range entries {
		e = strings.ToLower(e)
		if !strings.Contains(e, "!") {
			if e == nick {
				return true
			}
			continue
		}
		if ok, _ := path.Match(strings.ReplaceAll(e, "/", "\x00"), strings.ReplaceAll(source, "/", "\x00")); ok {
			return true
		}
	}
	return false
}

// controlCommand is a parsed control-channel command.
type controlCommand struct {
	name string // status, mute, unmute
	rule string
	dur  time.Duration
}

// parseControl parses "!status", "!mute <rule> <duration>", "!unmute
// <rule>". ok is false for lines that are not commands; err explains a
// malformed command.
func parseControl(text string, maxMute time.Duration) (controlCommand, bool, error) {
	f := strings.Fields(sanitize(text))
	if len(f) == 0 || !strings.HasPrefix(f[0], "!") {
		return controlCommand{}, false, nil
	}
	switch strings.ToLower(f[0]) {
	case "!status":
		return controlCommand{name: "status"}, true, nil
	case "!mute":
		if len(f) != 3 {
			return controlCommand{}, true, errors.New("usage: !mute <rule> <duration>")
		}
		d, err := parseMuteDuration(f[2])
		if err != nil {
			return controlCommand{}, true, err
		}
		if d < time.Second || d > maxMute {
			return controlCommand{}, true, fmt.Errorf("duration must be between 1s and %v", maxMute)
		}
		return controlCommand{name: "mute", rule: f[1], dur: d}, true, nil
	case "!unmute":
		if len(f) != 2 {
			return controlCommand{}, true, errors.New("usage: !unmute <rule>")
		}
		return controlCommand{name: "unmute", rule: f[1]}, true, nil
	}
	return controlCommand{}, false, nil
}
