package rules

import (
	"time"

	"github.com/rcwatch/rcwatch/event"
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
