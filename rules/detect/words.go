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
	ins, _ := diffTokens(added, removed)
	return strings.Join(ins, " ")
}

// diffTokens splits both sides into words and marks and returns the tokens
// of added in excess of removed (ins) and of removed in excess of added
// (del), each in its side's order. Tokens are compared as written.
func diffTokens(added, removed []string) (ins, del []string) {
	var a, b []string
	for _, l := range added {
		a = appendTokens(a, l)
	}
	for _, l := range removed {
		b = appendTokens(b, l)
	}
	excess := make(map[string]int, len(a)+len(b))
	for _, w := range a {
		excess[w]++
	}
	for _, w := range b {
		excess[w]--
	}
	for _, w := range a {
		if excess[w] > 0 {
			excess[w]--
			ins = append(ins, w)
		}
	}
	for _, w := range b {
		if excess[w] < 0 {
			excess[w]++
			del = append(del, w)
		}
	}
	return ins, del
}

// appendTokens appends the words of line and its runs of other non-space
// characters to out, so that "!!!" and "<ref>" survive the multiset
// difference.
func appendTokens(out []string, line string) []string {
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
