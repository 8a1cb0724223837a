package detect

import (
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ORES is the edit-time feature set of the ORES "reverted" demo model
// (wikimedia/editquality, datasets/demo), computed the way revscoring does
// from an edit's diff. The user half of that set (anonymous, bot or sysop,
// seconds since registration) is in Features itself.
type ORES struct {
	// LongestRepeatedCharAdded is the longest run of one character
	// (case-folded) in the inserted text; 1 when nothing is inserted.
	LongestRepeatedCharAdded int
	// WordsAdded and WordsRemoved count the word tokens the edit inserts and
	// deletes.
	WordsAdded, WordsRemoved int
	// BadwordsDelta, InformalsDelta and NonStopwordDelta are revscoring's
	// match_prop_delta_sum: over each distinct match (lower-cased) of the
	// bad-word, informal-word or non-stopword class, its change in count
	// divided by its count before the edit (+1 when the count grows).
	BadwordsDelta, InformalsDelta, NonStopwordDelta float64
}

// MWRegistrationEpoch is the registration time revscoring assumes for
// accounts that predate registration records (2006-01-01, Unix seconds).
const MWRegistrationEpoch = 1136073600

// ORESText computes the text half of the ORES feature set from an edit's
// added and removed lines. oldText is the page before the edit when known:
// it gives the exact "count before the edit" of each match; without it the
// count in the removed lines stands in (a lower bound, so a growing count's
// proportion can come out larger than revscoring's).
func ORESText(added, removed []string, oldText string) ORES {
	ins, del := diffTokens(added, removed)
	var o ORES
	o.LongestRepeatedCharAdded = longestRun(ins)
	for _, t := range ins {
		if isLetterToken(t) {
			o.WordsAdded++
		}
	}
	for _, t := range del {
		if isLetterToken(t) {
			o.WordsRemoved++
		}
	}
	addedText, removedText := strings.Join(added, "\n"), strings.Join(removed, "\n")
	before := removedText
	if oldText != "" {
		before = oldText
	}
	aw, rw := wordCounts(addedText), wordCounts(removedText)
	bw := rw
	if oldText != "" {
		bw = wordCounts(before)
	}
	o.BadwordsDelta = propDeltaSum(classCounts(badwordsRE, aw), classCounts(badwordsRE, rw), classCounts(badwordsRE, bw))
	o.InformalsDelta = propDeltaSum(classCounts(informalsRE, aw), classCounts(informalsRE, rw), classCounts(informalsRE, bw))
	o.NonStopwordDelta = propDeltaSum(nonStopwords(aw), nonStopwords(rw), nonStopwords(bw))
	return o
}

// wordCounts counts the lower-cased words of text (runs of letters, digits
// and inner apostrophes).
func wordCounts(text string) map[string]int {
	out := map[string]int{}
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' }) {
		if w = strings.ToLower(strings.Trim(w, "'")); w != "" {
			out[w]++
		}
	}
	return out
}

// classCounts keeps the words that re matches whole. Matching word by word
// (each distinct word once) instead of scanning the text with revscoring's
// \b…\b alternation is what makes this fast enough for the live stream; the
// few multi-word patterns ("test edit", "crack head") are matched by their
// words alone.
func classCounts(re *regexp.Regexp, words map[string]int) map[string]int {
	out := map[string]int{}
	for w, n := range words {
		if re.MatchString(w) {
			out[w] += n
		}
	}
	return out
}

func nonStopwords(words map[string]int) map[string]int {
	out := map[string]int{}
	for w, n := range words {
		if !stopwords[w] && !isNumber(w) {
			out[w] += n
		}
	}
	return out
}

// propDeltaSum is revscoring's prop_delta summed: for each item whose count
// changes by d, d/(old+1) when it grows and d/old when it shrinks. The
// change is what the added lines hold minus what the removed lines hold
// (the unchanged text cancels).
func propDeltaSum(added, removed, old map[string]int) float64 {
	// Summed in key order, so that the result does not depend on map order.
	keys := make([]string, 0, len(added)+len(removed))
	for k := range added {
		keys = append(keys, k)
	}
	for k := range removed {
		if _, ok := added[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	sum := 0.0
	for _, k := range keys {
		d := added[k] - removed[k]
		if d > 0 {
			sum += float64(d) / float64(old[k]+1)
		} else if d < 0 {
			sum += float64(d) / float64(max(old[k], -d))
		}
	}
	return sum
}

// isLetterToken: revscoring's "word" tokens start with a letter (numbers
// are tokens of their own).
func isLetterToken(t string) bool {
	r, _ := utf8.DecodeRuneInString(t)
	return unicode.IsLetter(r)
}

func longestRun(tokens []string) int {
	best := 1
	for _, t := range tokens {
		var prev rune = -1
		n := 0
		for _, r := range strings.ToLower(t) {
			if r == prev {
				n++
			} else {
				prev, n = r, 1
			}
			best = max(best, n)
		}
	}
	return best
}

// The English bad-word and informal-word patterns are revscoring's
// (wikimedia/revscoring, revscoring/languages/english.py, MIT licence,
// Copyright (c) 2014 Aaron Halfaker), matched against whole lower-cased words
// as revscoring's \b…\b does. They define "bad" and "informal" in the ORES
// feature set; the Profanity detector (profanity.go) is a separate, stricter
// list for the rule variables.
var (
	badwordsRE  = wordsRE(revscoringBadwords)
	informalsRE = wordsRE(revscoringInformals)
)

func wordsRE(patterns []string) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + strings.Join(patterns, "|") + `)$`)
}

var revscoringBadwords = []string{
	`a+[sr]+s+e*([-_ ]?butt|clown|face|hole|hat|e?s)?`,
	`(fat|stupid|lazy)a+[sr]+s+e*([-_ ]?butt|clown|face|hole|hat|e?s)?`,
	`autofel+at(e|io|ing|ion)s?`,
	`b+i+o?t+c+h+\w*`,
	`bootlip`,
	`blow(job|me)\w*`,
	`bollock\w*`,
	`boo+ger\w*`,
	`b+u+t+t+([-_ ]?clown|face|hole|hat|es)?`,
	`(ass|arse)b+u+t+t+([-_ ]?clown|face|hole|hat|es)?`,
	`bugg(er|ing)\w*`,
	`butthead`, `buttface`, `buttsex`, `buttf+u+c*k+\w*`,
	`chlamydia`,
	`cholo`,
	`chug`,
	`clunge\w*`,
	`cock\w*`,
	`coo+n\w*`,
	`[ck]racker\w*`,
	`c+?u+?n+?t\w*`,
	`crack[-_ ]?head\w*`,
	`crooks?`,
	`defraud`,
	`limpdick\w*`,
	`dick\w*`,
	`d+?i+?l+?d+?o+?\w*`,
	`dishonest\w*`,
	`dot[-_ ]?head\w*`,
	`dyk(e|ing)\w*`,
	`(f|ph)a+g+(ot)?\w*`,
	`fart\w*`,
	`fraud`,
	`f+u+c*k+\w*`,
	`gh?[ea]+y+\w*`,
	`g[yi]p+(o|y|ie?)?`, `gyppie`,
	`goo+k`,
	`gringo`,
	`he+rpe+s`,
	`hill-?billy`,
	`hom(a|o|er)(sexual)?\w*`,
	`hooker\w*`,
	`injun\w*`,
	`j+a+p+o?`,
	`k[iy]+ke`,
	`kwash(i|ee)`,
	`l+?e+?s+?b+?(o+?|i+?a+?n+?)\w*`,
	`liar`,
	`lick(er)?s?`,
	`meth`,
	`meth[-_ ]?head\w*`,
	`naz+i(sm?)?`,
	`nig`, `n+?i+?gg+?[aeious]+?\w*`, `niglet`, `nigor`, `nigr`, `nigra`,
	`nonc(e|ing)\w*`,
	`overdose[sd]`,
	`peckerwood\w*`,
	`p(a?e|æ)do((f|ph)[iy]le)?s?`,
	`peni(s)?\w*`,
	`piss\w*`,
	`prostitute\w*`,
	`pot[-_ ]?head\w*`,
	`q(w|u)ash(i|ee)`,
	`rag[-_ ]?head`,
	`red[-_ ]?(neck|skin)`,
	`round[-_ ]?eye`,
	`satan(ic|ism|ist)s?`,
	`scabies`,
	`s+h+[ia]+t+\w*`,
	`s+?l+?u+?t+?\w*`,
	`spi(g|c|k)+`,
	`spigotty`,
	`spik`,
	`spook`,
	`squarehead`,
	`stupid(s+h+[ia]+t+|c+u+n+t+|f+u+c*k+|t+w+a+t+|w+h+o+r+e+)\w*`,
	`subnormal`,
	`su+c*k+(er|iest|a)`,
	`syphil+is`,
	`terror(ist|ism|i[zs](e|ing|ed))s?`,
	`thei[fv](e?s)?`,
	`tran(ny|sexual)`,
	`t+?w+?a+?t+?\w*`,
	`ti+t+((s|ies|y)[\w]*)?`,
	`v+?a+?g+?(i+n+a+)?`, `vajay?jay?\w*`,
	`wank\w*`, `wetback\w*`, `w+h+o+r+(e+|ing)\w*`, `w+o+g+`, `w+o+p+`,
	`yank(e+)?`, `yid`,
	`zipperhead`,
}

var revscoringInformals = []string{
	`ain'?t`, `a+we?some?(r|st)?`,
	`(b+l+a+h*)+`,
	`b+?o+?n+?e+?r+?`,
	`boobs?`,
	`bullshit`,
	`bro`,
	`(bye)+`,
	`can'?t`,
	`[ck](oo+|e+w+)l+\w*`,
	`[ck]+r+a+p+(s|ier|iest)?`,
	`chu+g+`,
	`dad+(y|a)?`,
	`don'?t`, `dum+b*(y|ies|er|est)?(ass)?`,
	`d+?u+?d+?e+?\w*`,
	`good[-_]?bye`,
	`h+[aiou]+(h[aeiou]*)*`,
	`mw?[au]+h+[aiou]+(h[aeiou]*)*`,
	`h+[e]+(h[aeiou]*)+`,
	`hel+?o+`, `h(aa+?|e+?)y+?`,
	`h+?m+?`,
	`i`, `i+?d+?i+?o+?t+?`,
	`(la)+`,
	`loser`,
	`l+[uo][uol]*l`,
	`l+?m+?a+?o+?`,
	`l[ou]+?ve?`,
	`m+?e+?o+?w+?`,
	`munch\w*`,
	`mom+(y|a)?`,
	`moron`,
	`nerds?`,
	`noo+b(y|ie|s)?\w*`,
	`no+?pe`,
	`o+?k+?(a+?y+?)?`,
	`o+?m+?g+?\w*`,
	`poo+?p\w*`,
	`retard\w*`, `tard`,
	`r+?o+?f+?l+?(mao)?`,
	`s+?e+?x+?y+?`,
	`so+?rry`,
	`shove`,
	`smelly`,
	`soo+?`,
	`stink(s|y)?`,
	`s+?t+?[uo]+?p+?i+?d+?\w*`,
	`suck(s|ing|er)?`, `sux`,
	`shouldn'?t`,
	`test +edit`, `t+?u+?r+?d+?s?\w*`,
	`wasn'?t`,
	`w+[oua]+t+`, `wtf\w*`, `wh?[ua]+?t?[sz]+[ua]+p`, `s+?u+?p+?`,
	`wu+?z+?`,
	`won'?t`,
	`w+?o+?o+?f+?`,
	`ya'?ll`, `y+?a+?y+?`, `y+?e+?a+?h?`, `you('?(ve|re|ll))?`,
	`y+?o+?l+?o+?`,
}

// stopwords is NLTK's English stopword list, which revscoring's English
// non-stopword features use.
var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`i me my myself we our ours ourselves you you're you've you'll you'd your
		yours yourself yourselves he him his himself she she's her hers herself it it's its itself they them their
		theirs themselves what which who whom this that that'll these those am is are was were be been being have
		has had having do does did doing a an the and but if or because as until while of at by for with about
		against between into through during before after above below to from up down in out on off over under
		again further then once here there when where why how all any both each few more most other some such no
		nor not only own same so than too very s t can will just don don't should should've now d ll m o re ve y
		ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't
		ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won
		won't wouldn wouldn't`) {
		m[w] = true
	}
	return m
}()
