package detect

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for not parsed
	}{
		{"2019-05-01", "2019-05-01"},
		{"2019-5-1", "2019-05-01"},
		{"2019-05", "2019-05-31"},
		{"1 May 2019", "2019-05-01"},
		{"01 may 2019", "2019-05-01"},
		{"May 1, 2019", "2019-05-01"},
		{"May 1 2019", "2019-05-01"},
		{"Sept. 3, 2018", "2018-09-03"},
		{"May 2019", "2019-05-31"},
		{"February 2020", "2020-02-29"},
		{"31 February 2019", ""},
		{"2019-13-01", ""},
		{"yesterday", ""},
		{"", ""},
		{"Smarch 1, 2019", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseDate(tt.in)
			if tt.want == "" {
				assert.False(t, ok, "parsed as %v", got)
				return
			}
			assert.True(t, ok)
			assert.Equal(t, tt.want, got.Format("2006-01-02"))
		})
	}
}

func TestCitations(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	fiveYears := 5 * 365 * 24 * time.Hour
	tests := []struct {
		name string
		text string
		want CitationReport
	}{
		{"empty", "", CitationReport{}},
		{"fresh", `<ref>{{cite web |url=http://a.org |title=A |access-date=2024-01-01}}</ref>`, CitationReport{}},
		{"stale iso", `<ref>{{cite web |url=http://a.org |title=A |access-date=2015-01-01}}</ref>`,
			CitationReport{StaleAccessDates: 1}},
		{"stale dmy old name", `{{Cite news|url=http://a.org|title=A|accessdate=1 May 2012}}`,
			CitationReport{StaleAccessDates: 1}},
		{"stale mdy", `{{cite journal|title=A|access-date=May 1, 2019}}`, CitationReport{StaleAccessDates: 1}},
		{"stale month", `{{citation|title=A|access-date=May 2019}}`, CitationReport{StaleAccessDates: 1}},
		{"stale but archived", `{{cite web|url=http://a.org|title=A|access-date=2010-01-01|archive-url=https://web.archive.org/x|archive-date=2011-01-01}}`,
			CitationReport{}},
		{"stale with webarchive", `{{cite web|url=http://a.org|title=A|access-date=2010-01-01}} {{webarchive|url=https://web.archive.org/x}}`,
			CitationReport{}},
		{"dead status", `{{cite web|url=http://a.org|title=A|url-status=dead}}`, CitationReport{DeadNoArchive: 1}},
		{"deadurl yes", `{{cite web|url=http://a.org|title=A|deadurl=yes}}`, CitationReport{DeadNoArchive: 1}},
		{"dead but archived", `{{cite web|url=http://a.org|title=A|url-status=dead|archive-url=https://web.archive.org/x}}`,
			CitationReport{}},
		{"dead link after cite", `<ref>{{cite web|url=http://a.org|title=A}} {{Dead link|date=May 2020}}</ref>`,
			CitationReport{DeadNoArchive: 1}},
		{"dead link after dead cite counted once", `{{cite web|url=http://a.org|title=A|url-status=dead}}{{dead link}}`,
			CitationReport{DeadNoArchive: 1}},
		{"dead link after archived cite", `{{cite web|url=http://a.org|title=A|archive-url=https://w.org/x}}{{dead link}}`,
			CitationReport{}},
		{"standalone dead link", `<ref>[http://a.org A page] {{dead link|date=May 2020}}</ref>`,
			CitationReport{DeadNoArchive: 1}},
		{"permanent dead link after cite", `<ref>{{cite web|url=http://a.org|title=A}} {{Permanent dead link|date=May 2020|bot=InternetArchiveBot|fix-attempted=yes}}</ref>`,
			CitationReport{DeadNoArchive: 1}},
		{"standalone permanent dead link", `<ref>[http://a.org A page]{{Permanent dead link}}</ref>`, CitationReport{DeadNoArchive: 1}},
		{"redirects of dead link", `<ref>[http://a.org A]{{Deadlink}}</ref><ref>[http://b.org B]{{Dead url}}</ref><ref>[http://c.org C]{{Link broken}}</ref><ref>{{cite web|url=http://d.org|title=D}}{{dl}}</ref>`,
			CitationReport{DeadNoArchive: 4}},
		{"bare ref", `Fact.<ref>http://a.org/page</ref> Other.<ref name="b"> https://b.org </ref>`,
			CitationReport{BareURLs: 2}},
		{"bracketed bare ref", `<ref>[http://a.org/page]</ref>`, CitationReport{BareURLs: 1}},
		{"untitled link", `See [http://a.org/page] and [http://b.org titled].`, CitationReport{BareURLs: 1}},
		{"titled ref", `<ref>[http://a.org/page A title]</ref>`, CitationReport{}},
		{"self-closing refs and references", `A<ref name="a"/> B<ref name=b /> <references /> [http://x.org]`,
			CitationReport{BareURLs: 1}},
		{"upper-case ref with attributes", `<REF NAME="x">  http://a.org/p  </REF >`, CitationReport{BareURLs: 1}},
		{"unclosed ref", `<ref>http://a.org/p`, CitationReport{}},
		{"pipe in nested link", `{{cite book|title=[[A|B]]|access-date=2001-01-01}}`, CitationReport{StaleAccessDates: 1}},
		{"nested template in param", `{{cite web|title={{lang|fr|Un}}|access-date=2001-01-01|url-status=dead}}`,
			CitationReport{StaleAccessDates: 1, DeadNoArchive: 1}},
		{"unparsable date", `{{cite web|title=A|access-date=sometime}}`, CitationReport{}},
		{"unbalanced", `{{cite web|title=A|access-date=2001-01-01`, CitationReport{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Citations(tt.text, now, fiveYears))
		})
	}
}

func FuzzCitations(f *testing.F) {
	for _, s := range []string{"", "{{cite web|access-date=2001-01-01}}", "}}{{", "<ref>http://a</ref>",
		"{{dead link}}", "{{{{{{", "[http://x]"} {
		f.Add(s)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		r := Citations(s, now, time.Hour)
		if r.StaleAccessDates < 0 || r.DeadNoArchive < 0 || r.BareURLs < 0 {
			t.Fatalf("negative counts %+v for %q", r, s)
		}
		if r.StaleAccessDates+r.DeadNoArchive > len(s)/4+1 {
			t.Fatalf("more citations than the text can hold: %+v for %q", r, s)
		}
	})
}

var testNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

const testHour = time.Hour
