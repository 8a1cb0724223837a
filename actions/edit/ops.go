package edit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/mediawiki"
)

// operations returns the edit operations an alert asks for ("edit:<op>" in its
// actions), deduplicated, in the order they are carried out: revert first
// (the damage), then report, then tag.
func operations(actions []string) []string {
	var ops []string
	for _, a := range actions {
		op, ok := strings.CutPrefix(strings.TrimSpace(a), "edit:")
		if !ok {
			continue
		}
		op = strings.ToLower(strings.TrimSpace(op))
		if op != "" && !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	rank := map[string]int{OpRevert: 0, OpReport: 1, OpTag: 2}
	slices.SortStableFunc(ops, func(a, b string) int {
		ra, oka := rank[a]
		rb, okb := rank[b]
		if !oka {
			ra = 3
		}
		if !okb {
			rb = 3
		}
		return ra - rb
	})
	return ops
}

// plan is one decided change: what would be (or is) sent to the wiki.
type plan struct {
	Op         string
	Title      string
	BaseRevID  int64
	Method     string // edit, create, rollback, undo
	NewText    string // edit/create: the whole new text
	Added      string // tag/report: the text added
	User       string // revert: whose revision
	Undo       int64
	UndoAfter  int64
	Summary    string
	Tags       []string
	MarkBot    bool
	Diff       string
	OldTextLen int
}

// decision is the outcome of deciding an operation: a plan, or a skip with
// its reason.
type decision struct {
	plan   *plan
	skip   string
	detail string
}

func skipped(reason, format string, a ...any) decision {
	return decision{skip: reason, detail: fmt.Sprintf(format, a...)}
}

// marker is the short token put in every summary (and report line) so a
// worker restarted after a crash recognises an edit it already made.
func marker(alertID, op string) string { return "rcw:" + hash(alertID, op)[:10] }

// reportMarker identifies a report line for a (wiki, user, page) pair.
func reportMarker(wiki, user, title string) string {
	return "<!-- rcwatch-report " + hash(wiki, normName(user), normalizeTitlePart(title))[:16] + " -->"
}

// placeholders for summaries, tags and report lines.
func placeholders(a *event.Alert, op, mark, fpPage string, now time.Time) *strings.Replacer {
	ev := a.Event
	user := oneLine(ev.User)
	userLink := "[[Special:Contributions/" + user + "|" + user + "]]"
	if event.UserType(ev.User) == "named" {
		userLink = "[[User:" + user + "|" + user + "]] ([[User talk:" + user + "|talk]] · [[Special:Contributions/" + user + "|contribs]])"
	}
	reasons := "no reasons given"
	if len(a.Reasons) > 0 {
		reasons = truncate(strings.Join(a.Reasons, "; "), 300)
	}
	return strings.NewReplacer(
		"{op}", op,
		"{rule}", oneLine(a.Rule.ID),
		"{rule_version}", oneLine(a.Rule.Version),
		"{user}", user,
		"{user_link}", userLink,
		"{title}", oneLine(ev.Title),
		"{score}", strconv.FormatFloat(a.Score, 'f', 2, 64),
		"{severity}", oneLine(a.Severity),
		"{marker}", mark,
		"{fp_page}", oneLine(fpPage),
		"{reasons}", nowiki(oneLine(reasons)),
		"{diff}", diffLink(ev),
		"{month}", now.UTC().Month().String(),
		"{year}", strconv.Itoa(now.UTC().Year()),
		"{date}", now.UTC().Month().String()+" "+strconv.Itoa(now.UTC().Year()),
	)
}

// oneLine removes line breaks and NULs (a value must never break the line
// of a report or a summary).
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == 0 }), " ")
}

// nowiki makes text inert in wikitext.
func nowiki(s string) string {
	s = strings.ReplaceAll(s, "<", "&lt;")
	return "<nowiki>" + s + "</nowiki>"
}

// diffLink is an external link to the flagged diff.
func diffLink(ev event.Ref) string {
	u := ev.DiffURL
	if u == "" && ev.ServerURL != "" && ev.NewRev > 0 {
		u = ev.ServerURL + ev.ScriptPath + "/index.php?diff=" + strconv.FormatInt(ev.NewRev, 10)
		if ev.OldRev > 0 {
			u += "&oldid=" + strconv.FormatInt(ev.OldRev, 10)
		}
	}
	if u == "" {
		return ""
	}
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") {
		return ""
	}
	u = strings.NewReplacer(" ", "%20", "[", "%5B", "]", "%5D", "\n", "", "\r", "").Replace(u)
	return "[" + u + " diff]"
}

// summary renders a wiki's summary template, at most 500 characters.
func summary(wc *WikiConfig, a *event.Alert, op string, now time.Time) string {
	s := placeholders(a, op, marker(a.ID, op), wc.FalsePositivePage, now).Replace(wc.Summary)
	if utf8.RuneCountInString(s) > 500 {
		r := []rune(s)
		s = string(r[:499]) + "…"
	}
	return s
}

// decideTag decides a tag: the template once at the top (or bottom) of the
// page, unless the page already has it or excludes the bot.
func decideTag(ctx context.Context, c *mediawiki.Client, wc *WikiConfig, a *event.Alert, now time.Time) (decision, error) {
	if !slices.Contains(wc.Tag.Namespaces, a.Event.Namespace) {
		return skipped(SkipNamespace, "namespace %d is not taggable", a.Event.Namespace), nil
	}
	tpl := tagTemplate(wc, a, now)
	name := templateName(tpl)
	p, err := c.PageText(ctx, a.Event.Title)
	if errors.Is(err, mediawiki.ErrMissingTitle) {
		return skipped(SkipMissingPage, "%s does not exist", a.Event.Title), nil
	}
	if err != nil {
		return decision{}, err
	}
	text := p.Revision.Content
	if ok, why := BotsAllowed(text, wc.Account, wc.OptOutName); !ok {
		return skipped(SkipNoBots, "%s has %s", p.Title, why), nil
	}
	if hasTemplate(text, name) {
		return skipped(SkipAlreadyDone, "%s already has {{%s}}", p.Title, name), nil
	}
	var nt string
	if wc.Tag.Position == "bottom" {
		nt = strings.TrimRight(text, "\n") + "\n" + tpl
	} else {
		nt = tpl + "\n" + text
	}
	return decision{plan: &plan{Op: OpTag, Title: p.Title, BaseRevID: p.Revision.RevID, Method: "edit",
		NewText: nt, Added: tpl, Summary: summary(wc, a, OpTag, now), Tags: wc.ChangeTags,
		Diff: lineDiff(text, nt), OldTextLen: len(text)}}, nil
}

func tagTemplate(wc *WikiConfig, a *event.Alert, now time.Time) string {
	tpl := wc.Tag.Template
	if t, ok := wc.Tag.Rules[a.Rule.ID]; ok {
		tpl = t
	}
	return strings.NewReplacer("{month}", now.UTC().Month().String(), "{year}", strconv.Itoa(now.UTC().Year()),
		"{date}", now.UTC().Month().String()+" "+strconv.Itoa(now.UTC().Year())).Replace(tpl)
}

// decideReport decides a report line on the noticeboard, unless the user
// and page were already reported there or the user is trusted.
func decideReport(ctx context.Context, c *mediawiki.Client, wc *WikiConfig, a *event.Alert, now time.Time) (decision, error) {
	if d, err := checkTrusted(ctx, c, wc, a.Event.User); err != nil || d.skip != "" {
		return d, err
	}
	mark := reportMarker(a.Event.Wiki, a.Event.User, a.Event.Title)
	line := oneLine(placeholders(a, OpReport, marker(a.ID, OpReport), wc.FalsePositivePage, now).Replace(wc.Report.Line)) + " " + mark
	sum := summary(wc, a, OpReport, now)
	p, err := c.PageText(ctx, wc.Report.Page)
	if errors.Is(err, mediawiki.ErrMissingTitle) {
		return decision{plan: &plan{Op: OpReport, Title: wc.Report.Page, Method: "create", NewText: line,
			Added: line, Summary: sum, Tags: wc.ChangeTags, Diff: lineDiff("", line), User: a.Event.User}}, nil
	}
	if err != nil {
		return decision{}, err
	}
	text := p.Revision.Content
	if ok, why := BotsAllowed(text, wc.Account, wc.OptOutName); !ok {
		return skipped(SkipNoBots, "%s has %s", p.Title, why), nil
	}
	if strings.Contains(text, mark) {
		return skipped(SkipAlreadyDone, "%s already reports %s on %s", p.Title, a.Event.User, a.Event.Title), nil
	}
	nt := strings.TrimRight(text, "\n") + "\n" + line
	return decision{plan: &plan{Op: OpReport, Title: p.Title, BaseRevID: p.Revision.RevID, Method: "edit",
		NewText: nt, Added: line, Summary: sum, Tags: wc.ChangeTags, Diff: lineDiff(text, nt),
		OldTextLen: len(text), User: a.Event.User}}, nil
}

// checkTrusted skips users in a trusted list or group.
func checkTrusted(ctx context.Context, c *mediawiki.Client, wc *WikiConfig, user string) (decision, error) {
	if isTrusted(wc.Revert, user, nil) {
		return skipped(SkipTrusted, "%s is in trusted_users", user), nil
	}
	if event.UserType(user) != "named" || len(wc.Revert.TrustedGroups) == 0 {
		return decision{}, nil
	}
	us, err := c.Users(ctx, user)
	if err != nil {
		return decision{}, err
	}
	if u := us[user]; u != nil && isTrusted(wc.Revert, user, u.Groups) {
		return skipped(SkipTrusted, "%s is in a trusted group (%s)", user, strings.Join(u.Groups, ",")), nil
	}
	return decision{}, nil
}

// decideRevert decides a revert of the flagged revision: only while it is
// still the page's top revision by that user, never of a trusted user or of
// the bot itself. method is "rollback" or "undo".
func decideRevert(ctx context.Context, c *mediawiki.Client, wc *WikiConfig, a *event.Alert, method string, dryRun bool, now time.Time) (decision, error) {
	ev := a.Event
	if ev.User == "" || ev.NewRev <= 0 {
		return skipped(SkipRefused, "the alert names no revision or user to revert"), nil
	}
	if normName(ev.User) == normName(wc.Account) {
		return skipped(SkipSelf, "revision %d is the bot's own", ev.NewRev), nil
	}
	if d, err := checkTrusted(ctx, c, wc, ev.User); err != nil || d.skip != "" {
		return d, err
	}
	p, err := c.PageText(ctx, ev.Title)
	if errors.Is(err, mediawiki.ErrMissingTitle) {
		return skipped(SkipMissingPage, "%s does not exist", ev.Title), nil
	}
	if err != nil {
		return decision{}, err
	}
	top := p.Revision
	if top.RevID != ev.NewRev || normName(top.User) != normName(ev.User) {
		if normName(top.User) == normName(wc.Account) && strings.Contains(top.Comment, marker(a.ID, OpRevert)) {
			return skipped(SkipAlreadyDone, "revision %d is our revert", top.RevID), nil
		}
		return skipped(SkipNotTop, "top revision of %s is %d by %s, not %d by %s", p.Title, top.RevID, top.User, ev.NewRev, ev.User), nil
	}
	if ok, why := BotsAllowed(top.Content, wc.Account, wc.OptOutName); !ok {
		return skipped(SkipNoBots, "%s has %s", p.Title, why), nil
	}
	plan := &plan{Op: OpRevert, Title: p.Title, BaseRevID: top.RevID, Method: method, User: top.User,
		Undo: ev.NewRev, UndoAfter: ev.OldRev, Summary: summary(wc, a, OpRevert, now), Tags: wc.ChangeTags,
		MarkBot: *wc.Revert.MarkBot, OldTextLen: len(top.Content)}
	if dryRun && ev.OldRev > 0 {
		// Show the exact change: back to the parent revision's text.
		if revs, err := c.Revisions(ctx, ev.OldRev); err == nil && revs[ev.OldRev] != nil {
			plan.NewText = revs[ev.OldRev].Content
			plan.Diff = lineDiff(top.Content, plan.NewText)
		}
	}
	return decision{plan: plan}, nil
}

// lineDiff is a compact unified diff of two texts: the changed lines
// between their common prefix and suffix, with up to two lines of context.
func lineDiff(a, b string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	ctx := 2
	from := max(pre-ctx, 0)
	aTo, bTo := len(al)-suf, len(bl)-suf
	aEnd, bEnd := min(aTo+ctx, len(al)), min(bTo+ctx, len(bl))
	var sb strings.Builder
	fmt.Fprintf(&sb, "@@ -%d,%d +%d,%d @@\n", from+1, aEnd-from, from+1, bEnd-from)
	for _, l := range al[from:pre] {
		sb.WriteString(" " + l + "\n")
	}
	for _, l := range al[pre:aTo] {
		sb.WriteString("-" + l + "\n")
	}
	for _, l := range bl[pre:bTo] {
		sb.WriteString("+" + l + "\n")
	}
	for _, l := range al[aTo:aEnd] {
		sb.WriteString(" " + l + "\n")
	}
	return sb.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
