package enrich

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rcwatch/rcwatch/mediawiki"
)

// ErrWikiUnreachable is returned, without a request, while a wiki's
// circuit is open: its last requests failed at the transport or HTTP level,
// so enrichment of its events is skipped (alerts are marked partial) rather
// than letting every event wait for time-outs and hold up the evaluator.
var ErrWikiUnreachable = errors.New("wiki unreachable; enrichment paused")

// breaker is a per-wiki circuit breaker: after threshold consecutive
// failures it opens for a cool-down that doubles on each reopening (up to
// maxCool); a success closes it.
type breaker struct {
	threshold int
	cool      time.Duration
	maxCool   time.Duration

	mu    sync.Mutex
	wikis map[string]*circuit
}

type circuit struct {
	failures  int
	openUntil time.Time
	cool      time.Duration
}

func newBreaker(threshold int, cool, maxCool time.Duration) *breaker {
	return &breaker{threshold: threshold, cool: cool, maxCool: maxCool, wikis: map[string]*circuit{}}
}

// allow reports an error while the wiki's circuit is open at now.
func (b *breaker) allow(api string, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.wikis[api]; c != nil && now.Before(c.openUntil) {
		return fmt.Errorf("%w until %s", ErrWikiUnreachable, c.openUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// record notes the outcome of a request; it returns true when this failure
// opened the circuit (for a log line).
func (b *breaker) record(api string, err error, now time.Time) (opened bool, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.wikis[api]
	if c == nil {
		c = &circuit{cool: b.cool}
		b.wikis[api] = c
	}
	if !unreachable(err) {
		if err == nil {
			c.failures, c.cool = 0, b.cool
		}
		return false, time.Time{}
	}
	c.failures++
	if c.failures < b.threshold || now.Before(c.openUntil) {
		return false, time.Time{}
	}
	c.openUntil = now.Add(c.cool)
	c.cool = min(2*c.cool, b.maxCool)
	c.failures = 0
	return true, c.openUntil
}

// unreachable reports whether err says the wiki could not be reached or
// did not answer (network, time-out, HTTP error, maxlag wait), as opposed to
// an answer about this event (an API error, a hidden revision).
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrWikiUnreachable) {
		return false
	}
	var apiErr *mediawiki.APIError
	return !errors.As(err, &apiErr)
}
