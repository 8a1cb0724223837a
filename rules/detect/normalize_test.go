package detect

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestCCNorm(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"w1k1p3d14", "WIKIPEDIA"},
		{"раураl", "PAYPAL"}, // Cyrillic р, а, у
		{"Café crème", "CAFE CREME"},
		{"ѕһіт", "SҺIT"},
		{"f@g", "FAG"},
		{"日本語", "日本語"},
		{"ΑΒγ", "ABY"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, CCNorm(tt.in))
		})
	}
}

func TestNorm(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"F  u-u-u  C K", "FUUUCK"},
		{"!!ω..ɰ", "WW"},
		{"fuuuuck", "FUCK"},
		{"Sh1iiiiit!!!", "SHIT"},
		{"a b c", "ABC"},
		{"...", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, Norm(tt.in))
		})
	}
}

func TestSpecialRatio(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"", 0},
		{"abc def", 0},
		{"!!!!", 1},
		{"ab!!", 0.5},
		{"[[x]]", 0.8},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.InDelta(t, tt.want, SpecialRatio(tt.in), 1e-9)
		})
	}
}

func TestRCount(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       int
	}{
		{"foo", "Foo foo FOO", 3},
		{`\bpoo+p\b`, "poop pooooop poopy", 2},
		{"a", "", 0},
		{"(", "(((", 0}, // invalid pattern
		{"", "abc", 4},  // empty pattern matches between every rune
		{strings.Repeat("a", maxPatternLen+1), "a", 0},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			assert.Equal(t, tt.want, RCount(tt.pattern, tt.s))
		})
	}
	assert.Error(t, ValidPattern("("))
	assert.NoError(t, ValidPattern("a+"))
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "w1k1p3d14", "раураl", "F  u-u-u  C K", "\xff\xfe", "日本語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CCNorm(s)
		if !utf8.ValidString(c) {
			t.Fatalf("CCNorm(%q) is not valid UTF-8", s)
		}
		for _, r := range Norm(s) {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				t.Fatalf("Norm(%q) keeps %q", s, r)
			}
		}
		if r := SpecialRatio(s); r < 0 || r > 1 {
			t.Fatalf("SpecialRatio(%q) = %v", s, r)
		}
		if RCount("a", s) < 0 {
			t.Fatal("negative count")
		}
	})
}
