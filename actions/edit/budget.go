package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/pipeline"
)

// budget is the edit budget of one bot account, shared by every replica: a
// KV key holding the next free slot. A replica takes a slot with
// compare-and-set (kv.Update with the revision it read), so two replicas can
// never take the same slot. Slots are spaced by the interval (times a
// slow-down factor while the wiki reports replica lag) and aligned to whole
// seconds, so edits also land in distinct seconds of the wiki's own
// timestamps (which have one-second resolution).
type editBudget struct {
	kv       jetstream.KeyValue
	key      string
	interval time.Duration
	align    time.Duration
	// slowDecay is how long a lag slow-down takes to wear off.
	slowDecay time.Duration
}

// editBudgetState is the value of the budget key.
type editBudgetState struct {
	Next   int64   `json:"next"`             // unix ns of the next free slot
	Factor float64 `json:"factor,omitempty"` // interval multiplier (≥ 1) set by lag
	LagAt  int64   `json:"lag_at,omitempty"` // unix ns when Factor was set
	Lag    float64 `json:"lag,omitempty"`    // last reported lag, seconds
}

func budgetKey(account string) string { return "edit.budget." + editKeyToken(editNormName(account)) }

func newBudget(kv jetstream.KeyValue, account string, perMinute float64) *editBudget {
	b := &editBudget{kv: kv, key: budgetKey(account), interval: time.Duration(float64(time.Minute) / perMinute),
		slowDecay: 10 * time.Minute}
	if b.interval >= time.Second {
		// Whole-second slots: the wiki's timestamps have one-second resolution.
		b.align = time.Second
	}
	return b
}

// factor is the slow-down in force at now: it decays linearly to 1.
func (b *editBudget) factor(st editBudgetState, now time.Time) float64 {
	if st.Factor <= 1 || st.LagAt == 0 {
		return 1
	}
	left := 1 - float64(now.Sub(time.Unix(0, st.LagAt)))/float64(b.slowDecay)
	if left <= 0 {
		return 1
	}
	return 1 + (st.Factor-1)*left
}

// reserve takes the next free slot. If that slot is more than maxHold away,
// it takes nothing and returns the wait after which to try again.
func (b *editBudget) reserve(ctx context.Context, now time.Time, maxHold time.Duration) (slot time.Time, retryIn time.Duration, interval time.Duration, err error) {
	for attempt := 0; attempt < 50; attempt++ {
		st, rev, err := b.load(ctx)
		if err != nil {
			return time.Time{}, 0, 0, err
		}
		s := now
		if next := time.Unix(0, st.Next); next.After(s) {
			s = next
		}
		if b.align > 0 {
			if r := s.Sub(s.Truncate(b.align)); r > 0 {
				s = s.Add(b.align - r)
			}
		}
		if d := s.Sub(now); d > maxHold {
			return time.Time{}, max(d-maxHold/2, time.Second), 0, nil
		}
		iv := time.Duration(float64(b.interval) * b.factor(st, now))
		st.Next = s.Add(iv).UnixNano()
		if err := b.store(ctx, st, rev); err != nil {
			if errors.Is(err, errEditCAS) {
				continue
			}
			return time.Time{}, 0, 0, err
		}
		return s, 0, iv, nil
	}
	return time.Time{}, 0, 0, errors.New("taking an edit slot: too many concurrent updates")
}

// slowDown pushes the next slot to at least now+wait and, when the wiki
// reported replica lag, slows the budget in proportion to it (factor
// 1 + lag/maxlag, wearing off over slowDecay).
func (b *editBudget) slowDown(ctx context.Context, now time.Time, wait, lag, maxLag time.Duration) error {
	for attempt := 0; attempt < 50; attempt++ {
		st, rev, err := b.load(ctx)
		if err != nil {
			return err
		}
		if until := now.Add(wait).UnixNano(); until > st.Next {
			st.Next = until
		}
		if lag > 0 && maxLag > 0 {
			f := 1 + float64(lag)/float64(maxLag)
			st.Factor, st.LagAt, st.Lag = max(f, b.factor(st, now)), now.UnixNano(), lag.Seconds()
		}
		if err := b.store(ctx, st, rev); err != nil {
			if errors.Is(err, errEditCAS) {
				continue
			}
			return err
		}
		return nil
	}
	return errors.New("slowing the edit budget: too many concurrent updates")
}

// current returns the interval in force and the wait for the next slot.
func (b *editBudget) current(ctx context.Context, now time.Time) (time.Duration, time.Duration, error) {
	st, _, err := b.load(ctx)
	if err != nil {
		return 0, 0, err
	}
	return time.Duration(float64(b.interval) * b.factor(st, now)), max(time.Unix(0, st.Next).Sub(now), 0), nil
}

var errEditCAS = errors.New("budget changed concurrently")

// load reads the state; revision 0 means the key does not exist yet.
func (b *editBudget) load(ctx context.Context) (editBudgetState, uint64, error) {
	e, err := b.kv.Get(ctx, b.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return editBudgetState{}, 0, nil
	}
	if err != nil {
		return editBudgetState{}, 0, fmt.Errorf("reading the edit budget %s: %w", b.key, err)
	}
	var st editBudgetState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A corrupt value is replaced (it only holds a schedule).
		return editBudgetState{}, e.Revision(), nil
	}
	return st, e.Revision(), nil
}

func (b *editBudget) store(ctx context.Context, st editBudgetState, rev uint64) error {
	v, _ := json.Marshal(st)
	var err error
	if rev == 0 {
		_, err = b.kv.Create(ctx, b.key, v)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return errEditCAS
		}
	} else {
		_, err = b.kv.Update(ctx, b.key, v, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return errEditCAS
		}
	}
	if err != nil {
		return fmt.Errorf("writing the edit budget %s: %w", b.key, err)
	}
	return nil
}

// keyToken makes s usable as one KV key token: kept when it is short and
// made of [A-Za-z0-9_-], else a hash of it.
func editKeyToken(s string) string {
	ok := s != "" && len(s) <= 48
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if ok {
		return s
	}
	return editHash(s)
}

// hashKey is a stable 128-bit hex digest of the parts.
func editHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// kvPutTTL writes key with a per-message TTL, expecting revision rev (0:
// the key must not exist). jetstream.KeyValue.Update cannot set a TTL, so
// this publishes to the bucket's subject as Update does, adding Nats-TTL.
func editKVPutTTL(ctx context.Context, js jetstream.JetStream, key string, value []byte, rev uint64, ttl time.Duration) error {
	m := nats.NewMsg("$KV." + pipeline.BucketActions + "." + key)
	m.Data = value
	_, err := js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return fmt.Errorf("writing %s: %w", key, errEditCAS)
		}
		return fmt.Errorf("writing %s: %w", key, err)
	}
	return nil
}
