package detect

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestProfanity(t *testing.T) {
	tests := []struct {
		name, text string
		want       int
	}{
		{"empty", "", 0},
		{"clean", "The Scunthorpe assessment of Essex was passed.", 0},
		{"one", "he is a fucking idiot", 2},
		{"case", "SHIT happens", 1},
		{"leet", "sh1t and f@ggot", 2},
		{"repeated letters", "fuuuuuck this shiiiit", 2},
		{"cyrillic lookalike", "ѕhit", 1},
		{"markup around", "[[shit]] {{crap}} '''poop'''", 3},
		{"names kept", "Dick Cheney met the Moroni statue in Slutsk", 0},
		{"birds", "great tits and blue tits", 0},
		{"farther", "farther than a farthing", 0},
		{"collapsed only when elongated", "Pope Popular {{harvtxt|Pope|1992}} Shitake", 0},
		{"elongated prefix", "poooooop asssshole", 2},
		{"chat", "lol this article sucks hahaha", 3},
		{"apostrophe", "it's shit's fine", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Profanity(tt.text))
		})
	}
}

func FuzzProfanity(f *testing.F) {
	for _, s := range []string{"", "fuck", "sh1t", "ѕhit", "\xff", "f''u''c''k", "$$$@@@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Profanity(s)
		if n < 0 || n > utf8.RuneCountInString(s) {
			t.Fatalf("Profanity(%q) = %d", s, n)
		}
	})
}
