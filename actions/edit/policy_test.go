package edit

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBotsAllowed(t *testing.T) {
	const bot = "Example Bot"
	tests := []struct {
		name  string
		text  string
		allow bool
		why   string
	}{
		{"no template", "Some article text.", true, ""},
		{"nobots", "text {{nobots}} more", false, "{{nobots}}"},
		{"Nobots capitalised", "{{Nobots}}", false, "{{nobots}}"},
		{"nobots with spaces", "{{ nobots }}", false, "{{nobots}}"},
		{"bots alone allows", "{{bots}}", true, ""},
		{"allow all", "{{bots|allow=all}}", true, ""},
		{"allow none", "{{bots|allow=none}}", false, "{{bots|allow=none}}"},
		{"allow list with us", "{{bots|allow=OtherBot, Example Bot}}", true, ""},
		{"allow list with us, underscores and case", "{{bots|allow=example_bot}}", true, ""},
		{"allow list without us", "{{bots|allow=OtherBot,ThirdBot}}", false, "{{bots|allow=OtherBot,ThirdBot}}"},
		{"deny all", "{{bots|deny=all}}", false, "{{bots|deny=all}}"},
		{"deny none", "{{bots|deny=none}}", true, ""},
		{"deny list with us", "{{bots|deny=SomeBot,Example Bot}}", false, "{{bots|deny=SomeBot,Example Bot}}"},
		{"deny list without us", "{{bots|deny=SomeBot,AWB}}", true, ""},
		{"optout all", "{{bots|optout=all}}", false, "{{bots|optout=all}}"},
		{"optout our type", "{{bots|optout=nosource,rcwatch}}", false, "{{bots|optout=nosource,rcwatch}}"},
		{"optout another type", "{{bots|optout=nosource}}", true, ""},
		{"nobots with allow us", "{{nobots|allow=Example Bot}}", true, ""},
		{"nobots with allow others", "{{nobots|allow=OtherBot}}", false, "{{nobots|allow=OtherBot}}"},
		{"nobots with deny others still no bots", "{{nobots|deny=OtherBot}}", false, "{{nobots}}"},
		{"a later denying template wins", "{{bots}}\n{{bots|deny=Example Bot}}", false, "{{bots|deny=Example Bot}}"},
		{"two deny params (documented incorrect syntax)", "{{bots|deny=A|deny=Example Bot}}", false, "{{bots|deny=Example Bot}}"},
		{"multiline template", "{{bots\n|deny=Example Bot\n}}", false, "{{bots|deny=Example Bot}}"},
		{"other template named like it", "{{botswana}} {{robots}}", true, ""},
		{"unclosed", "{{nobots", true, ""},
		{"empty params", "{{bots|}}", true, ""},
		{"deny empty list", "{{bots|deny=}}", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := BotsAllowed(tt.text, bot, "rcwatch")
			assert.Equal(t, tt.allow, ok)
			assert.Equal(t, tt.why, why)
		})
	}
}

func FuzzBotsAllowed(f *testing.F) {
	for _, s := range []string{"{{nobots}}", "{{bots|allow=A,B}}", "{{bots|deny=all}}", "{{bots|optout=x}}", "{{nobots|allow=Example Bot}}", "{{bots|allow=|deny=}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ok, why := BotsAllowed(text, "Example Bot", "rcwatch")
		if ok != (why == "") {
			t.Fatalf("allowed=%v with reason %q", ok, why)
		}
		// {{nobots}} anywhere always excludes.
		if ok2, _ := BotsAllowed(text+"{{nobots}}", "Example Bot", "rcwatch"); ok2 {
			t.Fatalf("%q plus {{nobots}} is allowed", text)
		}
	})
}

func TestHasTemplate(t *testing.T) {
	tests := []struct {
		text, name string
		want       bool
	}{
		{"{{Update|date=May 2026}}\nText", "Update", true},
		{"{{update}}\nText", "Update", true},
		{"{{ Template:Update |x}}", "Update", true},
		{"{{Updated|x}}", "Update", false},
		{"{{Dead link|date=x}}", "Dead link", true},
		{"{{dead_link}}", "Dead link", true},
		{"{{Dead  link}}", "Dead link", true},
		{"{{Dead linking}}", "Dead link", false},
		{"no templates", "Update", false},
		{"{{Update}}", "", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, hasTemplate(tt.text, tt.name), "%q in %q", tt.name, tt.text)
	}
	assert.Equal(t, "Update", templateName("{{update|date={month} {year}}}"))
	assert.Equal(t, "Dead link", templateName("{{Template:Dead_link}}"))
	assert.Equal(t, "", templateName("Update"))
}

func TestKillSwitchOn(t *testing.T) {
	for text, want := range map[string]bool{"true": true, " TRUE\n": true, "True": true, "false": false, "": false,
		"true but not really": false, "yes": false} {
		assert.Equal(t, want, killSwitchOn(text), "%q", text)
	}
}

func TestTrusted(t *testing.T) {
	rc := RevertConfig{TrustedGroups: []string{"sysop", "rollbacker"}, TrustedUsers: []string{"Good_Editor"}}
	assert.True(t, isTrusted(rc, "good editor", nil))
	assert.True(t, isTrusted(rc, "Someone", []string{"*", "user", "sysop"}))
	assert.False(t, isTrusted(rc, "Someone", []string{"*", "user", "autoconfirmed"}))
	assert.False(t, isTrusted(rc, "192.0.2.1", nil))
}

// BenchmarkBotsAllowed measures the check on a 100 KB article with a bots
// template near the end (the worst case: the whole text is scanned).
func BenchmarkBotsAllowed(b *testing.B) {
	text := strings.Repeat("Lorem ipsum dolor sit amet, {{cite web|url=http://example.org|title=x}} consectetur.\n", 1200) +
		"{{bots|deny=OtherBot,ThirdBot}}\n"
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := BotsAllowed(text, "Example Bot", "rcwatch"); !ok {
			b.Fatal("denied")
		}
	}
}
