package detect

import (
	"strings"
	"unicode"
)

// keyboardRuns are sequences of neighbouring keys (QWERTY rows) that people
// type when mashing the keyboard.
var keyboardRuns = []string{"qwertyuiop", "asdfghjkl", "zxcvbnm", "poiuytrewq", "lkjhgfdsa", "mnbvcxz"}

// Nonsense scores how much of text looks like keyboard mashing or
// gibberish, from 0 (none) to 1 (all): the share of the letters, in Latin
// words of 4 letters or more, that belong to a word with no vowel, a run of
// 6 consonants, 4 neighbouring keys typed in a row, or the same letter
// repeated 4 times. All-capital words (acronyms, Roman numerals) and words
// in other scripts are not judged. Text with fewer than 4 judged letters
// scores 0.
func Nonsense(text string) float64 {
	var judged, bad int
	for _, w := range words(text) {
		if !isLatinWord(w) {
			continue
		}
		n := len(w)
		if n < 4 || strings.ToUpper(w) == w {
			continue
		}
		judged += n
		if gibberish(strings.ToLower(w)) {
			bad += n
		}
	}
	if judged < 4 {
		return 0
	}
	return float64(bad) / float64(judged)
}

func isLatinWord(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func isVowel(c byte) bool {
	switch c {
	case 'a', 'e', 'i', 'o', 'u', 'y':
		return true
	}
	return false
}

// gibberish judges one lower-case ASCII word.
func gibberish(w string) bool {
	vowels, run, same := 0, 0, 1
	for i := 0; i < len(w); i++ {
		if isVowel(w[i]) {
			vowels++
			run = 0
		} else {
			run++
			if run >= 6 {
				return true
			}
		}
		if i > 0 && w[i] == w[i-1] {
			same++
			if same >= 4 {
				return true
			}
		} else {
			same = 1
		}
	}
	if vowels == 0 {
		return true
	}
	if len(w) >= 4 {
		for i := 0; i+4 <= len(w); i++ {
			for _, row := range keyboardRuns {
				if strings.Contains(row, w[i:i+4]) {
					return true
				}
			}
		}
	}
	return false
}

// RepeatedChars counts the runs of 5 or more of one character in text
// (case-insensitive), the "aaaaaaa" and "!!!!!!" of vandalism. Digits,
// whitespace and wiki markup characters ('=-|{}[]'*#:;.,<>/ and the like)
// repeat legitimately (””'bold italic””', ----, 100000) and are not
// counted.
func RepeatedChars(text string) int {
	count, run := 0, 0
	var last rune = -1
	for _, r := range text {
		r = unicode.ToLower(r)
		if r == last {
			run++
		} else {
			if run >= 5 && countsAsRepeat(last) {
				count++
			}
			last, run = r, 1
		}
	}
	if run >= 5 && countsAsRepeat(last) {
		count++
	}
	return count
}

func countsAsRepeat(r rune) bool {
	return unicode.IsLetter(r) || r == '!' || r == '?'
}

// ShoutingRatio is the share of upper-case letters among the letters of
// words of 2 letters or more. 0 when there are no such letters.
func ShoutingRatio(text string) float64 {
	var letters, upper int
	for _, w := range words(text) {
		var l, u int
		for _, r := range w {
			if unicode.IsLetter(r) {
				l++
				if unicode.IsUpper(r) {
					u++
				}
			}
		}
		if l < 2 {
			continue
		}
		letters += l
		upper += u
	}
	if letters == 0 {
		return 0
	}
	return float64(upper) / float64(letters)
}
