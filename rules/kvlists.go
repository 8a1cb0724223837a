package rules

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// List entries can also live in the KV bucket pipeline.BucketRules, shared
// by every replica and changed without a reload: key
// list.<name>.<base64url(value)>, value a JSON kvEntry, with an optional
// per-key TTL (the entry disappears when it expires). They extend the list
// of the same name that a rule file declares (an empty `lists: {name: []}`
// is enough), so in_list and list_contains see them at once.

const kvListPrefix = "list."

type kvEntry struct {
	Value   string    `json:"value"`
	Expires time.Time `json:"expires"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
}

// ListEntry is one entry of a KV-backed list.
type ListEntry struct {
	List    string    `json:"list"`
	Value   string    `json:"value"`
	Expires time.Time `json:"expires"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
}

// kvLists is the in-memory copy of the KV-backed list entries.
type kvLists struct {
	mu sync.RWMutex
	m  map[string]map[string]kvEntry // list → value → entry
}

func (k *kvLists) set(list string, e kvEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]map[string]kvEntry{}
	}
	if k.m[list] == nil {
		k.m[list] = map[string]kvEntry{}
	}
	k.m[list][e.Value] = e
}

func (k *kvLists) remove(list, value string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m[list], value)
}

func (k *kvLists) contains(list, s string, now time.Time) bool {
	if k == nil {
		return false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.m[list][s]
	return ok && (e.Expires.IsZero() || now.Before(e.Expires))
}

// match: text contains an unexpired entry as a whole word, case-insensitively.
func (k *kvLists) match(list, text string, now time.Time) bool {
	if k == nil || text == "" {
		return false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	entries := k.m[list]
	if len(entries) == 0 {
		return false
	}
	lower := strings.ToLower(text)
	for v, e := range entries {
		if (e.Expires.IsZero() || now.Before(e.Expires)) && containsWord(lower, strings.ToLower(v)) {
			return true
		}
	}
	return false
}

func containsWord(text, w string) bool {
	if w == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(text[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !isWordByte(text[start-1])) && (end == len(text) || !isWordByte(text[end])) {
			return true
		}
		i = start + 1
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func kvListKey(list, value string) (string, error) {
	if !ruleIDPattern.MatchString(list) {
		return "", fmt.Errorf("list name %q: use letters, digits, '_' and '-'", list)
	}
	if value == "" {
		return "", errors.New("empty list entry")
	}
	return kvListPrefix + list + "." + base64.RawURLEncoding.EncodeToString([]byte(value)), nil
}

func parseKVListKey(key string) (list, value string, ok bool) {
	rest, ok := strings.CutPrefix(key, kvListPrefix)
	if !ok {
		return "", "", false
	}
	list, enc, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", false
	}
	v, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return list, string(v), true
}

// AddListEntry stores an entry of a KV-backed list; ttl > 0 makes it
// expire (the key is removed by the server, and the entry stops matching).
func AddListEntry(ctx context.Context, kv jetstream.KeyValue, e ListEntry, ttl time.Duration, now time.Time) error {
	key, err := kvListKey(e.List, e.Value)
	if err != nil {
		return err
	}
	ke := kvEntry{Value: e.Value, Reason: e.Reason, By: e.By, Expires: e.Expires}
	if ttl > 0 {
		ke.Expires = now.Add(ttl)
	}
	data, err := json.Marshal(ke)
	if err != nil {
		return err
	}
	var opts []jetstream.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, jetstream.KeyTTL(ttl))
	}
	for range 3 {
		if _, err = kv.Create(ctx, key, data, opts...); !errors.Is(err, jetstream.ErrKeyExists) {
			break
		}
		// Replace an existing entry (Create is the only call that takes a TTL).
		if err = kv.Purge(ctx, key); err != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("adding %q to list %s: %w", e.Value, e.List, err)
	}
	return nil
}

// RemoveListEntry deletes an entry of a KV-backed list.
func RemoveListEntry(ctx context.Context, kv jetstream.KeyValue, list, value string) error {
	key, err := kvListKey(list, value)
	if err != nil {
		return err
	}
	if err := kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("removing %q from list %s: %w", value, list, err)
	}
	return nil
}

// ListEntries returns the entries of the KV-backed lists (list "" = all).
func ListEntries(ctx context.Context, kv jetstream.KeyValue, list string) ([]ListEntry, error) {
	keys, err := kv.ListKeysFiltered(ctx, kvListPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("listing list entries: %w", err)
	}
	var out []ListEntry
	for key := range keys.Keys() {
		l, _, ok := parseKVListKey(key)
		if !ok || (list != "" && l != list) {
			continue
		}
		ent, err := kv.Get(ctx, key)
		if err != nil {
			continue // expired or deleted meanwhile
		}
		var e kvEntry
		if json.Unmarshal(ent.Value(), &e) != nil {
			continue
		}
		out = append(out, ListEntry{List: l, Value: e.Value, Expires: e.Expires, Reason: e.Reason, By: e.By})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].List < out[j].List || out[i].List == out[j].List && out[i].Value < out[j].Value
	})
	return out, nil
}

// WatchLists keeps the engine's KV-backed list entries in step with the
// bucket until ctx ends. ready is closed once the current entries are in.
func (e *Engine) WatchLists(ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger, ready chan<- struct{}) error {
	w, err := kv.Watch(ctx, kvListPrefix+">")
	if err != nil {
		return fmt.Errorf("watching list entries: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ent, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if ent == nil { // the initial values are in
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			list, value, ok := parseKVListKey(ent.Key())
			if !ok {
				continue
			}
			switch ent.Operation() {
			case jetstream.KeyValuePut:
				var ke kvEntry
				if err := json.Unmarshal(ent.Value(), &ke); err != nil || ke.Value != value {
					log.Warn().Str("key", ent.Key()).Msg("ignoring a malformed list entry")
					continue
				}
				e.kvl.set(list, ke)
			default:
				e.kvl.remove(list, value)
			}
		}
	}
}
