package detect

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetText(t *testing.T) {
	tests := []struct {
		name           string
		added, removed []string
		check          func(t *testing.T, f Features)
	}{
		{"word swapped", []string{"the humid candy forests of Panama"}, []string{"the humid rain forests of Panama"},
			func(t *testing.T, f Features) {
				assert.Equal(t, 1, f.InsertedWords)
				assert.Equal(t, 0, f.Profanity)
				assert.False(t, f.SmallFix, "candy is not a respelling of rain")
				assert.Equal(t, 1.0, f.ProseShare)
			}},
		{"profanity inserted", []string{"he is a fucking idiot"}, []string{"he is a politician"},
			func(t *testing.T, f Features) {
				assert.Equal(t, 2, f.Profanity)
				assert.Equal(t, 0, f.ProfanityRemoved)
			}},
		{"profanity reverted", []string{"he is a politician"}, []string{"he is a fucking idiot"},
			func(t *testing.T, f Features) {
				assert.Equal(t, 0, f.Profanity)
				assert.Equal(t, 2, f.ProfanityRemoved)
			}},
		{"profanity already there", []string{"the word fuck is old, he said"}, []string{"the word fuck is old"},
			func(t *testing.T, f Features) { assert.Equal(t, 0, f.Profanity) }},
		{"typo fix", []string{"born in Indiana in 1961"}, []string{"born in Indian in 1960"},
			func(t *testing.T, f Features) { assert.True(t, f.SmallFix) }},
		{"informal", []string{"i can't edit it though! you should fix it"}, nil,
			func(t *testing.T, f Features) { assert.Equal(t, 3, f.Informal) }},
		{"test edit", []string{"'''Bold text''' hello"}, nil,
			func(t *testing.T, f Features) { assert.True(t, f.TestEdit) }},
		{"test edit already on the page", []string{"'''Bold text''' hello"}, []string{"'''Bold text'''"},
			func(t *testing.T, f Features) { assert.False(t, f.TestEdit) }},
		{"list lines are not prose", []string{"* [[A]]", "| name = B", "prose line"}, nil,
			func(t *testing.T, f Features) { assert.InDelta(t, 1.0/3, f.ProseShare, 1e-9) }},
		{"refs and links", []string{"Fact. http://a.org http://b.org"}, []string{"Fact.<ref>S</ref> http://a.org"},
			func(t *testing.T, f Features) {
				assert.Equal(t, 1, f.RefsRemoved)
				assert.Equal(t, 1, f.LinksAdded)
			}},
		{"blanking without sizes", []string{"x"}, []string{strings.Repeat("long text ", 60)},
			func(t *testing.T, f Features) { assert.True(t, f.Blanking) }},
		{"shouting needs enough letters", []string{"NASA"}, nil,
			func(t *testing.T, f Features) { assert.Zero(t, f.Shouting) }},
		{"shouting", []string{"PLEASE ADD A TAG TO REVIEW"}, nil,
			func(t *testing.T, f Features) { assert.Equal(t, 1.0, f.Shouting) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Features
			f.SetText(tt.added, tt.removed)
			tt.check(t, f)
		})
	}
}

func TestIsBlanking(t *testing.T) {
	assert.True(t, isBlanking(5000, 10, 0, 0))
	assert.False(t, isBlanking(5000, 4000, 0, 0))
	assert.False(t, isBlanking(100, 0, 0, 0), "a tiny page")
	assert.True(t, isBlanking(0, 0, 10, 600))
	assert.False(t, isBlanking(0, 0, 100, 600))
}

func TestSummaryKind(t *testing.T) {
	tests := []struct {
		s                      string
		empty, section, revert bool
	}{
		{"", true, false, false},
		{"  ", true, false, false},
		{"/* Early life */ ", false, true, false},
		{"/* Plot */ fixed a typo", false, false, false},
		{"Undid revision 394408063 by [[Special:Contributions/1.2.3.4|1.2.3.4]]", false, false, true},
		{"rvv", false, false, true},
		{"Reverted edits by X", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			e, s, r := summaryKind(tt.s)
			assert.Equal(t, []bool{tt.empty, tt.section, tt.revert}, []bool{e, s, r})
		})
	}
	assert.True(t, autoBlankSummaryRE.MatchString("[[WP:AES|←]]Blanked the page"))
	assert.True(t, autoBlankSummaryRE.MatchString("[[WP:AES|←]]Replaced content with 'Vote Quinn 2010'"))
	assert.True(t, autoBlankSummaryRE.MatchString("←Blanked the page"))
	assert.False(t, autoBlankSummaryRE.MatchString("Reverted: Blanked the page was vandalism"))
}

func TestVandalismScore(t *testing.T) {
	regular := Features{UserType: "named", UserKnown: true, UserAge: 5 * 365 * 86400, Summary: "copyedit", PageAge: 3000 * 86400}
	regular.SetText([]string{"The city has a population of 12,000."}, []string{"The city has a population of 11,000."})
	regular.TextKnown, regular.ORESKnown = true, true
	regular.ORES = ORESText([]string{"The city has a population of 12,000."}, []string{"The city has a population of 11,000."}, "")
	vandal := Features{UserType: "ip", PageAge: 3000 * 86400}
	vandal.SetText([]string{"he is a fucking idiot lol!!!!!!"}, []string{"He was a politician."})
	vandal.TextKnown, vandal.ORESKnown = true, true
	vandal.ORES = ORESText([]string{"he is a fucking idiot lol!!!!!!"}, []string{"He was a politician."}, "")

	sr, sv := VandalismScore(regular), VandalismScore(vandal)
	t.Logf("regular %.3f vandal %.3f threshold %.3f", sr, sv, DefaultThreshold)
	assert.Less(t, sr, 0.05)
	assert.Greater(t, sv, DefaultThreshold)

	bot := vandal
	bot.Bot = true
	assert.Zero(t, VandalismScore(bot))

	reasons := VandalismReasons(vandal)
	assert.NotEmpty(t, reasons)
	assert.NotContains(t, strings.Join(VandalismReasons(regular), "; "), "unregistered")
	for _, r := range append(reasons, VandalismReasons(regular)...) {
		assert.NotContains(t, inputNames[:], r, "reasons are in words, and an unset flag is none")
	}

	// The same edit by an established account scores lower.
	more := vandal
	more.UserType, more.UserKnown, more.UserAge = "named", true, 8*365*86400
	assert.Less(t, VandalismScore(more), sv)
}

// Unknown inputs are missing (NaN), known ones finite; the score stays in
// 0..1 whatever the features.
func TestInputsMissing(t *testing.T) {
	x := Inputs(Features{UserType: "named"})
	for i, v := range x {
		if i == inAnonymous {
			assert.Equal(t, 0.0, v)
			continue
		}
		assert.True(t, math.IsNaN(v), "%s is unknown without text, user or ORES features", InputName(i))
	}
	f := Features{UserType: "ip", Profanity: 1000, ProfanityRemoved: 1000, Informal: 1000, RepeatedChars: 1000,
		RefsRemoved: 1000, MarkupAdded: 1 << 30, InsertedWords: 1 << 30, EditDelta: -1 << 40, Nonsense: 1, Shouting: 1,
		TextKnown: true, ORESKnown: true, ORES: ORES{LongestRepeatedCharAdded: 1 << 30, WordsAdded: 1 << 40}, PageAge: 1e12}
	for i, v := range Inputs(f) {
		if i == inLogUserAge {
			assert.True(t, math.IsNaN(v), "IPs have no account age")
			continue
		}
		assert.False(t, math.IsNaN(v) || math.IsInf(v, 0), InputName(i))
	}
	s := VandalismScore(f)
	assert.True(t, s >= 0 && s <= 1)
}

func TestModelCheck(t *testing.T) {
	require.NoError(t, DefaultModel().Check())
	assert.Equal(t, InputNames(), DefaultModel().Inputs)
	bad := Model{Inputs: InputNames(), Trees: []Tree{{{Feature: 1, Left: 0, Right: 5}, {}}}}
	assert.NoError(t, bad.Check(), "a node with Left 0 is a leaf")
	bad.Trees[0][0].Left = 1
	assert.Error(t, bad.Check())
	assert.Error(t, (&Model{Inputs: []string{"x"}}).Check())
	tr := Tree{{Feature: 0, Threshold: 2, Left: 1, Right: 2, MissingLeft: true}, {Value: -1}, {Value: 1}}
	assert.Equal(t, -1.0, tr.Eval([]float64{1}))
	assert.Equal(t, 1.0, tr.Eval([]float64{2}))
	assert.Equal(t, -1.0, tr.Eval([]float64{math.NaN()}))
}

func FuzzSetText(f *testing.F) {
	f.Add("he is a fucking idiot", "He was a politician.")
	f.Add("'''Bold text'''", "")
	f.Add("", "\xff\xfe{{cite web|access-date=2001-01-01}}")
	f.Fuzz(func(t *testing.T, added, removed string) {
		var ft Features
		ft.SetText(strings.Split(added, "\n"), strings.Split(removed, "\n"))
		s := VandalismScore(ft)
		if !(s >= 0 && s <= 1) {
			t.Fatalf("score %v for %q / %q", s, added, removed)
		}
		if ft.ProseShare < 0 || ft.ProseShare > 1 {
			t.Fatalf("prose share %v", ft.ProseShare)
		}
	})
}

func BenchmarkVandalismScore(b *testing.B) {
	var f Features
	f.UserType, f.TextKnown, f.ORESKnown = "ip", true, true
	f.SetText([]string{"According to coach holt the belief, exaltation is available only to those who have earned it."},
		[]string{"According to the belief, exaltation is available only to those who have earned it."})
	b.ReportAllocs()
	for b.Loop() {
		VandalismScore(f)
	}
}

func BenchmarkSetText(b *testing.B) {
	added := []string{strings.Repeat("According to coach holt the belief, exaltation is available [[only]] to those.<ref>X</ref> ", 20)}
	removed := []string{strings.Repeat("According to the belief, exaltation is available [[only]] to those.<ref>X</ref> ", 20)}
	b.ReportAllocs()
	for b.Loop() {
		var f Features
		f.SetText(added, removed)
	}
}

func BenchmarkCitations(b *testing.B) {
	page := strings.Repeat("Fact.<ref>{{cite web |url=http://a.org/x |title=A |access-date=1 May 2012}}</ref> More [[text]] here. ", 200)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		Citations(page, testNow, 5*365*24*testHour)
	}
}

func BenchmarkProfanity(b *testing.B) {
	text := strings.Repeat("The golden ratio appears in the geometry of regular pentagons, sh1t. ", 20)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Profanity(text)
	}
}
