package quality

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rcwatch/rcwatch/event"
)

// Real edit summaries: English Wikipedia's (the comment column of the
// ClueBot NG table in testdata/fixtures/vandalism.cluebotng.dev.csv),
// Wikidata's (testdata/fixtures/recentchange.editgroups.*.jsonl), the
// MediaWiki 1.39 core messages (undo-summary, revertpage, as the local test
// wiki writes them) and the tools' documented summaries.
func TestRecognise(t *testing.T) {
	old := int64(41)
	tests := []struct {
		name, comment string
		want          Revert
		ok            bool
	}{
		{"enwiki undo", "Undid revision 394519643 by [[Special:Contributions/118.210.71.123|118.210.71.123]] ([[User talk:118.210.71.123|talk]])",
			Revert{Kind: KindUndo, Revs: []int64{394519643}}, true},
		{"enwiki undo with reason", "Undid revision 394522059 by [[Special:Contributions/75.143.155.172|75.143.155.172]] ([[User talk:75.143.155.172|talk]])rv vandalism",
			Revert{Kind: KindUndo, Revs: []int64{394522059}}, true},
		{"enwiki undo, linked number", "Undid revision [[Special:Diff/1187654321|1187654321]] by [[Special:Contributions/Example|Example]] ([[User talk:Example|talk]])",
			Revert{Kind: KindUndo, Revs: []int64{1187654321}}, true},
		{"MediaWiki core undo", "Undo revision 7 by [[Special:Contributions/Vandal|Vandal]] ([[User talk:Vandal|talk]])",
			Revert{Kind: KindUndo, Revs: []int64{7}}, true},
		{"Wikibase undo", "/* undo:0||647477898|QuickStatementsBot */ this was just dumb ([[:toollabs:editgroups/b/EG/d6f5146|details]])",
			Revert{Kind: KindUndo, Revs: []int64{647477898}}, true},
		{"MediaWiki core rollback", "Reverted edits by [[Special:Contributions/Vandal|Vandal]] ([[User talk:Vandal|talk]]) to last revision by [[User:Admin|Admin]]",
			Revert{Kind: KindRollback, User: "Vandal"}, true},
		{"Huggle (2010)", "Reverted edits by [[Special:Contributions/98.228.188.89|98.228.188.89]] ([[User talk:98.228.188.89|talk]]) to last revision by Luckas-bot ([[WP:HG|HG]])",
			Revert{Kind: KindRollback, User: "98.228.188.89"}, true},
		{"Huggle 3", "Reverted edits by [[Special:Contribs/2001:db8::1|2001:db8::1]] ([[User talk:2001:db8::1|talk]]) (HG) (3.4.12)",
			Revert{Kind: KindRollback, User: "2001:db8::1"}, true},
		{"enwiki rollback (2010)", "[[Help:Reverting|Reverted]] edits by [[Special:Contributions/69.204.206.206|69.204.206.206]] ([[User talk:69.204.206.206|talk]]) to last version by 173.71.186.188",
			Revert{Kind: KindRollback, User: "69.204.206.206"}, true},
		{"ClueBot NG", "Reverting possible vandalism by [[Special:Contributions/Yungmuny956|Yungmuny956]] to version by Alpha Quadrant (alt). Questions, comments, complaints -> [[User:ClueBot NG/B|BRFA]] Thanks, [[User:ClueBot NG|ClueBot NG]]. (8562) (Bot)",
			Revert{Kind: KindRollback, User: "Yungmuny956"}, true},
		{"Twinkle, counted", "Reverted 2 edits by [[Special:Contributions/Vandal|Vandal]] ([[User talk:Vandal|talk]]): Unexplained removal ([[WP:TW|TW]])",
			Revert{Kind: KindRollback, User: "Vandal", Count: 2}, true},
		{"Twinkle, good faith", "Reverted good faith edits by [[Special:Contributions/Newbie|Newbie]] ([[User talk:Newbie|talk]]): unsourced ([[WP:TW|TW]])",
			Revert{Kind: KindRollback, User: "Newbie"}, true},
		{"RedWarn", "Reverting edit(s) by [[Special:Contributions/Vandal|Vandal]] ([[User_talk:Vandal|talk]]) to rev. 123 by Good: Vandalism (RW 16.1)",
			Revert{Kind: KindRollback, User: "Vandal"}, true},
		{"rvv", "rvv", Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"rcwatch's own", "rcwatch revert: rule vandalism-score (rcw:6d36e56c05). Wrong? Report at [[User talk:ExampleBot]]",
			Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"rcwatch tag", "rcwatch tag: rule stale-citation (rcw:28f7e91968). Wrong? Report at [[User talk:ExampleBot]]", Revert{}, false},
		{"revert with reason", "Revert unexplained removal by [[Special:Contributions/84.202.86.61|84.202.86.61]] ([[User talk:84.202.86.61|talk]]) - source shows NH90, S-92, EC225, AW101 and V-22.",
			Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"rollback by hand", "Rollback to the last good version", Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"revert per policy", "Revert as per wikipedia BLP provision, unsourced and untrue", Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"hidden user", "Reverted edits by a hidden user to last revision by Admin", Revert{Kind: KindRevert, Revs: []int64{41}}, true},
		{"prose", "Page was vandilated, I'm simply undoing that (for the second time, vandalism bot already did it once but it was re-vandalized).", Revert{}, false},
		{"Wikibase label", "/* wbsetlabel-add:1|en */ Scheloribates latipes", Revert{}, false},
		{"section edit", "/* Early life */ added birth date", Revert{}, false},
		{"empty", "", Revert{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.RecentChange{Type: "edit", Comment: tt.comment}
			ev.Revision.Old = &old
			got, ok := Recognise(ev)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
	// Only edits revert; a generic summary needs revision.old.
	_, ok := Recognise(&event.RecentChange{Type: "log", Comment: "Undid revision 5 by X"})
	assert.False(t, ok)
	_, ok = Recognise(&event.RecentChange{Type: "edit", Comment: "rv"})
	assert.False(t, ok)
}

func TestRevertedEventsWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ev := func(user, comment string, oldRev, newRev int64, at time.Duration) *event.RecentChange {
		e := &event.RecentChange{Type: "edit", Wiki: "enwiki", Title: "P", User: user, Comment: comment,
			Meta: event.Meta{DT: t0.Add(at).Format(time.RFC3339)}}
		e.Revision.Old, e.Revision.New = &oldRev, &newRev
		return e
	}
	evs := []*event.RecentChange{
		ev("Good", "", 1, 2, 0),
		ev("V", "", 2, 3, time.Minute),
		ev("Other", "", 3, 4, 2*time.Minute), // breaks V's run
		ev("V", "", 4, 5, 3*time.Minute),
		ev("P", "Reverted edits by [[Special:Contributions/V|V]] ([[User talk:V|talk]]) to last revision by Other", 5, 6, 4*time.Minute),
	}
	assert.Equal(t, []bool{false, false, false, true, false}, RevertedEvents(evs, time.Hour))
	assert.Equal(t, []bool{false, false, false, false, false}, RevertedEvents(evs, 30*time.Second))
}

// The filter before the expressions never turns away a summary one of
// them matches: a false from mayRevert means no expression can match.
func FuzzMayRevert(f *testing.F) {
	for _, s := range []string{
		"Undid revision 1 by X", "UNDO REVISION 2", "/* undo:0||647477898|Q */", "Reverted edits by [[User:X|X]]",
		"rv", "RVV vandalism", "Restored revision 3", "rcwatch revert: score 0.9", "reſtored revision 4",
		"copyedit", "", "/* Early life */ fixed typo", "Reverting possible vandalism by [[Special:Contributions/1.2.3.4|1.2.3.4]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if mayRevert(s) {
			return
		}
		for _, re := range []*regexp.Regexp{undoRevRE, rollbackRE, rollbackCountRE, genericRevertRE} {
			if re.MatchString(s) {
				t.Fatalf("mayRevert(%q) = false but %v matches", s, re)
			}
		}
	})
}

func TestMayRevert(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"copyedit", false},
		{"/* Early life */ fixed typo", false},
		{"", false},
		{"Undid revision 1", true},
		{"RV", true},
		{"REVERTED 2 edits by X", true},
		{"Restoring previous version", true},
		{"reſtored revision 4", true},
		{"observed", true}, // "rv": a false alarm the expressions then turn away
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, mayRevert(tt.s), tt.s)
	}
}
