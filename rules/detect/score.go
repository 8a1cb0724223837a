package detect

import (
	"fmt"
	"math"
	"regexp"
	"sort"
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

// newAccountAge is the age under which an account is not autoconfirmed on
// most wikis (4 days).
const newAccountAge = 4 * 24 * 3600

// youngPageAge: a page younger than a year is young.
const youngPageAge = 365 * 24 * 3600

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

// Input names, in the order of Inputs. They name the model's weights in
// model.go and in the training report.
const (
	inAnonymous = iota
	inEditCount
	inWarns
	inNoSummary
	inRevertSummary
	inMinor
	inProfanity
	inProfanityRemoved
	inInformal
	inNonsense
	inShouting
	inRepeated
	inLargeRemoval
	inRefsRemoved
	inMarkupAdded
	inInsertedWords
	inRecentReversions
	inLinkSpam
	inSmallFix
	inTestEdit
	inAutoBlank
	inRemoved
	inSectionSummary
	inProse
	inNewAccount
	inYoungPage
	numInputs
)

// NumInputs is the number of model inputs.
const NumInputs = numInputs

// InputName names model input i (see Inputs).
func InputName(i int) string { return inputNames[i] }

var inputNames = [numInputs]string{
	"anonymous", "log10_edit_count", "log_warns", "no_summary", "revert_summary", "minor",
	"profanity", "profanity_removed", "informal", "nonsense", "shouting", "repeated_chars",
	"large_removal", "refs_removed", "markup_added", "log_inserted_words", "log_recent_reversions",
	"link_spam", "small_fix", "test_edit", "blank_summary", "log_removed",
	"section_summary_only", "prose", "new_account", "young_page",
}

// Inputs maps features to the model's inputs: bounded, mostly 0..3, so that
// one regularisation strength fits them all.
func Inputs(f Features) [numInputs]float64 {
	var x [numInputs]float64
	if f.UserType == "ip" || f.UserType == "temp" {
		x[inAnonymous] = 1
	}
	// The edit being judged counts: an unknown count (0, as for IPs live)
	// is taken as 1, which is what the training data holds for a first edit.
	x[inEditCount] = math.Log10(1 + float64(max(1, f.UserEditCount)))
	x[inWarns] = math.Log1p(float64(min(max(0, f.UserWarns), 100)))
	empty, section, revert := summaryKind(f.Summary)
	x[inNoSummary] = b2f(empty)
	x[inSectionSummary] = b2f(section)
	x[inProse] = b2f(f.ProseShare >= 0.5)
	// A registered account younger than 4 days is not yet autoconfirmed.
	x[inNewAccount] = b2f(f.UserType == "named" && f.UserAge > 0 && f.UserAge < newAccountAge)
	// Vandals go for established, well-known articles; pages less than a
	// year old are mostly edited by the people who wrote them. 0 is unknown.
	x[inYoungPage] = b2f(f.PageAge > 0 && f.PageAge < youngPageAge)
	x[inRevertSummary] = b2f(revert)
	x[inMinor] = b2f(f.Minor)
	x[inProfanity] = perWords(f.Profanity, f.InsertedWords, 3)
	x[inProfanityRemoved] = float64(min(f.ProfanityRemoved, 3))
	x[inInformal] = perWords(f.Informal, f.InsertedWords, 3)
	x[inNonsense] = f.Nonsense
	x[inShouting] = f.Shouting
	x[inRepeated] = float64(min(f.RepeatedChars, 3))
	x[inLargeRemoval] = b2f(f.Blanking || f.RemovedChars-f.AddedChars >= 1000 || f.EditDelta <= -2000)
	x[inRefsRemoved] = float64(min(f.RefsRemoved, 3))
	x[inMarkupAdded] = math.Log1p(float64(min(f.MarkupAdded, 50)))
	x[inInsertedWords] = math.Log1p(float64(min(f.InsertedWords, 2000)))
	x[inRecentReversions] = math.Log1p(float64(min(max(0, f.NumRecentReversions), 50)))
	x[inSmallFix] = b2f(f.SmallFix)
	x[inTestEdit] = b2f(f.TestEdit)
	x[inAutoBlank] = b2f(autoBlankSummaryRE.MatchString(f.Summary))
	// Net removal: 0 below 100 characters, 1 at 1,000, 2 at 10,000.
	x[inRemoved] = math.Max(0, math.Log10(1+float64(max(f.RemovedChars-f.AddedChars, int(-f.EditDelta), 0)))-2)
	x[inLinkSpam] = b2f(f.LinksAdded >= 3 && f.MarkupAdded <= 2*f.LinksAdded+2 && f.UserEditCount < 50)
	return x
}

// perWords is a count capped at limit, scaled down for long insertions
// (beyond 40 words) so that a rewrite of a plot summary is not judged like a
// one-line addition.
func perWords(count, words int, limit float64) float64 {
	v := float64(count)
	if words > 40 {
		v = v * 40 / float64(words)
	}
	return math.Min(v, limit)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Model is a logistic regression over Inputs: score = σ(Bias + Σ Wᵢ·xᵢ).
type Model struct {
	Bias    float64
	Weights [numInputs]float64
}

// Score is σ(Bias + W·x) for features f.
func (m *Model) Score(f Features) float64 {
	x := Inputs(f)
	return sigmoid(m.logit(x))
}

func (m *Model) logit(x [numInputs]float64) float64 {
	z := m.Bias
	for i, v := range x {
		z += m.Weights[i] * v
	}
	return z
}

// Logit is Bias + W·x.
func (m *Model) Logit(x [numInputs]float64) float64 { return m.logit(x) }

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Sigmoid is the logistic function.
func Sigmoid(z float64) float64 { return sigmoid(z) }

// DefaultModel returns the trained model VandalismScore uses.
func DefaultModel() Model { return defaultModel }

// PriorModel returns the hand-set prior the training starts from and
// regularises towards.
func PriorModel() Model { return Model{Bias: priorBias, Weights: priorWeights} }

// VandalismScore is the combined vandalism score of an edit, 0..1: the
// probability of vandalism under the trained model (model.go), a logistic
// regression over the performer (anonymous, edit count, warnings), the edit
// summary, and the text signals of SetText. Bots and edits outside the
// article namespace score 0 (the model is trained on article edits).
func VandalismScore(f Features) float64 {
	if f.Bot {
		return 0
	}
	return defaultModel.Score(f)
}

// VandalismReasons explains a score: the inputs that raised it most, in
// human words, strongest first. Inputs that lower the score are not listed.
func VandalismReasons(f Features) []string {
	x := Inputs(f)
	type contrib struct {
		w      float64
		reason string
	}
	var cs []contrib
	for i, v := range x {
		c := defaultModel.Weights[i] * v
		if c < 0.25 {
			continue
		}
		cs = append(cs, contrib{c, reasonText(i, f)})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].w > cs[j].w })
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.reason)
	}
	return out
}

func reasonText(i int, f Features) string {
	switch i {
	case inAnonymous:
		return "edit by an unregistered (" + f.UserType + ") user"
	case inEditCount:
		return fmt.Sprintf("user has %d edits", f.UserEditCount)
	case inWarns:
		return fmt.Sprintf("user has %d warnings", f.UserWarns)
	case inNoSummary:
		return "no edit summary"
	case inProfanity:
		return fmt.Sprintf("adds %d profane word(s)", f.Profanity)
	case inInformal:
		return fmt.Sprintf("adds %d informal word(s) or exclamation(s)", f.Informal)
	case inNonsense:
		return fmt.Sprintf("added text looks like gibberish (%.0f%%)", 100*f.Nonsense)
	case inShouting:
		return fmt.Sprintf("added text is shouting (%.0f%% capitals)", 100*f.Shouting)
	case inRepeated:
		return fmt.Sprintf("adds %d run(s) of a repeated character", f.RepeatedChars)
	case inLargeRemoval:
		return fmt.Sprintf("removes %d characters", max(f.RemovedChars-f.AddedChars, int(-f.EditDelta)))
	case inTestEdit:
		return "saves the editing toolbar's placeholder text (a test edit)"
	case inAutoBlank:
		return "the page was blanked or its content replaced"
	case inRemoved:
		return fmt.Sprintf("removes %d characters", max(f.RemovedChars-f.AddedChars, int(-f.EditDelta)))
	case inRefsRemoved:
		return fmt.Sprintf("removes %d reference(s)", f.RefsRemoved)
	case inRecentReversions:
		return fmt.Sprintf("page had %d recent reverts", f.NumRecentReversions)
	case inLinkSpam:
		return fmt.Sprintf("adds %d external links", f.LinksAdded)
	}
	return inputNames[i]
}
