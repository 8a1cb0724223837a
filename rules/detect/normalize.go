package detect

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// confusables maps lookalike characters to the canonical upper-case Latin
// letter they imitate, in the spirit of AbuseFilter's equivset (ccnorm):
// leetspeak digits and symbols, Latin letters with diacritics, and Cyrillic
// and Greek homoglyphs. Characters not listed are only upper-cased.
var confusables = func() map[rune]rune {
	m := map[rune]rune{
		'0': 'O', '1': 'I', '3': 'E', '4': 'A', '5': 'S', '7': 'T', '8': 'B', '9': 'G',
		'@': 'A', '$': 'S', '€': 'E', '£': 'L', '¥': 'Y', '¢': 'C',
		'ß': 'S', 'Æ': 'E', 'æ': 'E', 'Œ': 'E', 'œ': 'E', 'Ø': 'O', 'ø': 'O', 'Đ': 'D', 'đ': 'D',
		'Ł': 'L', 'ł': 'L', 'ı': 'I', 'ſ': 'S', 'ƒ': 'F', 'Þ': 'P', 'þ': 'P', 'Ð': 'D', 'ð': 'D',
		'ɰ': 'W', 'ω': 'W', 'Ш': 'W', 'ш': 'W', 'Щ': 'W', 'щ': 'W', 'ɯ': 'W',
	}
	groups := map[rune]string{
		'A': "ÀÁÂÃÄÅàáâãäåĀāĂăĄąǍǎȀȁȂȃȦȧΑАаαάΆ", 'B': "ВвΒβЬьƀɓ", 'C': "ÇçĆćĈĉĊċČčСсϲ",
		'D': "ĎďԁɗḌḍ", 'E': "ÈÉÊËèéêëĒēĔĕĖėĘęĚěΕεέЕеЁёЄє", 'F': "Ϝғ",
		'G': "ĜĝĞğĠġĢģǦǧ", 'H': "ĤĥĦħΗНнћђ", 'I': "ÌÍÎÏìíîïĨĩĪīĬĭĮįİΙιίϊІіЇї",
		'J': "ĴĵЈј", 'K': "ĶķΚκКкќ", 'L': "ĹĺĻļĽľĿŀ", 'M': "ΜМм", 'N': "ÑñŃńŅņŇňΝηПп",
		'O': "ÒÓÔÕÖòóôõöŌōŎŏŐőΟοόОоσ", 'P': "ΡρРр", 'Q': "ԛ", 'R': "ŔŕŖŗŘřЯяг",
		'S': "ŚśŜŝŞşŠšЅѕ", 'T': "ŢţŤťŦŧΤτТт", 'U': "ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųυμЦц",
		'V': "νѴѵ", 'W': "ŴŵѡԜԝ", 'X': "ΧχХх×", 'Y': "ÝýÿŶŷŸΥγУуЎў", 'Z': "ŹźŻżŽžΖ",
	}
	for to, from := range groups {
		for _, r := range from {
			m[r] = to
		}
	}
	return m
}()

// CCNorm folds confusable and lookalike characters to a canonical form and
// upper-cases the result, like AbuseFilter's ccnorm: CCNorm("w1k1p3d14") is
// "WIKIPEDIA" and Cyrillic "раураl" becomes "PAYPAL".
func CCNorm(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == utf8.RuneError {
			continue
		}
		if c, ok := confusables[r]; ok {
			b.WriteRune(c)
			continue
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// Norm is AbuseFilter's norm: CCNorm, then runs of one character collapsed
// to one (rmdoubles), then everything but letters and digits removed
// (rmspecials, rmwhitespace), in that order: Norm("!!ω..ɰ") is "WW" and
// Norm("Sh1iiiiit!!!") is "SHIT".
func Norm(s string) string {
	s = CCNorm(s)
	var b strings.Builder
	b.Grow(len(s))
	last := rune(-1)
	for _, r := range s {
		if r == last {
			continue
		}
		last = r
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// SpecialRatio is AbuseFilter's specialratio: the share of characters that
// are neither letters, digits nor whitespace. It is 0 for an empty string.
func SpecialRatio(s string) float64 {
	var n, special int
	for _, r := range s {
		n++
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsSpace(r) {
			special++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(special) / float64(n)
}

// maxPatternLen bounds the patterns RCount compiles.
const maxPatternLen = 4096

// RCount counts the non-overlapping matches of an RE2 pattern in s, case
// insensitively, like AbuseFilter's rcount. An invalid pattern counts 0 (rule
// authors see the error at load time when the pattern is a literal; see
// ValidPattern).
func RCount(pattern, s string) int {
	re, err := compileFold(pattern)
	if err != nil {
		return 0
	}
	return len(re.FindAllStringIndex(s, -1))
}

// ValidPattern reports why a pattern would not compile in RCount, or nil.
func ValidPattern(pattern string) error {
	_, err := compileFold(pattern)
	return err
}

func compileFold(pattern string) (*regexp.Regexp, error) {
	if len(pattern) > maxPatternLen {
		return nil, errPatternTooLong
	}
	return regexp.Compile("(?i)" + pattern)
}

type detectError string

func (e detectError) Error() string { return string(e) }

const errPatternTooLong = detectError("pattern longer than 4096 bytes")
