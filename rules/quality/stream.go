package quality

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// ReadStream calls fn with every message stored in stream since the given
// time (by the time JetStream stored it), up to the last message stored
// when the read began, in order. It reads with an ordered consumer, so it
// changes nothing on the server.
func ReadStream(ctx context.Context, js jetstream.JetStream, stream string, since time.Time, fn func(data []byte) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s info: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		if md.Sequence.Stream > last {
			return nil
		}
		if err := fn(msg.Data()); err != nil {
			return err
		}
		if md.Sequence.Stream == last || md.NumPending == 0 {
			return nil
		}
	}
}

// Slim is the part of a recent change that revert recognition needs (about
// 200 bytes instead of the event's 1.4 KB): type, wiki, title, user,
// revisions, time, and the summary only when it is a revert.
func Slim(ev *event.RecentChange) *event.RecentChange {
	s := &event.RecentChange{Type: ev.Type, Wiki: ev.Wiki, Title: ev.Title, User: ev.User,
		Revision: ev.Revision, Timestamp: ev.Timestamp, Meta: event.Meta{ID: ev.Meta.ID, DT: ev.Meta.DT}}
	if _, ok := Recognise(ev); ok {
		s.Comment = ev.Comment
	}
	return s
}

// ReadEdits reads the edits and page creations of RECENTCHANGE since the
// given time, slimmed (Slim). Events that do not decode are counted in bad.
func ReadEdits(ctx context.Context, js jetstream.JetStream, since time.Time) (evs []*event.RecentChange, bad int, err error) {
	err = ReadStream(ctx, js, pipeline.StreamRecentChange, since, func(data []byte) error {
		ev, err := event.Decode(data)
		if err != nil {
			bad++
			return nil
		}
		if Revertable(ev) && !ev.IsCanary() {
			evs = append(evs, Slim(ev))
		}
		return nil
	})
	return evs, bad, err
}

// ReadAlerts reads the alerts of ALERTS since the given time.
func ReadAlerts(ctx context.Context, js jetstream.JetStream, since time.Time) (as []*event.Alert, bad int, err error) {
	err = ReadStream(ctx, js, pipeline.StreamAlerts, since, func(data []byte) error {
		var a event.Alert
		if err := json.Unmarshal(data, &a); err != nil {
			bad++
			return nil
		}
		as = append(as, &a)
		return nil
	})
	return as, bad, err
}

// Interval is a proportion with its 95% Wilson score interval.
type Interval struct {
	Value float64 `json:"value"`
	Low   float64 `json:"ci_low"`
	High  float64 `json:"ci_high"`
}

// Wilson is k of n with its 95% Wilson score interval; nil for n = 0.
func Wilson(k, n int) *Interval {
	if n == 0 {
		return nil
	}
	const z = 1.959963984540054
	p, nf := float64(k)/float64(n), float64(n)
	d := 1 + z*z/nf
	c := (p + z*z/(2*nf)) / d
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / d
	return &Interval{Value: p, Low: math.Max(0, c-h), High: math.Min(1, c+h)}
}

// Estimate is one rule's figures on one wiki (Wiki "*": all wikis).
type Estimate struct {
	Rule string `json:"rule"`
	Wiki string `json:"wiki"`
	// Alerted edits, of which AlertedReverted were reverted within the window.
	Alerted         int `json:"alerted"`
	AlertedReverted int `json:"alerted_reverted"`
	// Reverted edits of the wiki (all rules).
	Reverted  int       `json:"reverted"`
	Precision *Interval `json:"precision,omitempty"`
	Recall    *Interval `json:"recall,omitempty"`
}

// Report is the self-measurement over a stretch of the stream.
type Report struct {
	Edits    int `json:"edits"`
	Reverted int `json:"reverted"`
	Alerts   int `json:"alerts"`
	// Unmatched alerts are on edits not among the events read (older than
	// them); they are left out, as are alerts on events that are not edits
	// or page creations.
	Unmatched int        `json:"unmatched"`
	Estimates []Estimate `json:"estimates"`
}

// Estimates labels evs by later reverts within window (RevertedEvents) and
// measures the alerts against them: per rule and wiki, and per rule over
// all wikis (Wiki "*"), the share of alerted edits reverted (precision)
// and the share of reverted edits alerted (recall), with Wilson intervals.
// It is what the live rcwatch_quality_* counters estimate, recomputed from
// the streams.
func Estimates(evs []*event.RecentChange, alerts []*event.Alert, window time.Duration) *Report {
	rev := RevertedEvents(evs, window)
	rep := &Report{Edits: len(evs), Alerts: len(alerts)}
	byID := map[string]int{}
	reverted := map[string]int{}
	for i, ev := range evs {
		byID[ev.Meta.ID] = i
		if rev[i] {
			reverted[ev.Wiki]++
			reverted["*"]++
			rep.Reverted++
		}
	}
	type key struct{ rule, wiki string }
	type counts struct{ alerted, hit int }
	agg := map[key]*counts{}
	seen := map[key]map[int]bool{}
	for _, a := range alerts {
		if a.Event.Type != "edit" && a.Event.Type != "new" {
			continue // only edits and page creations are reverted
		}
		i, ok := byID[a.Event.MetaID]
		if !ok {
			rep.Unmatched++
			continue
		}
		for _, w := range []string{evs[i].Wiki, "*"} {
			k := key{a.Rule.ID, w}
			if seen[k] == nil {
				seen[k], agg[k] = map[int]bool{}, &counts{}
			}
			if seen[k][i] {
				continue // one alert per edit and rule
			}
			seen[k][i] = true
			agg[k].alerted++
			if rev[i] {
				agg[k].hit++
			}
		}
	}
	for k, c := range agg {
		rep.Estimates = append(rep.Estimates, Estimate{Rule: k.rule, Wiki: k.wiki, Alerted: c.alerted,
			AlertedReverted: c.hit, Reverted: reverted[k.wiki],
			Precision: Wilson(c.hit, c.alerted), Recall: Wilson(c.hit, reverted[k.wiki])})
	}
	sort.Slice(rep.Estimates, func(a, b int) bool {
		x, y := rep.Estimates[a], rep.Estimates[b]
		if x.Rule != y.Rule {
			return x.Rule < y.Rule
		}
		return x.Wiki < y.Wiki
	})
	return rep
}
