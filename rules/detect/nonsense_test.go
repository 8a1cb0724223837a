package detect

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNonsense(t *testing.T) {
	tests := []struct {
		name, text string
		min, max   float64
	}{
		{"empty", "", 0, 0},
		{"prose", "The golden ratio appears in the geometry of regular pentagons and in art.", 0, 0},
		{"rhythm", "rhythm myths crypt lynx strengths", 0, 0},
		{"acronyms", "NASA and the BBC and XVII", 0, 0},
		{"mashing", "asdfghjkl", 1, 1},
		{"no vowels", "jkdfhsd bcdfgh", 1, 1},
		{"half", "hello there sdfgsdfg ghjkghjk", 0.4, 0.7},
		{"repeated letter", "heeeeeey", 1, 1},
		{"other script", "日本語 Москва", 0, 0},
		{"too short", "bcd", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Nonsense(tt.text)
			assert.GreaterOrEqual(t, got, tt.min)
			assert.LessOrEqual(t, got, tt.max)
		})
	}
}

func TestRepeatedChars(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"aaaa", 0},
		{"aaaaa", 1},
		{"AaAaA", 1},
		{"heeeeeey!!!!!!", 2},
		{"'''''bold italic''''' ---- ===== 1000000 ||||| {{{{{", 0},
		{"zzzzz yyyyyy", 2},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			assert.Equal(t, tt.want, RepeatedChars(tt.text))
		})
	}
}

func TestShoutingRatio(t *testing.T) {
	tests := []struct {
		text string
		want float64
	}{
		{"", 0},
		{"a b c", 0},
		{"THIS IS LOUD", 1},
		{"this is quiet", 0},
		{"Half HALF", 0.625},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			assert.InDelta(t, tt.want, ShoutingRatio(tt.text), 1e-9)
		})
	}
}

func FuzzTextSignals(f *testing.F) {
	for _, s := range []string{"", "asdfghjkl", "AAAAAAA!!!!!", "\xff\xfe", "日本語", "'''''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v := Nonsense(s); v < 0 || v > 1 {
			t.Fatalf("Nonsense(%q) = %v", s, v)
		}
		if v := ShoutingRatio(s); v < 0 || v > 1 {
			t.Fatalf("ShoutingRatio(%q) = %v", s, v)
		}
		if v := RepeatedChars(s); v < 0 || v > len(s)/5 {
			t.Fatalf("RepeatedChars(%q) = %v", s, v)
		}
		ins := InsertedText([]string{s}, nil)
		if strings.Count(ins, " ") > len(s) {
			t.Fatalf("InsertedText grew: %q", ins)
		}
		if InsertedText([]string{s}, []string{s}) != "" {
			t.Fatalf("InsertedText of an unchanged line is not empty: %q", s)
		}
	})
}
