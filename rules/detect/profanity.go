package detect

import (
	"strings"
	"unicode"
)

// badWords are the words Profanity counts, lower case. A trailing "*" makes
// the entry a prefix (fuck* matches fucking, fucker). Words that are also
// ordinary English, names or places (dick, cock, gay, sex, cum, ass, butt,
// tits, homo, weed, prick, u, Slutsk, Moroni, farther) are left out or
// listed exactly on purpose: a patrol tool must not flag articles about them.
var badWords = []string{
	"fuck*", "motherfuck*", "fck", "fuk", "fucc", "shit", "shits", "shitty", "shite", "bullshit", "horseshit",
	"cunt*", "bitch*", "bastards", "asshole*", "arsehole*", "dumbass", "jackass", "smartass", "fatass",
	"wanker*", "wank", "twat*", "crap", "crappy", "damn", "dammit", "goddamn", "fag", "fags", "faggot*",
	"nigger*", "nigga*", "retard", "retards", "retarded", "slut", "sluts", "slutty", "whore*", "penis",
	"penises", "vagina", "boobs", "boobies", "titties", "poop*", "poo", "fart", "farts", "farted", "farting",
	"dildo*", "jizz", "blowjob*", "handjob*", "pussy", "pussies", "idiot*", "stupid", "dumb", "moron",
	"morons", "moronic", "loser", "losers", "sucks", "butthole", "butthead", "lol", "lmao", "rofl", "lulz",
	"haha*", "hehe*", "omg", "wtf", "stfu", "gtfo", "yolo", "noob*", "boner", "douche*", "skank*", "pedo",
	"paedo", "pedophile",
}

// badWordSet indexes badWords, as written and with runs of a repeated
// letter collapsed (for elongated words such as "fuuuuck").
type badWordSet struct {
	exact, exactCollapsed       map[string]bool
	prefixes, prefixesCollapsed []string
}

var profanityList = func() badWordSet {
	s := badWordSet{exact: map[string]bool{}, exactCollapsed: map[string]bool{}}
	for _, w := range badWords {
		if p, ok := strings.CutSuffix(w, "*"); ok {
			s.prefixes = append(s.prefixes, p)
			s.prefixesCollapsed = append(s.prefixesCollapsed, collapseRuns(p))
			continue
		}
		s.exact[w] = true
		s.exactCollapsed[collapseRuns(w)] = true
	}
	return s
}()

// match reports whether a lower-case word is a bad word. An elongated word
// (a letter three times or more in a row) is compared collapsed, so that
// "shiiiit" matches but "pope" does not match the collapsed "poop".
func (s badWordSet) match(w string) bool {
	if s.exact[w] || hasAnyPrefix(w, s.prefixes) {
		return true
	}
	if !elongated(w) {
		return false
	}
	c := collapseRuns(w)
	return s.exactCollapsed[c] || hasAnyPrefix(c, s.prefixesCollapsed)
}

func hasAnyPrefix(w string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(w, p) {
			return true
		}
	}
	return false
}

// elongated reports whether s has one character three times in a row.
func elongated(s string) bool {
	run := 1
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			run++
			if run >= 3 {
				return true
			}
		} else {
			run = 1
		}
	}
	return false
}

// Profanity counts bad-word hits in text. Words are compared whole (word
// boundary aware: "Scunthorpe" and "assessment" do not match), after folding
// lookalikes as ccnorm does inside words that mix letters with digits or
// symbols ("sh1t", "f@ck"), lower-casing, and collapsing runs of a repeated
// letter ("fuuuuck").
func Profanity(text string) int {
	n := 0
	for _, w := range profanityTokens(text) {
		if w == "" {
			continue
		}
		if profanityList.match(w) {
			n++
		}
	}
	return n
}

// profanityTokens splits text into lower-case, folded word tokens. A token
// is a run of letters, digits and the leet symbols @ and $; digits and
// symbols are folded to letters only when the token also has a letter.
func profanityTokens(text string) []string {
	raw := strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '@' && r != '$' && r != '\''
	})
	out := raw[:0]
	for _, w := range raw {
		w = strings.Trim(w, "'")
		hasLetter, hasOther := false, false
		for _, r := range w {
			if unicode.IsLetter(r) {
				hasLetter = true
			} else if r != '\'' {
				hasOther = true
			}
		}
		if !hasLetter {
			continue
		}
		if hasOther || !isASCII(w) {
			w = CCNorm(w)
		}
		out = append(out, strings.ToLower(w))
	}
	return out
}

// collapseRuns replaces each run of one character with a single one.
func collapseRuns(s string) string {
	var b strings.Builder
	last := rune(-1)
	for _, r := range s {
		if r != last {
			b.WriteRune(r)
		}
		last = r
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
