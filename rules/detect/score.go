package detect

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SetText fills the text signals of f from an edit's added and removed lines
// (AbuseFilter's added_lines and removed_lines). The signals that judge what
// the edit wrote (profanity, nonsense, shouting, repeated characters,
// informal words, markup) look at the inserted text — the words of the added
// lines that the removed lines do not hold — so that a one-word change in a
// long paragraph is judged on that word. Set the sizes (OldSize, NewSize)
// before calling it: Blanking uses them when they are known.
func (f *Features) SetText(added, removed []string) {
	f.AddedChars, f.RemovedChars = runeCount(added), runeCount(removed)
	ins, del := diffTokens(added, removed)
	inserted, deleted := strings.Join(ins, " "), strings.Join(del, " ")
	f.Profanity, f.ProfanityRemoved = Profanity(inserted), Profanity(deleted)
	f.Nonsense = Nonsense(inserted)
	f.Shouting = 0
	if letters(inserted) >= minShoutLetters {
		f.Shouting = ShoutingRatio(inserted)
	}
	f.RepeatedChars = RepeatedChars(inserted)
	f.RefsRemoved = RefsRemoved(removed, added)
	f.LinksAdded = len(AddedLinks(added, removed))
	f.InsertedWords, f.Informal, f.MarkupAdded = 0, 0, 0
	for _, t := range ins {
		if isWordToken(t) {
			f.InsertedWords++
			if informalWords[t] {
				f.Informal++
			}
		}
		if markupTokens[t] {
			f.MarkupAdded++
		}
		f.Informal += strings.Count(t, "!")
	}
	f.SmallFix = isSmallFix(ins, del)
	f.ProseShare = proseShare(added)
	f.TestEdit = hasTestEdit(added) && !hasTestEdit(removed)
	f.Blanking = isBlanking(f.OldSize, f.NewSize, f.AddedChars, f.RemovedChars)
}

// proseShare is the share of the non-blank added lines that are prose,
// not list items, table rows, template parameters or headings.
func proseShare(added []string) float64 {
	n, prose := 0, 0
	for _, l := range added {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		n++
		if !strings.ContainsRune("|*#!{=:;}", rune(l[0])) {
			prose++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(prose) / float64(n)
}

// isSmallFix reports whether an edit only corrects: every inserted word is a
// number or a respelling (edit distance at most a third of its length, or a
// change of case) of a removed word, and it inserts at most 3 words.
func isSmallFix(ins, del []string) bool {
	var iw, dw []string
	for _, t := range ins {
		if isWordToken(t) {
			iw = append(iw, t)
		}
	}
	for _, t := range del {
		if isWordToken(t) {
			dw = append(dw, t)
		}
	}
	if len(iw) == 0 || len(iw) > 3 {
		return false
	}
	for _, w := range iw {
		if isNumber(w) {
			continue
		}
		ok := false
		for _, d := range dw {
			if strings.EqualFold(w, d) || editDistance(strings.ToLower(w), strings.ToLower(d))*3 <= max(utf8.RuneCountInString(w), 3) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return w != ""
}

// editDistance is the Levenshtein distance between two short words (words
// longer than 64 runes are simply "far").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return max(len(ra), len(rb))
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// minShoutLetters is the least inserted text (in letters) judged for
// shouting: one capitalised acronym is not shouting.
const minShoutLetters = 12

// isBlanking: the page is (nearly) emptied. With sizes: the new page keeps
// less than a tenth of an old page of 200 bytes or more. Without sizes
// (offline cases): 500 characters or more removed and replaced by less than a
// tenth of them.
func isBlanking(oldSize, newSize int64, addedChars, removedChars int) bool {
	if oldSize > 0 || newSize > 0 {
		return oldSize >= 200 && newSize*10 < oldSize
	}
	return removedChars >= 500 && addedChars*10 < removedChars
}

func runeCount(lines []string) int {
	n := 0
	for _, l := range lines {
		n += utf8.RuneCountInString(l)
	}
	return n
}

func letters(s string) int {
	n := 0
	for _, r := range s {
		if unicode.IsLetter(r) {
			n++
		}
	}
	return n
}

func isWordToken(t string) bool {
	r, _ := utf8.DecodeRuneInString(t)
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\''
}

// informalWords are words encyclopedic prose rarely adds: first and second
// person, chat, and praise or insult. Compared as written (lower case), so
// "US" and the pronoun "I" in "World War I" do not count. Words that
// articles use in their own sense (gay, hot, fat, rocks) are left out.
var informalWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`i i'm im you your you're youre u ur
		hi hello hey dude yo ya gonna wanna dont cant aint
		cool awesome sexy ugly sucks massive`) {
		m[w] = true
	}
	return m
}()

// markupTokens are the wikitext tokens of references, templates, links and
// tables: constructive edits add them far more often than vandalism does.
var markupTokens = map[string]bool{"<": false, "[[": true, "]]": true, "{{": true, "}}": true, "ref": true, "</": true, "/>": true, "http": true, "https": true, "|": true}

// testEditRE matches the placeholder texts of MediaWiki's editing toolbars
// (WikiEditor and the old edit toolbar): an edit that saves them is a test
// edit.
var testEditRE = regexp.MustCompile(`(?i)'''Bold text'''|''Italic text''|\[\[Link title\]\]|\[http://www\.example\.com link title\]|== ?Headline text ?==|\[\[(?:File|Image):Example\.jpg|\[\[Media:Example\.ogg|<math>Insert formula here</math>|<nowiki>Insert non-formatted text here</nowiki>`)

// hasTestEdit reports whether lines hold toolbar placeholder text. A cheap
// case-insensitive pre-check on the words every placeholder contains keeps
// the regexp off nearly all lines.
func hasTestEdit(lines []string) bool {
	for _, l := range lines {
		low := strings.ToLower(l)
		if (strings.Contains(low, "text") || strings.Contains(low, "title") || strings.Contains(low, "example") ||
			strings.Contains(low, "insert")) && testEditRE.MatchString(l) {
			return true
		}
	}
	return false
}

// autoBlankSummaryRE matches MediaWiki's automatic summaries of a page
// blanked or replaced (with or without the enwiki "←" link prefix).
var autoBlankSummaryRE = regexp.MustCompile(`(?i)^\s*(?:\[\[[^\]]*\|←\]\]|←)?\s*(?:Blanked the page|Removed all content from page|Replaced content with)`)

// revertSummaryRE matches edit summaries of undos, rollbacks and reverts.
var revertSummaryRE = regexp.MustCompile(`(?i)\b(undid|undo|revert(ed|ing)?|rv[v]?|rollback|restor(e|ed|ing))\b`)

// sectionOnlyRE matches the automatic summary of a section edit with nothing
// written by the editor.
var sectionOnlyRE = regexp.MustCompile(`^\s*/\*.*?\*/\s*$`)

// summaryKind classifies an edit summary: empty, only the automatic
// section name, or (otherwise) a revert.
func summaryKind(s string) (empty, section, revert bool) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return true, false, false
	case sectionOnlyRE.MatchString(s):
		return false, true, false
	}
	return false, false, revertSummaryRE.MatchString(s)
}
