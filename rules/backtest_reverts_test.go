package rules

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
)

func revItem(user, title, comment string, oldRev, newRev int64, at time.Time) Item {
	ev := &event.RecentChange{Type: "edit", Wiki: "enwiki", Title: title, User: user, Comment: comment,
		Meta: event.Meta{ID: title + "-" + time.Duration(newRev).String(), DT: at.Format(time.RFC3339)}}
	if oldRev > 0 {
		ev.Revision.Old = &oldRev
	}
	ev.Revision.New = &newRev
	return Item{Event: ev}
}

func TestReverted(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	items := []Item{
		revItem("Good", "A", "copyedit", 1, 2, at(0)), // 0
		revItem("1.2.3.4", "A", "", 2, 3, at(1)),      // 1 rolled back
		revItem("1.2.3.4", "A", "", 3, 4, at(2)),      // 2 rolled back
		revItem("Patroller", "A", "Reverted edits by [[Special:Contributions/1.2.3.4|1.2.3.4]] ([[User talk:1.2.3.4|talk]]) to last version by Good", 4, 5, at(3)),
		revItem("Vandal", "B", "", 10, 11, at(0)), // 4 undone
		revItem("Fixer", "B", "Undid revision 11 by [[Special:Contributions/Vandal|Vandal]] ([[User talk:Vandal|talk]])", 11, 12, at(5)),
		revItem("Someone", "C", "added a fact", 20, 21, at(0)), // 6 reverted (rv)
		revItem("Other", "C", "rv unsourced", 21, 22, at(10)),
		revItem("Late", "D", "", 30, 31, at(0)), // 8 reverted too late
		revItem("X", "D", "Undid revision 31 by Late", 31, 32, at(60*48)),
		revItem("Bot", "Q1", "", 40, 41, at(0)), // 10 Wikibase undo
		revItem("Pintoch", "Q1", "/* undo:0||41|Bot */ this was just dumb", 41, 42, at(1)),
		revItem("Self", "E", "", 50, 51, at(0)), // 12 not a revert of self
		revItem("Self", "E", "revert my test", 51, 52, at(1)),
	}
	got := Reverted(items, 24*time.Hour)
	want := map[int]bool{1: true, 2: true, 4: true, 6: true, 10: true}
	for i := range items {
		assert.Equal(t, want[i], got[i], "item %d (%s on %s)", i, items[i].Event.User, items[i].Event.Title)
	}
	labelled := LabelByReverts(items, 24*time.Hour)
	assert.Equal(t, LabelVandalism, labelled[1].Label)
	assert.Equal(t, LabelGood, labelled[0].Label)
}

// Recorded Wikidata events with real undos (EditGroups reverting a
// QuickStatements batch): the undone edits are found, and a backtest of
// a rule over the labelled events gives the expected per-rule estimates.
func TestRevertedRecordedEvents(t *testing.T) {
	items := readItemsFile(t, "../testdata/fixtures/recentchange.editgroups.qs_batch_with_reverts.jsonl")
	labelled := LabelByReverts(items, 24*time.Hour)
	var reverted []string
	for _, it := range labelled {
		if it.Label == LabelVandalism {
			reverted = append(reverted, it.Event.Title)
		}
	}
	t.Logf("%d of %d events reverted: %v", len(reverted), len(items), reverted)
	require.Len(t, reverted, 2, "the two undos of the fixture")

	src := []Source{{Name: "q.yaml", Data: []byte(`rules:
  - id: qs-edits
    when: 'type == "edit" && user == "QuickStatementsBot"'
    owner: t
    severity: low
    actions: [feed]
  - id: nobody
    when: 'user == "nobody at all"'
    owner: t
    severity: low
    actions: [feed]
`)}}
	rep, err := Backtest(context.Background(), src, labelled, BacktestConfig{VerdictTag: "none", Bootstrap: -1})
	require.NoError(t, err)
	var qs RuleReport
	for _, r := range rep.Rules {
		if r.ID == "qs-edits" {
			qs = r
		}
	}
	require.NotNil(t, qs.Confusion)
	assert.Equal(t, 2, qs.TP, "both reverted edits were QuickStatements edits")
	assert.Equal(t, 1.0, qs.Recall)
	assert.InDelta(t, 2/float64(qs.Matches), qs.Precision, 1e-12)
}
