// Package quality is the detector measuring itself: it recognises reverts
// in the recent-change stream (edit summaries that MediaWiki and the patrol
// tools write, and revision.old chains) and, live, counts per rule and per
// wiki how many alerted edits were later reverted (a precision estimate) and
// how many reverted edits had been alerted (a recall estimate). The offline
// labelling (rules.Reverted, rules quality, rules cases --from stream) and
// the live tracker share one recogniser, Recognise.
package quality

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rcwatch/rcwatch/event"
)

// Revert kinds.
const (
	// KindUndo names the revision(s) it undoes.
	KindUndo = "undo"
	// KindRollback reverts a user's consecutive edits on the page (MediaWiki
	// rollback and the tools that copy its summary).
	KindRollback = "rollback"
	// KindRevert is another revert summary: it reverts the page's previous
	// edit (its revision.old), when someone else made it.
	KindRevert = "revert"
)

var (
	// undoRevRE: MediaWiki's undo autosummary: core ("Undo revision 123
	// by …"), Wikipedia's ("Undid revision 123 by …", lately with the
	// number linked: "Undid revision [[Special:Diff/123|123]] by …") and
	// Wikibase's ("/* undo:0||123|User */").
	undoRevRE = regexp.MustCompile(`(?i)(?:(?:undid|undo) revision (?:\[\[special:diff/)?(\d+)|/\*\s*undo:\d+\|\|(\d+)\|)`)
	// rollbackRE: MediaWiki's rollback summary ("Reverted edits by
	// [[Special:Contributions/X|X]] …", on older Wikipedia "[[Help:Reverting|Reverted]]
	// edits by …") and the tools that name the user
	// the same way: Huggle ("… [[Special:Contribs/X|X]] … (HG)"), Twinkle
	// ("Reverted 2 edits by …", "Reverted good faith edits by …"), RedWarn
	// and Ultraviolet ("Reverting edit(s) by …"), ClueBot NG ("Reverting
	// possible vandalism by …").
	rollbackRE = regexp.MustCompile(`(?i)(?:revert(?:ed|ing)(?:\]\])? (?:\d+ )?(?:good faith )?edit(?:s|\(s\))? by \[\[(?:special:contrib(?:ution)?s/|user:)([^|\]]+)|reverting possible vandalism by \[\[(?:special:contrib(?:ution)?s/|user:)([^|\]]+)|reverted (?:\d+ )?edits? by ([^\s(\[]+))`)
	// rollbackCountRE: "Reverted 3 edits by …" (Twinkle) says how many.
	rollbackCountRE = regexp.MustCompile(`(?i)reverted (\d+) edits? by`)
	// genericRevertRE: other revert summaries, rcwatch's own included (its
	// undo sends a summary, so MediaWiki writes no undo autosummary).
	genericRevertRE = regexp.MustCompile(`(?i)^\s*(?:/\*[^*]*\*/\s*)?(?:rv[v]?\b|revert(?:ed|ing)?\b|undo\b|rollback\b|restor(?:e|ed|ing) (?:revision|previous version)|rcwatch revert:)`)
)

// Revert is what one edit's summary and revision say it reverted.
type Revert struct {
	Kind string
	// Revs: for KindUndo the revisions named; for KindRevert the page's
	// previous revision (revision.old).
	Revs []int64
	// User is whose edits a KindRollback reverts.
	User string
	// Count is how many edits a KindRollback reverts when the summary says
	// so (0: not said, at least one).
	Count int
}

// Recognise reports whether ev is a revert and what it reverts. Only edits
// revert; an undo is recognised by its autosummary, a rollback (or a tool's
// revert of a user's edits) by the summary naming the user, and any other
// summary starting "rv", "revert", "undo" or "restore(d) revision" reverts
// the page's previous edit (revision.old, which must be known).
func Recognise(ev *event.RecentChange) (Revert, bool) {
	if ev.Type != "edit" {
		return Revert{}, false
	}
	c := ev.Comment
	if !mayRevert(c) {
		return Revert{}, false
	}
	if m := undoRevRE.FindAllStringSubmatch(c, -1); m != nil {
		r := Revert{Kind: KindUndo}
		for _, g := range m {
			s := g[1]
			if s == "" {
				s = g[2]
			}
			if id, err := strconv.ParseInt(s, 10, 64); err == nil {
				r.Revs = append(r.Revs, id)
			}
		}
		return r, len(r.Revs) > 0
	}
	// "Reverted edits by a hidden user": not a name; the previous edit below.
	if m := rollbackRE.FindStringSubmatch(c); m != nil && !strings.EqualFold(m[3], "a") {
		r := Revert{Kind: KindRollback, User: strings.TrimSpace(m[1] + m[2] + m[3])}
		if n := rollbackCountRE.FindStringSubmatch(c); n != nil {
			r.Count, _ = strconv.Atoi(n[1])
		}
		return r, r.User != ""
	}
	if genericRevertRE.MatchString(c) && ev.Revision.Old != nil {
		return Revert{Kind: KindRevert, Revs: []int64{*ev.Revision.Old}}, true
	}
	return Revert{}, false
}

// revertWords: every summary the expressions above match holds one of
// these, in any case ("und": undid, undo; "rv": rv, rvv).
var revertWords = []string{"revert", "und", "rv", "restor", "rollback"}

// mayRevert is a cheap filter before the expressions: false means none of
// them can match. Case-insensitive expressions have no literal prefix to
// search for, so the regexp engine tries every position of every summary:
// that was 7% of `rcwatch run`'s CPU at full speed (issue 12). Most
// summaries hold none of the words; the rest go on to the expressions.
func mayRevert(s string) bool {
	if strings.Contains(s, "ſ") { // U+017F folds to 's' in (?i): leave it to the expressions
		return true
	}
	for _, w := range revertWords {
		if containsFoldASCII(s, w) {
			return true
		}
	}
	return false
}

// containsFoldASCII reports whether s contains the lower-case ASCII word w,
// ignoring the case of ASCII letters in s.
func containsFoldASCII(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// RevertSummary reports whether an edit summary says the edit reverts
// (the summaries Recognise reads, whatever the edit's revision): for
// the enricher, which reads a page's history from the Action API.
func RevertSummary(s string) bool {
	return mayRevert(s) && (undoRevRE.MatchString(s) || rollbackRE.MatchString(s) || genericRevertRE.MatchString(s))
}

// SameUser compares user names as MediaWiki does ('_' is ' ').
func SameUser(a, b string) bool {
	return a != "" && strings.ReplaceAll(a, "_", " ") == strings.ReplaceAll(b, "_", " ")
}

// Revertable reports whether ev can be reverted: an edit or a page creation.
func Revertable(ev *event.RecentChange) bool { return ev.Type == "edit" || ev.Type == "new" }

// RevertedEvents reports, for each event, whether a later one among evs
// reverted it within window (by event time; 0: no limit). An undo reverts
// the revisions it names; a rollback reverts the user's consecutive edits
// before it on the page; another revert summary reverts the page's previous
// edit (the one whose revision.new is the revert's revision.old), when
// someone else made it. Only edits and page creations can be reverted.
func RevertedEvents(evs []*event.RecentChange, window time.Duration) []bool {
	out := make([]bool, len(evs))
	type key struct {
		wiki string
		rev  int64
	}
	byRev := map[key]int{}
	pages := map[string][]int{} // wiki|title → indexes in time order
	for i, ev := range evs {
		if !Revertable(ev) {
			continue
		}
		if ev.Revision.New != nil {
			byRev[key{ev.Wiki, *ev.Revision.New}] = i
		}
		pk := ev.Wiki + "|" + ev.Title
		pages[pk] = append(pages[pk], i)
	}
	for _, idx := range pages {
		sort.SliceStable(idx, func(a, b int) bool { return evs[idx[a]].Time().Before(evs[idx[b]].Time()) })
	}
	mark := func(j int, by int) {
		at, rt := evs[j].Time(), evs[by].Time()
		if j == by || rt.Before(at) || (window > 0 && rt.Sub(at) > window) {
			return
		}
		out[j] = true
	}
	for i, ev := range evs {
		r, ok := Recognise(ev)
		if !ok {
			continue
		}
		switch r.Kind {
		case KindUndo:
			for _, id := range r.Revs {
				if j, ok := byRev[key{ev.Wiki, id}]; ok {
					mark(j, i)
				}
			}
		case KindRollback:
			seq := pages[ev.Wiki+"|"+ev.Title]
			pos := -1
			for k, j := range seq {
				if j == i {
					pos = k
				}
			}
			for k := pos - 1; k >= 0 && SameUser(evs[seq[k]].User, r.User); k-- {
				mark(seq[k], i)
			}
		case KindRevert:
			if j, ok := byRev[key{ev.Wiki, r.Revs[0]}]; ok && evs[j].User != ev.User {
				mark(j, i)
			}
		}
	}
	return out
}
