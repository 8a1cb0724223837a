package rules

import (
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Revert recognition from what the stream shows: edit summaries that
// MediaWiki and the patrol tools write, and revision.old chains.
var (
	// undoRevRE: MediaWiki's undo autosummary, in wikitext wikis ("Undid
	// revision 123 by …") and Wikibase ("/* undo:0||123|User */").
	undoRevRE = regexp.MustCompile(`(?i)(?:undid revision (\d+)|/\*\s*undo:\d+\|\|(\d+)\|)`)
	// rollbackRE: MediaWiki's rollback summary and the tools that copy it
	// (Huggle, Twinkle, ClueBot NG: "Reverting possible vandalism by X").
	rollbackRE = regexp.MustCompile(`(?i)(?:reverted (?:\d+ )?edits? by \[\[(?:special:contributions/|user:)([^|\]]+)|reverting possible vandalism by \[\[(?:special:contributions/|user:)([^|\]]+)|reverted (?:\d+ )?edits? by ([^\s(\[]+))`)
	// genericRevertRE: other revert summaries; the page's previous edit
	// counts as reverted.
	genericRevertRE = regexp.MustCompile(`(?i)^\s*(?:/\*[^*]*\*/\s*)?(?:rv[v]?\b|revert(?:ed|ing)?\b|undo\b|restor(?:e|ed|ing) (?:revision|previous version))`)
)

// Reverted reports, for each item, whether a later item among items
// reverted it within window (by its event time). An undo names the
// revision it undoes; a rollback ("Reverted edits by X") reverts X's
// consecutive edits before it on the page; another revert summary reverts
// the page's previous edit (the one whose revision.new is the revert's
// revision.old), when someone else made it. Only edits and page creations
// can be reverted.
func Reverted(items []Item, window time.Duration) []bool {
	out := make([]bool, len(items))
	type key struct {
		wiki string
		rev  int64
	}
	byRev := map[key]int{}
	pages := map[string][]int{} // wiki|title → item indexes in time order
	for i, it := range items {
		ev := it.Event
		if ev.Type != "edit" && ev.Type != "new" {
			continue
		}
		if ev.Revision.New != nil {
			byRev[key{ev.Wiki, *ev.Revision.New}] = i
		}
		pk := ev.Wiki + "|" + ev.Title
		pages[pk] = append(pages[pk], i)
	}
	for _, idx := range pages {
		sort.SliceStable(idx, func(a, b int) bool { return items[idx[a]].Event.Time().Before(items[idx[b]].Event.Time()) })
	}
	mark := func(j int, by int) {
		at, rt := items[j].Event.Time(), items[by].Event.Time()
		if j == by || rt.Before(at) || (window > 0 && rt.Sub(at) > window) {
			return
		}
		out[j] = true
	}
	for i, it := range items {
		ev := it.Event
		if ev.Type != "edit" {
			continue
		}
		c := ev.Comment
		if m := undoRevRE.FindAllStringSubmatch(c, -1); m != nil {
			for _, g := range m {
				s := g[1]
				if s == "" {
					s = g[2]
				}
				if id, err := strconv.ParseInt(s, 10, 64); err == nil {
					if j, ok := byRev[key{ev.Wiki, id}]; ok {
						mark(j, i)
					}
				}
			}
			continue
		}
		if m := rollbackRE.FindStringSubmatch(c); m != nil {
			who := m[1] + m[2] + m[3]
			seq := pages[ev.Wiki+"|"+ev.Title]
			pos := -1
			for k, j := range seq {
				if j == i {
					pos = k
				}
			}
			for k := pos - 1; k >= 0 && sameUser(items[seq[k]].Event.User, who); k-- {
				mark(seq[k], i)
			}
			continue
		}
		if genericRevertRE.MatchString(c) && ev.Revision.Old != nil {
			if j, ok := byRev[key{ev.Wiki, *ev.Revision.Old}]; ok && items[j].Event.User != ev.User {
				mark(j, i)
			}
		}
	}
	return out
}

func sameUser(a, b string) bool {
	norm := func(s string) string {
		r := []rune(s)
		for i, c := range r {
			if c == '_' {
				r[i] = ' '
			}
		}
		return string(r)
	}
	return a != "" && norm(a) == norm(b)
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
		if it.Event.Type != "edit" && it.Event.Type != "new" {
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
