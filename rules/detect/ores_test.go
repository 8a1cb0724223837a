package detect

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestORESText(t *testing.T) {
	tests := []struct {
		name           string
		added, removed []string
		old            string
		want           ORES
	}{
		{"nothing", nil, nil, "", ORES{LongestRepeatedCharAdded: 1}},
		{"one word changed", []string{"The rain forests are wet."}, []string{"The candy forests are wet."}, "",
			ORES{LongestRepeatedCharAdded: 1, WordsAdded: 1, WordsRemoved: 1, NonStopwordDelta: 0}}, // rain +1/(0+1), candy -1/1
		{"bad and informal words", []string{"he is a fucking idiot lol"}, []string{"He was a politician."}, "",
			// fucking: +1/(0+1); idiot, lol informal: +2; "he" removed and added cancel.
			ORES{LongestRepeatedCharAdded: 1, WordsAdded: 5, WordsRemoved: 3, BadwordsDelta: 1, InformalsDelta: 2,
				NonStopwordDelta: 3 - 1}},
		{"repeated characters", []string{"wowwwwwww"}, nil, "", ORES{LongestRepeatedCharAdded: 7, WordsAdded: 1, InformalsDelta: 0, NonStopwordDelta: 1}},
		{"removed bad word, old text known", nil, []string{"shit"}, "shit happens. shit.", ORES{LongestRepeatedCharAdded: 1, WordsRemoved: 1,
			BadwordsDelta: -0.5, NonStopwordDelta: -0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ORESText(tt.added, tt.removed, tt.old)
			assert.Equal(t, tt.want.LongestRepeatedCharAdded, got.LongestRepeatedCharAdded)
			assert.Equal(t, tt.want.WordsAdded, got.WordsAdded)
			assert.Equal(t, tt.want.WordsRemoved, got.WordsRemoved)
			assert.InDelta(t, tt.want.BadwordsDelta, got.BadwordsDelta, 1e-9, "bad words")
			assert.InDelta(t, tt.want.InformalsDelta, got.InformalsDelta, 1e-9, "informals")
			assert.InDelta(t, tt.want.NonStopwordDelta, got.NonStopwordDelta, 1e-9, "non-stopwords")
		})
	}
}

// Whole words only, as revscoring's \b…\b: "Scunthorpe" and "assessment"
// hold no bad word; case does not matter.
func TestORESWordLists(t *testing.T) {
	assert.Empty(t, classCounts(badwordsRE, wordCounts("Scunthorpe assessment classic")))
	assert.Equal(t, map[string]int{"shit": 2}, classCounts(badwordsRE, wordCounts("SHIT and shit")))
	assert.Equal(t, map[string]int{"lol": 1, "you": 1}, classCounts(informalsRE, wordCounts("lol you")))
}

func FuzzORESText(f *testing.F) {
	f.Add("he is a fucking idiot", "He was a politician.", "")
	f.Fuzz(func(t *testing.T, added, removed, old string) {
		o := ORESText([]string{added}, []string{removed}, old)
		if o.LongestRepeatedCharAdded < 1 || o.WordsAdded < 0 || o.WordsRemoved < 0 {
			t.Fatalf("%+v", o)
		}
	})
}

func BenchmarkORESText(b *testing.B) {
	added := []string{strings.Repeat("According to coach holt the belief, exaltation is available [[only]] to those.<ref>X</ref> ", 20)}
	removed := []string{strings.Repeat("According to the belief, exaltation is available [[only]] to those.<ref>X</ref> ", 20)}
	b.ReportAllocs()
	for b.Loop() {
		ORESText(added, removed, "")
	}
}
