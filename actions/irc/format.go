package irc

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rcwatch/rcwatch/event"
)

// mIRC formatting codes. Only the formatter emits them: every byte below
// 0x20 (and DEL) coming from an alert is removed by sanitize.
const (
	ircBold  = "\x02"
	ircColor = "\x03"
	ircReset = "\x0f"
)

// mIRC colour numbers used by the legacy irc.wikimedia.org feed
// (IRCColourfulRCFeedFormatter) and by this formatter.
const (
	colWhite = "00"
	colBlue  = "02"
	colGreen = "03"
	colRed   = "04"
	colBrown = "05"
	// The legacy feed writes red and brown with one digit where a space or
	// '*' follows; kept for byte compatibility.
	colRed1      = "4"
	colBrown1    = "5"
	colPurple    = "06"
	colOrange    = "07"
	colYellow    = "08"
	colTeal      = "10"
	colGrey      = "14"
	colLightGrey = "15"
)

// MaxLine is the protocol limit of one IRC line, prefix and CRLF included.
const MaxLine = 512

// FormatOptions control one line.
type FormatOptions struct {
	// Plain drops every colour and bold code.
	Plain bool
	// ShowWiki prefixes the title with the wiki id, like the legacy feed's
	// interwiki prefix.
	ShowWiki bool
	// MaxBytes is the most the message text may take (see TextBudget); 0
	// means the budget of a line with an unknown, maximal prefix.
	MaxBytes int
}

// TextBudget is how many bytes the text of a PRIVMSG may take so that the
// whole line as relayed by the server — ":nick!user@host PRIVMSG channel :"
// plus the text plus CRLF — fits in 512 bytes. hostLen is the length of the
// host part the server will show (use a generous upper bound: cloaks and
// reverse DNS names can change after connecting).
func TextBudget(nick, user string, hostLen int, channel string) int {
	prefix := 1 + len(nick) + 1 + len(user) + 1 + hostLen + 1 // ":nick!user@host "
	cmd := len("PRIVMSG ") + len(channel) + len(" :")
	return MaxLine - prefix - cmd - len("\r\n")
}

// defaultTextBudget assumes a 30-byte nick, a 10-byte user with "~" and a
// 63-byte host on a 50-byte channel name.
var defaultTextBudget = TextBudget(strings.Repeat("n", 30), strings.Repeat("u", 11), 63, strings.Repeat("c", 50))

// UserClass is the label shown after the user name: "IP", "temp", "new" or
// "registered" ("new" when the rule tagged the alert new-user, new_user or
// newuser, or when the edit count and registration the alert carries say
// the account was not autoconfirmed: event.Ref.NewAccount, as in the feed).
func UserClass(a *event.Alert) string {
	ut := a.Event.UserType
	if ut == "" {
		ut = event.UserType(a.Event.User)
	}
	switch ut {
	case "ip":
		return "IP"
	case "temp":
		return "temp"
	case "":
		return ""
	}
	for _, t := range a.Tags {
		switch strings.ToLower(t) {
		case "new-user", "new_user", "newuser":
			return "new"
		}
	}
	if a.Event.NewAccount(a.DetectedAt) {
		return "new"
	}
	return "registered"
}

// severityColour picks the colour of the rule tag.
func severityColour(sev string) string {
	switch sev {
	case event.SeverityCritical, event.SeverityHigh:
		return colRed
	case event.SeverityMedium:
		return colOrange
	case event.SeverityLow:
		return colYellow
	}
	return colGrey
}

// lineBuilder writes coloured or plain segments.
type lineBuilder struct {
	b     strings.Builder
	plain bool
}

func (l *lineBuilder) raw(s string) { l.b.WriteString(s) }

// code writes a formatting code (nothing in plain mode).
func (l *lineBuilder) code(s string) {
	if !l.plain {
		l.b.WriteString(s)
	}
}

// color starts colour c.
func (l *lineBuilder) color(c string) { l.code(ircColor + c) }

// text writes already-sanitised text. After a colour code, text that starts
// with a digit or a comma would be read as part of the code, so a no-op
// bold pair separates them.
func (l *lineBuilder) text(s string) {
	if !l.plain && s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == ',') {
		l.b.WriteString(ircBold + ircBold)
	}
	l.b.WriteString(s)
}

// lineParts are the sanitised, cuttable parts of an alert line.
type lineParts struct {
	rule, score, wiki, title, flags, url, user, class, size, comment string
	sevColour                                                        string
	shrinkBold                                                       bool
}

func alertParts(a *event.Alert, opts FormatOptions) lineParts {
	r := &a.Event
	p := lineParts{
		rule:      sanitize(a.Rule.ID),
		score:     strconv.FormatFloat(a.Score, 'f', 2, 64),
		title:     sanitize(r.Title),
		url:       sanitize(r.DiffURL),
		user:      sanitize(r.User),
		class:     UserClass(a),
		sevColour: severityColour(a.Severity),
	}
	if opts.ShowWiki {
		p.wiki = sanitize(r.Wiki)
	}
	switch r.Type {
	case "log":
		p.flags = sanitize(r.LogAction)
		if p.title == "" {
			p.title = "Special:Log/" + sanitize(r.LogType)
		}
	default:
		if r.Type == "new" {
			p.flags += "N"
		}
		if r.Minor {
			p.flags += "M"
		}
		if r.Bot {
			p.flags += "B"
		}
	}
	if r.Type == "edit" || r.Type == "new" {
		d := r.SizeDelta()
		if d >= 0 {
			p.size = "+" + strconv.FormatInt(d, 10)
		} else {
			p.size = strconv.FormatInt(d, 10)
			p.shrinkBold = d < -500
		}
	}
	p.comment = sanitize(r.Comment)
	if p.user == "" {
		p.user = "(hidden)"
	}
	return p
}

func (p lineParts) render(plain bool) string {
	l := &lineBuilder{plain: plain}
	// [rule] 0.93
	l.code(ircBold)
	l.color(p.sevColour)
	l.raw("[")
	l.raw(p.rule)
	l.raw("]")
	l.code(ircColor + ircBold)
	l.raw(" ")
	l.color(colPurple)
	l.text(p.score)
	l.code(ircColor)
	l.raw(" ")
	// [[wiki:Title]] flags url * user (class) * (+12) comment: the legacy layout.
	l.color(colGrey)
	l.raw("[[")
	if p.wiki != "" {
		l.color(colGreen)
		l.text(p.wiki + ":")
	}
	l.color(colOrange)
	l.text(p.title)
	l.color(colGrey)
	l.raw("]]")
	l.color(colRed1)
	l.raw(" ")
	l.text(p.flags)
	l.color(colTeal)
	l.raw(" ")
	l.color(colBlue)
	l.text(p.url)
	l.code(ircColor)
	l.raw(" ")
	l.color(colBrown1)
	l.raw("*")
	l.code(ircColor)
	l.raw(" ")
	l.color(colGreen)
	l.text(p.user)
	l.code(ircColor)
	if p.class != "" {
		l.raw(" ")
		l.color(colLightGrey)
		l.raw("(" + p.class + ")")
		l.code(ircColor)
	}
	l.raw(" ")
	l.color(colBrown1)
	l.raw("*")
	l.code(ircColor)
	if p.size != "" {
		l.raw(" (")
		if p.shrinkBold {
			l.code(ircBold)
		}
		l.raw(p.size)
		if p.shrinkBold {
			l.code(ircBold)
		}
		l.raw(")")
	}
	// The legacy feed emits the comment colour even for an empty comment.
	l.raw(" ")
	l.color(colTeal)
	l.text(p.comment)
	l.code(ircColor)
	return strings.TrimRight(l.b.String(), " ")
}

// FormatAlert renders one alert as one IRC line in the style of the legacy
// feed and the Countervandalism Network:
//
//	[rule] 0.93 [[Title]] N https://…?diff=2&oldid=1 * User (IP) * (-1234) summary
//
// The result never contains CR, LF, NUL or any control byte other than the
// formatting codes it emits itself, is valid UTF-8, and is at most
// opts.MaxBytes long (cut on a rune boundary: the summary first, then the
// title and user, with "…").
func FormatAlert(a *event.Alert, opts FormatOptions) string {
	p := alertParts(a, opts)
	return fit(p, func(p lineParts) string { return p.render(opts.Plain) }, budgetOf(opts))
}

func budgetOf(opts FormatOptions) int {
	if opts.MaxBytes <= 0 {
		return defaultTextBudget
	}
	return opts.MaxBytes
}

// fit shortens the long free-text parts until the rendered line fits.
func fit(p lineParts, render func(lineParts) string, maxBytes int) string {
	return shorten(func() string { return render(p) }, []*string{&p.comment, &p.title, &p.user, &p.url, &p.rule}, maxBytes)
}

// shorten cuts fields, in order, each by as much as the rendered line is
// over maxBytes (an emptied field becomes "…"), then the line itself.
func shorten(render func() string, fields []*string, maxBytes int) string {
	s := render()
	for _, field := range fields {
		over := len(s) - maxBytes
		if over <= 0 {
			break
		}
		if *field == "" {
			continue
		}
		keep := len(*field) - over - len("…")
		if keep <= 0 {
			*field = "…"
		} else {
			*field = cutUTF8(*field, keep) + "…"
		}
		s = render()
	}
	if len(s) > maxBytes {
		s = cutUTF8(s, maxBytes)
	}
	return s
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends on a
// rune boundary.
func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// sanitize makes untrusted text safe for one IRC line: invalid UTF-8 becomes
// U+FFFD; CR, LF, TAB and the Unicode line/paragraph separators become a
// space; every other C0 control byte (NUL, the mIRC colour and bold codes,
// …), DEL, the C1 controls and the bidirectional override characters are
// removed; runs of spaces collapse and the ends are trimmed.
func sanitize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			r = '\uFFFD'
		case r == '\r' || r == '\n' || r == '\t' || r == '\u2028' || r == '\u2029' || r == '\u0085':
			r = ' '
		case r == 0x03:
			// A colour code: drop its "NN" or "NN,MM" digits too.
			i = skipColourDigits(s, i)
			continue
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			continue
		case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f':
			continue
		}
		if r == ' ' {
			if space || b.Len() == 0 {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}

// skipColourDigits skips the "N[N][,N[N]]" after a colour code at s[i:].
func skipColourDigits(s string, i int) int {
	digits := func(i int) int {
		for n := 0; n < 2 && i < len(s) && s[i] >= '0' && s[i] <= '9'; n++ {
			i++
		}
		return i
	}
	j := digits(i)
	if j > i && j+1 < len(s) && s[j] == ',' && s[j+1] >= '0' && s[j+1] <= '9' {
		j = digits(j + 1)
	}
	return j
}

// DigestKind says what a digest line groups by.
type DigestKind string

// Digest kinds.
const (
	DigestByRule DigestKind = "rule"
	DigestByUser DigestKind = "user"
)

// FormatDigest renders the line that stands for n alerts folded together
// because a burst outran the flood limit: "+7 more from rule X (latest:
// [[Title]] by User)". latest is the newest alert folded in.
func FormatDigest(kind DigestKind, key string, n int, latest *event.Alert, opts FormatOptions) string {
	p := digestParts{kind: kind, key: sanitize(key), n: n}
	if latest != nil {
		p.title = sanitize(latest.Event.Title)
		p.user = sanitize(latest.Event.User)
		p.url = sanitize(latest.Event.DiffURL)
	}
	return fitDigest(p, opts)
}

// fitDigest renders p within the byte budget, shortening the latest
// alert's title, link and user, then the key.
func fitDigest(p digestParts, opts FormatOptions) string {
	return shorten(func() string { return p.render(opts.Plain) },
		[]*string{&p.title, &p.url, &p.user, &p.feed, &p.key, &p.wiki}, budgetOf(opts))
}

type digestParts struct {
	kind             DigestKind
	key              string
	n                int
	title, user, url string
	wiki, feed       string // backlog digests
}

// FormatBacklogDigest renders the line that stands for n alerts of rule on
// wiki taken from a channel's backlog: "[digest] +n more from rule R on
// wiki (backlog; latest: [[Title]] by User URL) feed", feed being a link to
// the patroller feed filtered by rule and wiki (empty: none).
func FormatBacklogDigest(rule, wiki string, n int, latest *event.Alert, feed string, opts FormatOptions) string {
	p := digestParts{kind: DigestBacklog, key: sanitize(rule), n: n, wiki: sanitize(wiki), feed: sanitize(feed)}
	if latest != nil {
		p.title = sanitize(latest.Event.Title)
		p.user = sanitize(latest.Event.User)
		p.url = sanitize(latest.Event.DiffURL)
	}
	return fitDigest(p, opts)
}

func (p digestParts) render(plain bool) string {
	l := &lineBuilder{plain: plain}
	l.color(colGrey)
	l.raw("[digest]")
	l.code(ircColor)
	l.raw(" ")
	l.code(ircBold)
	l.raw("+" + strconv.Itoa(p.n) + " more")
	l.code(ircBold)
	kind := p.kind
	if kind == DigestBacklog {
		kind = DigestByRule
	}
	l.raw(" from " + string(kind) + " ")
	if p.kind == DigestByUser {
		l.color(colGreen)
	} else {
		l.color(colOrange)
	}
	l.text(p.key)
	l.code(ircColor)
	if p.kind == DigestBacklog {
		if p.wiki != "" {
			l.raw(" on ")
			l.text(p.wiki)
		}
		l.raw(" (backlog")
		if p.title == "" {
			l.raw(")")
		} else {
			l.raw("; ")
		}
	}
	if p.title != "" {
		if p.kind != DigestBacklog {
			l.raw(" (")
		}
		l.raw("latest: ")
		l.color(colGrey)
		l.raw("[[")
		l.color(colOrange)
		l.text(p.title)
		l.color(colGrey)
		l.raw("]]")
		l.code(ircColor)
		if p.user != "" && p.kind != DigestByUser {
			l.raw(" by ")
			l.color(colGreen)
			l.text(p.user)
			l.code(ircColor)
		}
		if p.url != "" {
			l.raw(" ")
			l.color(colBlue)
			l.text(p.url)
			l.code(ircColor)
		}
		l.raw(")")
	}
	if p.feed != "" {
		l.raw(" ")
		l.color(colBlue)
		l.text(p.feed)
		l.code(ircColor)
	}
	return l.b.String()
}

// FormatControl renders a reply in the control channel (plain text).
func FormatControl(s string, maxBytes int) string {
	s = sanitize(s)
	if maxBytes <= 0 {
		maxBytes = defaultTextBudget
	}
	return cutUTF8(s, maxBytes)
}
