package rules

import (
	"sync"
	"time"

	"github.com/rcwatch/rcwatch/event"
)

// throttleState counts a rule's matches per group (user, page or wiki) in a
// sliding window. Time is the event's time, passed in, so a backtest over
// replayed history throttles as live would have. Memory is bounded: groups
// idle longer than the window are swept, and past maxGroups an arbitrary
// group is dropped.
type throttleState struct {
	mu        sync.Mutex
	groups    map[string][]throttleHit
	ops       int
	maxGroups int
}

type throttleHit struct {
	at time.Time
	id string // meta.id: a redelivered event is not counted twice
}

func newThrottleState(maxGroups int) *throttleState {
	return &throttleState{groups: map[string][]throttleHit{}, maxGroups: maxGroups}
}

// throttleKey is the group an event belongs to.
func throttleKey(groupBy string, ev *event.RecentChange) string {
	switch groupBy {
	case GroupByUser:
		return ev.Wiki + "\x00" + ev.User
	case GroupByPage:
		return ev.Wiki + "\x00" + ev.Title
	}
	return ev.Wiki
}

// hit records a match and reports whether the rule fires now (Count matches
// within Window in the group), and how many matches the group holds. After
// firing, the group starts again from zero.
func (s *throttleState) hit(t Throttle, key, id string, at time.Time) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops++
	if s.ops%1024 == 0 || len(s.groups) >= s.maxGroups {
		s.sweep(at, t.Window)
	}
	hits := s.groups[key]
	// Drop hits that left the window.
	cut := 0
	for cut < len(hits) && !hits[cut].at.After(at.Add(-t.Window)) {
		cut++
	}
	hits = hits[cut:]
	for _, h := range hits {
		if h.id == id {
			s.groups[key] = hits
			return false, len(hits)
		}
	}
	hits = append(hits, throttleHit{at: at, id: id})
	n := len(hits)
	if n >= t.Count {
		delete(s.groups, key)
		return true, n
	}
	s.groups[key] = hits
	return false, n
}

func (s *throttleState) sweep(now time.Time, window time.Duration) {
	for k, hits := range s.groups {
		if len(hits) == 0 || !hits[len(hits)-1].at.After(now.Add(-window)) {
			delete(s.groups, k)
		}
	}
	for k := range s.groups {
		if len(s.groups) < s.maxGroups {
			break
		}
		delete(s.groups, k)
	}
}

// size is the number of groups held (for tests).
func (s *throttleState) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.groups)
}
