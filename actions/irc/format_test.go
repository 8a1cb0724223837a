package irc

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
)

func sampleAlert() *event.Alert {
	return &event.Alert{
		ID: "blanking/abc", Rule: event.RuleRef{ID: "blanking", Version: "v1"}, Severity: event.SeverityHigh, Score: 0.93,
		Event: event.Ref{
			MetaID: "abc", Wiki: "enwiki", ServerURL: "http://en.wikipedia.org", Type: "edit",
			Title: "User:Mimich/Sandbox 6", User: "Mimich", UserType: "named", OldRev: 558355812, NewRev: 558662916,
			OldSize: 100, NewSize: 112, DiffURL: "http://en.wikipedia.org/w/index.php?diff=558662916&oldid=558355812",
		},
	}
}

// The part of the line after "[rule] score " is byte-for-byte the legacy
// irc.wikimedia.org format of the recorded fixture, with the user class added.
func TestFormatAlertMatchesLegacyFeed(t *testing.T) {
	raw := fixtures.Read(t, "irc.rc-pmtpa.with-colour-codes.txt")
	_, ircLine, ok := strings.Cut(strings.TrimRight(string(raw), "\r\n"), "\t")
	require.True(t, ok)
	_, legacy, ok := strings.Cut(ircLine, " PRIVMSG #en.wikipedia :")
	require.True(t, ok)

	got := FormatAlert(sampleAlert(), FormatOptions{})
	prefix := "\x02\x0304[blanking]\x03\x02 \x0306\x02\x020.93\x03 "
	require.True(t, strings.HasPrefix(got, prefix), "got %q", got)
	want := strings.Replace(legacy, "\x0303Mimich\x03 ", "\x0303Mimich\x03 \x0315(registered)\x03 ", 1)
	require.Equal(t, want, strings.TrimPrefix(got, prefix))
}

func TestFormatAlert(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(a *event.Alert)
		opts  FormatOptions
		want  string
		parts []string
	}{
		{
			name: "plain",
			opts: FormatOptions{Plain: true},
			want: "[blanking] 0.93 [[User:Mimich/Sandbox 6]]  http://en.wikipedia.org/w/index.php?diff=558662916&oldid=558355812 * Mimich (registered) * (+12)",
		},
		{
			name: "large removal by an IP is bold, with flags and wiki",
			edit: func(a *event.Alert) {
				a.Event.User, a.Event.UserType, a.Event.OldSize, a.Event.NewSize, a.Event.Minor = "192.0.2.7", "ip", 1000, 0, true
				a.Event.Comment = "rm"
			},
			opts:  FormatOptions{ShowWiki: true},
			parts: []string{"\x0303enwiki:\x0307User:Mimich", "\x034 M\x0310 ", "\x0303\x02\x02192.0.2.7\x03 \x0315(IP)\x03", "(\x02-1000\x02)", "\x0310rm\x03"},
		},
		{
			name:  "small removal is not bold",
			edit:  func(a *event.Alert) { a.Event.NewSize = 50 },
			opts:  FormatOptions{Plain: true},
			parts: []string{"(-50)"},
		},
		{
			name:  "new page, new user",
			edit:  func(a *event.Alert) { a.Event.Type, a.Event.OldSize, a.Tags = "new", 0, []string{"new-user"} },
			opts:  FormatOptions{Plain: true},
			parts: []string{"]] N ", "Mimich (new)", "(+112)"},
		},
		{
			name: "log entry",
			edit: func(a *event.Alert) {
				a.Event.Type, a.Event.LogType, a.Event.LogAction, a.Event.Title, a.Event.DiffURL = "log", "block", "block", "", ""
			},
			opts:  FormatOptions{Plain: true},
			parts: []string{"[[Special:Log/block]] block "},
		},
		{
			name: "hostile text loses control bytes",
			edit: func(a *event.Alert) {
				a.Event.Title = "A\r\nQUIT :bye\x00\x03" + "4red\u202e"
				a.Event.Comment = "x\x01ACTION y\x01"
			},
			opts:  FormatOptions{Plain: true},
			parts: []string{"[[A QUIT :byered]]", "xACTION y"},
		},
		{
			name:  "a title starting with a digit keeps the colour code intact",
			edit:  func(a *event.Alert) { a.Event.Title = "2024 election" },
			parts: []string{"\x0307\x02\x022024 election"},
		},
		{
			name:  "redacted user",
			edit:  func(a *event.Alert) { a.Event.User, a.Event.UserType = "", "" },
			opts:  FormatOptions{Plain: true},
			parts: []string{"* (hidden) *"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sampleAlert()
			if tt.edit != nil {
				tt.edit(a)
			}
			got := FormatAlert(a, tt.opts)
			if tt.want != "" {
				require.Equal(t, tt.want, got)
			}
			for _, p := range tt.parts {
				require.Contains(t, got, p)
			}
			requireSafeLine(t, got, defaultTextBudget)
		})
	}
}

func TestFormatAlertCutsToBudget(t *testing.T) {
	a := sampleAlert()
	a.Event.Title = strings.Repeat("ש", 300) // 600 bytes
	a.Event.Comment = strings.Repeat("é", 300)
	for _, budget := range []int{400, 200, 120, 40, 7} {
		got := FormatAlert(a, FormatOptions{MaxBytes: budget})
		requireSafeLine(t, got, budget)
		require.GreaterOrEqual(t, len(got), budget-4, "the line uses its budget")
	}
	got := FormatAlert(a, FormatOptions{MaxBytes: 300})
	require.Contains(t, got, "diff=558662916", "the summary and the title are cut before the link")
	require.Contains(t, got, "…")
}

func TestTextBudget(t *testing.T) {
	// ":rcwatch!~rcwatch@localhost PRIVMSG #chan :" + text + "\r\n" == 512
	b := TextBudget("rcwatch", "~rcwatch", len("localhost"), "#chan")
	require.Equal(t, 512, len(":rcwatch!~rcwatch@localhost PRIVMSG #chan :")+b+2)
}

func TestFormatDigest(t *testing.T) {
	a := sampleAlert()
	got := FormatDigest(DigestByRule, "blanking", 7, a, FormatOptions{Plain: true})
	require.Equal(t, "[digest] +7 more from rule blanking (latest: [[User:Mimich/Sandbox 6]] by Mimich http://en.wikipedia.org/w/index.php?diff=558662916&oldid=558355812)", got)
	got = FormatDigest(DigestByUser, "Mimich\r\nQUIT", 3, a, FormatOptions{})
	require.Contains(t, got, "\x02+3 more\x02 from user \x0303Mimich QUIT\x03")
	requireSafeLine(t, got, defaultTextBudget)
	a.Event.Title = strings.Repeat("日本", 200)
	requireSafeLine(t, FormatDigest(DigestByRule, "r", 1, a, FormatOptions{MaxBytes: 100}), 100)
}

func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"plain":                   "plain",
		"a\r\nb":                  "a b",
		"  lead  and  trail  ":    "lead and trail",
		"nul\x00byte":             "nulbyte",
		"\x02bold\x0f\x034colour": "boldcolour",
		"\x0304,12x\x031,y\x03,z": "x,y,z",
		"bad\xffutf8":             "bad\uFFFDutf8",
		"line\u2028sep":           "line sep",
		"rlo\u202eevil":           "rloevil",
		"del\x7f":                 "del",
		"c1\u0085nel\u009b":       "c1 nel",
		"ש":                       "ש",
	}
	for in, want := range tests {
		require.Equal(t, want, sanitize(in), "sanitize(%q)", in)
	}
}

// requireSafeLine checks what the fuzzer checks.
func requireSafeLine(t testing.TB, s string, budget int) {
	t.Helper()
	require.LessOrEqual(t, len(s), budget)
	require.True(t, utf8.ValidString(s), "valid UTF-8: %q", s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			require.Contains(t, []byte{0x02, 0x03, 0x0f}, c, "control byte %#x at %d in %q", c, i, s)
		}
	}
}

func FuzzFormatAlert(f *testing.F) {
	f.Add("Title", "User", "summary", "rule", "https://x/?diff=1", 0.5, int64(10), int64(-600), 120, false)
	f.Add("A\r\nQUIT :x", "\x00nul", strings.Repeat("ש", 300), "r\x03", "\r\n", 1.0, int64(0), int64(0), 0, true)
	f.Add("1,2", "", "\xff\xfe", "", "", -3.0, int64(5), int64(5), 9, false)
	f.Fuzz(func(t *testing.T, title, user, comment, rule, url string, score float64, oldSize, newSize int64, budget int, plain bool) {
		a := &event.Alert{Rule: event.RuleRef{ID: rule}, Score: score, Severity: event.SeverityMedium, Event: event.Ref{
			Type: "edit", Title: title, User: user, Comment: comment, DiffURL: url, OldSize: oldSize, NewSize: newSize, Wiki: rule,
		}}
		if budget < 0 {
			budget = -budget
		}
		budget %= 600
		opts := FormatOptions{Plain: plain, ShowWiki: true, MaxBytes: budget}
		if budget == 0 {
			budget = defaultTextBudget
		}
		requireSafeLine(t, FormatAlert(a, opts), budget)
		requireSafeLine(t, FormatDigest(DigestByUser, user, int(oldSize%1000), a, opts), budget)
		requireSafeLine(t, FormatControl(comment, opts.MaxBytes), budget)
	})
}

// TestFormatBacklogDigest: the rule, the wiki, the latest alert and the feed
// link; long fields are shortened to the budget on a UTF-8 boundary.
func TestFormatBacklogDigest(t *testing.T) {
	latest := &event.Alert{Event: event.Ref{Title: "Q42", User: "QSBot", DiffURL: "https://www.wikidata.org/w/index.php?diff=2&oldid=1"}}
	feed := "http://feed:9095/?rule=qs&wiki=wikidatawiki"
	got := FormatBacklogDigest("qs", "wikidatawiki", 1024, latest, feed, FormatOptions{Plain: true})
	require.Equal(t, "[digest] +1024 more from rule qs on wikidatawiki (backlog; latest: [[Q42]] by QSBot https://www.wikidata.org/w/index.php?diff=2&oldid=1) "+feed, got)
	require.Equal(t, "[digest] +3 more from rule qs on wikidatawiki (backlog)", FormatBacklogDigest("qs", "wikidatawiki", 3, nil, "", FormatOptions{Plain: true}))
	long := &event.Alert{Event: event.Ref{Title: strings.Repeat("ü", 400), User: strings.Repeat("u", 300), DiffURL: "https://x/" + strings.Repeat("d", 300)}}
	for _, plain := range []bool{true, false} {
		s := FormatBacklogDigest("rule\r\nPRIVMSG #x :hi", "wiki", 5, long, feed, FormatOptions{Plain: plain, MaxBytes: 300})
		require.LessOrEqual(t, len(s), 300)
		require.True(t, utf8.ValidString(s))
		require.NotContains(t, s, "\r")
		require.NotContains(t, s, "\n")
		require.Contains(t, s, "+5 more")
	}
}

// The label after the user name: "new" by the rule's tag, or by the edit
// count and registration the alert carries (the feed's rule).
func TestUserClass(t *testing.T) {
	few, many := int64(3), int64(5000)
	edit := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		alert event.Alert
		want  string
	}{
		{"IP", event.Alert{Event: event.Ref{User: "192.0.2.1"}}, "IP"},
		{"named, nothing known", event.Alert{Event: event.Ref{User: "Example"}}, "registered"},
		{"tagged new-user", event.Alert{Event: event.Ref{User: "Example"}, Tags: []string{"new-user"}}, "new"},
		{"3 edits", event.Alert{Event: event.Ref{User: "Example", UserEditCount: &few}}, "new"},
		{"5,000 edits, registered years ago", event.Alert{Event: event.Ref{User: "Example", UserEditCount: &many,
			UserRegistration: edit.AddDate(-5, 0, 0).Unix(), Timestamp: edit.Unix()}}, "registered"},
		{"IP with few edits stays IP", event.Alert{Event: event.Ref{User: "192.0.2.1", UserEditCount: &few}}, "IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, UserClass(&tt.alert))
		})
	}
}
