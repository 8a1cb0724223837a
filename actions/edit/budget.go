package edit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rcwatch/rcwatch/actions"
)

// budget is the edit budget of one bot account, shared by every replica: a
// KV key holding the next free slot. A replica takes a slot with
// compare-and-set (kv.Update with the revision it read), so two replicas can
// never take the same slot. Slots are spaced by the interval (times a
// slow-down factor while the wiki reports replica lag) and aligned to whole
// seconds. Whole-second slots alone do not put edits in distinct seconds of
// the wiki's own timestamps (one-second resolution): the wiki stamps an edit
// while it saves it, and a save slowed past the next slot shares its second
// with the next edit. So, at one edit a second or slower, the writes of an
// account are also serialised: beginWrite waits until the previous write
// has finished and the clock has left the second of its timestamp.
type budget struct {
	kv       jetstream.KeyValue
	key      string
	interval time.Duration
	align    time.Duration
	// slowDecay is how long a lag slow-down takes to wear off.
	slowDecay time.Duration
}

// budgetState is the value of the budget key.
type budgetState struct {
	Next   int64   `json:"next"`             // unix ns of the next free slot
	Factor float64 `json:"factor,omitempty"` // interval multiplier (≥ 1) set by lag
	LagAt  int64   `json:"lag_at,omitempty"` // unix ns when Factor was set
	Lag    float64 `json:"lag,omitempty"`    // last reported lag, seconds
	// Writing is the slot (unix ns) whose write is in flight, WritingAt
	// when it began (0: none).
	Writing   int64 `json:"writing,omitempty"`
	WritingAt int64 `json:"writing_at,omitempty"`
	// LastStamp is the wiki timestamp of the last write (unix ns; the time
	// it finished when the wiki did not say).
	LastStamp int64 `json:"last_stamp,omitempty"`
}

// writeTimeout is how long a write in flight holds back the next one: the
// mark of a writer that died mid-write is ignored after it.
const writeTimeout = 30 * time.Second

// serialized reports whether writes wait for each other (whole-second slots).
func (b *budget) serialized() bool { return b.align > 0 }

// beginWrite marks the write of slot in flight, once no other write of the
// account is (or its mark is older than writeTimeout) and now is past the
// second of the last write's wiki timestamp. wait > 0 means not yet: call
// again after wait.
func (b *budget) beginWrite(ctx context.Context, slot, now time.Time) (wait time.Duration, err error) {
	if !b.serialized() {
		return 0, nil
	}
	for attempt := 0; attempt < 50; attempt++ {
		st, rev, err := b.load(ctx)
		if err != nil {
			return 0, err
		}
		if st.Writing != 0 && st.Writing != slot.UnixNano() && now.Sub(time.Unix(0, st.WritingAt)) < writeTimeout {
			return 100 * time.Millisecond, nil
		}
		if st.LastStamp != 0 {
			if free := time.Unix(0, st.LastStamp).Truncate(time.Second).Add(time.Second); now.Before(free) {
				return free.Sub(now), nil
			}
		}
		st.Writing, st.WritingAt = slot.UnixNano(), now.UnixNano()
		if err := b.store(ctx, st, rev); err != nil {
			if errors.Is(err, errCAS) {
				continue
			}
			return 0, err
		}
		return 0, nil
	}
	return 0, errors.New("marking an edit in flight: too many concurrent updates")
}

// endWrite clears slot's mark and records the write's wiki timestamp
// (stamp; zero when unknown, then the time the write finished, now, which
// is no earlier).
func (b *budget) endWrite(ctx context.Context, slot, stamp, now time.Time) error {
	if !b.serialized() {
		return nil
	}
	if stamp.IsZero() {
		stamp = now
	}
	for attempt := 0; attempt < 50; attempt++ {
		st, rev, err := b.load(ctx)
		if err != nil {
			return err
		}
		if st.Writing == slot.UnixNano() {
			st.Writing, st.WritingAt = 0, 0
		}
		st.LastStamp = max(st.LastStamp, stamp.UnixNano())
		if err := b.store(ctx, st, rev); err != nil {
			if errors.Is(err, errCAS) {
				continue
			}
			return err
		}
		return nil
	}
	return errors.New("recording an edit's timestamp: too many concurrent updates")
}

func budgetKey(account string) string { return "edit.budget." + actions.KeyToken(normName(account)) }

func newBudget(kv jetstream.KeyValue, account string, perMinute float64) *budget {
	b := &budget{kv: kv, key: budgetKey(account), interval: time.Duration(float64(time.Minute) / perMinute),
		slowDecay: 10 * time.Minute}
	if b.interval >= time.Second {
		// Whole-second slots: the wiki's timestamps have one-second resolution.
		b.align = time.Second
	}
	return b
}

// factor is the slow-down in force at now: it decays linearly to 1.
func (b *budget) factor(st budgetState, now time.Time) float64 {
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
func (b *budget) reserve(ctx context.Context, now time.Time, maxHold time.Duration) (slot time.Time, retryIn time.Duration, interval time.Duration, err error) {
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
			if errors.Is(err, errCAS) {
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
func (b *budget) slowDown(ctx context.Context, now time.Time, wait, lag, maxLag time.Duration) error {
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
			if errors.Is(err, errCAS) {
				continue
			}
			return err
		}
		return nil
	}
	return errors.New("slowing the edit budget: too many concurrent updates")
}

// current returns the interval in force and the wait for the next slot.
func (b *budget) current(ctx context.Context, now time.Time) (time.Duration, time.Duration, error) {
	st, _, err := b.load(ctx)
	if err != nil {
		return 0, 0, err
	}
	return time.Duration(float64(b.interval) * b.factor(st, now)), max(time.Unix(0, st.Next).Sub(now), 0), nil
}

var errCAS = errors.New("budget changed concurrently")

// load reads the state; revision 0 means the key does not exist yet.
func (b *budget) load(ctx context.Context) (budgetState, uint64, error) {
	e, err := b.kv.Get(ctx, b.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return budgetState{}, 0, nil
	}
	if err != nil {
		return budgetState{}, 0, fmt.Errorf("reading the edit budget %s: %w", b.key, err)
	}
	var st budgetState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A corrupt value is replaced (it only holds a schedule).
		return budgetState{}, e.Revision(), nil
	}
	return st, e.Revision(), nil
}

func (b *budget) store(ctx context.Context, st budgetState, rev uint64) error {
	v, _ := json.Marshal(st)
	var err error
	if rev == 0 {
		_, err = b.kv.Create(ctx, b.key, v)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return errCAS
		}
	} else {
		_, err = b.kv.Update(ctx, b.key, v, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return errCAS
		}
	}
	if err != nil {
		return fmt.Errorf("writing the edit budget %s: %w", b.key, err)
	}
	return nil
}

// hash is a stable 128-bit hex digest of the parts.
func hash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}
