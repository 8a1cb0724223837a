package detect

import (
	"strings"
	"unicode"
)

// words splits text into word tokens: maximal runs of letters, digits and
// apostrophes inside words. Wiki markup and punctuation separate words.
func words(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

// InsertedText is the text an edit really adds: the words of the added lines
// minus (as a multiset) the words of the removed lines, joined by spaces in
// their order of appearance. An edit that changes one word of a long
// paragraph inserts one word, not the paragraph that added_lines holds.
func InsertedText(added, removed []string) string {
	return strings.Join(bagDiff(added, removed), " ")
}

// bagDiff returns the tokens of a that are not matched by a token of b
// (multiset difference), in a's order. Tokens are compared as written.
func bagDiff(a, b []string) []string {
	have := map[string]int{}
	for _, l := range b {
		for _, w := range wordsAndMarks(l) {
			have[w]++
		}
	}
	var out []string
	for _, l := range a {
		for _, w := range wordsAndMarks(l) {
			if have[w] > 0 {
				have[w]--
				continue
			}
			out = append(out, w)
		}
	}
	return out
}

// wordsAndMarks splits a line into words and runs of other non-space
// characters, so that "!!!" and "<ref>" survive the multiset difference.
func wordsAndMarks(line string) []string {
	var out []string
	start := -1
	kind := 0 // 1 word, 2 mark
	for i, r := range line {
		k := 2
		switch {
		case unicode.IsSpace(r):
			k = 0
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'':
			k = 1
		}
		if k != kind {
			if start >= 0 {
				out = append(out, line[start:i])
			}
			start = -1
			if k != 0 {
				start = i
			}
			kind = k
		}
	}
	if start >= 0 {
		out = append(out, line[start:])
	}
	return out
}
