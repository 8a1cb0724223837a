package rules

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// Reverted reports, for each item, whether a later item among items
// reverted it within window (by its event time). An undo names the
// revision it undoes; a rollback ("Reverted edits by X") reverts X's
// consecutive edits before it on the page; another revert summary reverts
// the page's previous edit (the one whose revision.new is the revert's
// revision.old), when someone else made it. Only edits and page creations
// can be reverted. The recogniser is quality.Recognise, which the live
// self-measurement of the rules stage uses too.
func Reverted(items []Item, window time.Duration) []bool {
	evs := make([]*event.RecentChange, len(items))
	for i := range items {
		evs[i] = items[i].Event
	}
	return quality.RevertedEvents(evs, window)
}

// LabelByReverts labels every edit and page creation among items by what
// happened later in the same items: LabelVandalism when it was reverted
// within window, LabelGood otherwise (other events stay unlabelled). A
// backtest of the result estimates each rule's precision (the share of its
// alerts that were reverted) and recall (the share of reverted edits it
// alerted on), as a patroller would judge it after the fact.
func LabelByReverts(items []Item, window time.Duration) []Item {
	rev := Reverted(items, window)
	out := make([]Item, len(items))
	for i, it := range items {
		out[i] = it
		if !quality.Revertable(it.Event) {
			out[i].Label = ""
			continue
		}
		out[i].Label = LabelGood
		if rev[i] {
			out[i].Label = LabelVandalism
		}
	}
	return out
}

// StreamCasesStats says what WriteStreamCases wrote and left out.
type StreamCasesStats struct {
	Cases, Vandalism int
	// Unsettled edits, newer than settle before the newest event and not
	// reverted, are left out: a revert may still come.
	Unsettled int
	// Bad events did not decode.
	Bad int
}

// WriteStreamCases writes the edits and page creations that RECENTCHANGE
// holds since the given time as cases (JSON lines, as WriteCases),
// labelled by what the stream shows later: LabelVandalism when reverted
// within window (Reverted's recogniser), LabelGood otherwise. It reads the
// stream twice (first the slim events to find the reverts, then the events
// to write), so memory stays about 200 bytes per event.
func WriteStreamCases(ctx context.Context, js jetstream.JetStream, since time.Time, window, settle time.Duration, w io.Writer) (StreamCasesStats, error) {
	var st StreamCasesStats
	evs, bad, err := quality.ReadEdits(ctx, js, since)
	if err != nil {
		return st, err
	}
	st.Bad = bad
	rev := quality.RevertedEvents(evs, window)
	var newest time.Time
	for _, ev := range evs {
		if t := ev.Time(); t.After(newest) {
			newest = t
		}
	}
	labels := make(map[string]string, len(evs))
	for i, ev := range evs {
		switch {
		case rev[i]:
			labels[ev.Meta.ID] = LabelVandalism
		case newest.Sub(ev.Time()) < settle:
			st.Unsettled++
		default:
			labels[ev.Meta.ID] = LabelGood
		}
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err = quality.ReadStream(ctx, js, pipeline.StreamRecentChange, since, func(data []byte) error {
		var ev event.RecentChange
		if event.DecodeInto(data, &ev) != nil {
			return nil
		}
		label, ok := labels[ev.Meta.ID]
		if !ok {
			return nil
		}
		delete(labels, ev.Meta.ID) // once, if the stream holds it twice
		if err := enc.Encode(&Case{Event: json.RawMessage(data), Label: label}); err != nil {
			return fmt.Errorf("writing case %s: %w", ev.Meta.ID, err)
		}
		st.Cases++
		if label == LabelVandalism {
			st.Vandalism++
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("writing cases: %w", err)
	}
	return st, nil
}
