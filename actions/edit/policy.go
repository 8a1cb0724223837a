package edit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Reasons an edit is skipped (the reason label of
// rcwatch_edit_skipped_total, and the audit record's reason).
const (
	SkipNoBots      = "nobots"       // {{nobots}} / {{bots|deny=…}} / allow list without us
	SkipKillSwitch  = "killswitch"   // the kill switch page does not read "true"
	SkipTalkPage    = "talkpage"     // a new message on the bot's talk page
	Skip1RR         = "1rr"          // the (page, user) pair was reverted within RevertMemory
	SkipTrusted     = "trusted"      // the user is in a trusted group or list
	SkipAlreadyDone = "already_done" // done before (KV key, or the page already shows it)
	SkipNotTop      = "not_top"      // the flagged revision is no longer the top one by that user
	SkipDisabled    = "disabled"     // the operation is not enabled on this wiki
	SkipUnknownWiki = "unknown_wiki" // no configuration for the alert's wiki
	SkipStale       = "stale"        // the alert is older than MaxAlertAge
	SkipNamespace   = "namespace"    // tag outside the configured namespaces
	SkipMissingPage = "missing_page" // the page no longer exists
	SkipSelf        = "self"         // the flagged revision is the bot's own
	SkipRefused     = "refused"      // the wiki refused for good (protected, blocked, filter, undo failure)
)

// bots/nobots templates: {{bots}}, {{nobots}}, {{bots|allow=…}},
// {{bots|deny=…}}, {{bots|optout=…}}. Names match case-insensitively (more
// pages are treated as opted out than MediaWiki would, never fewer).
var botsTemplateRE = regexp.MustCompile(`(?is)\{\{\s*(no)?bots\s*(\|[^{}]*)?\}\}`)

// BotsAllowed tells whether the bot named bot may edit a page with wikitext
// text under the exclusion templates, as the Template:Bots documentation
// (en.wikipedia, meta) defines them:
//
//	{{nobots}}               no bot may edit
//	{{bots}}                 every bot may edit
//	{{bots|allow=A,B}}       only A and B (all: every bot; none: no bot)
//	{{bots|deny=A,B}}        every bot but A and B (all: no bot; none: every bot)
//	{{bots|optout=T1,T2}}    no message of type T1, T2 (all: no message)
//
// optOut is the bot's message type matched against optout. Names compare
// case-insensitively with '_' as ' '. When several templates or parameters
// are present, the page is excluded if any of them excludes the bot (the
// documented "incorrect syntax" cases resolve to not editing). The reason
// says which template excluded the bot.
func BotsAllowed(text, bot, optOut string) (bool, string) {
	bot = normName(bot)
	optOut = normName(optOut)
	for _, m := range botsTemplateRE.FindAllStringSubmatch(text, -1) {
		nobots := m[1] != ""
		params := strings.TrimPrefix(m[2], "|")
		if strings.TrimSpace(params) == "" {
			if nobots {
				return false, "{{nobots}}"
			}
			continue // {{bots}}: allowed
		}
		for _, p := range strings.Split(params, "|") {
			name, value, ok := strings.Cut(p, "=")
			if !ok {
				continue
			}
			name = strings.ToLower(strings.TrimSpace(name))
			var list []string
			for _, v := range strings.Split(value, ",") {
				if v = normName(v); v != "" {
					list = append(list, v)
				}
			}
			switch name {
			case "allow":
				if slices.Contains(list, "all") || slices.Contains(list, bot) {
					continue
				}
				return false, "{{" + m[1] + "bots|allow=" + strings.TrimSpace(value) + "}}"
			case "deny":
				if slices.Contains(list, "none") && len(list) == 1 {
					continue
				}
				if slices.Contains(list, "all") || slices.Contains(list, bot) {
					return false, "{{" + m[1] + "bots|deny=" + strings.TrimSpace(value) + "}}"
				}
			case "optout":
				if slices.Contains(list, "all") || (optOut != "" && slices.Contains(list, optOut)) {
					return false, "{{" + m[1] + "bots|optout=" + strings.TrimSpace(value) + "}}"
				}
			}
		}
		if nobots && !hasParam(params, "allow") {
			// {{nobots|deny=…}} and other parameters still mean "no bots"
			// unless an allow list let us in.
			return false, "{{nobots}}"
		}
	}
	return true, ""
}

func hasParam(params, name string) bool {
	for _, p := range strings.Split(params, "|") {
		if n, _, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return true
		}
	}
	return false
}

// normName lower-cases a user name and treats '_' as ' '.
func normName(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, "_", " ")), " "))
}

// normalizeTitlePart is MediaWiki's canonical form of a user name or title
// for the common cases: '_' is ' ', runs of spaces collapse, the first
// letter is upper case.
func normalizeTitlePart(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "_", " ")), " ")
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// templateName returns the name of the template a tag text starts with
// ("{{Update|date=…}}" → "Update"), or "".
func templateName(tpl string) string {
	s, ok := strings.CutPrefix(strings.TrimSpace(tpl), "{{")
	if !ok {
		return ""
	}
	end := strings.IndexAny(s, "|}")
	if end < 0 {
		return ""
	}
	return normalizeTitlePart(strings.TrimPrefix(strings.TrimSpace(s[:end]), "Template:"))
}

// hasTemplate reports whether text transcludes the template name (first
// letter case-insensitive as MediaWiki's, spaces and underscores alike, an
// optional Template: prefix).
func hasTemplate(text, name string) bool {
	name = normalizeTitlePart(name)
	if name == "" {
		return false
	}
	r, n := utf8.DecodeRuneInString(name)
	first := regexp.QuoteMeta(string(unicode.ToUpper(r))) + regexp.QuoteMeta(string(unicode.ToLower(r)))
	rest := regexp.QuoteMeta(name[n:])
	rest = strings.ReplaceAll(rest, " ", "[ _]+")
	re, err := regexp.Compile(`\{\{\s*(?:[Tt]emplate\s*:\s*)?[` + first + `]` + rest + `\s*(?:\||\}\})`)
	if err != nil {
		return strings.Contains(text, "{{"+name)
	}
	return re.MatchString(text)
}

// isTrusted reports whether a user is trusted by name or group.
func isTrusted(rc RevertConfig, name string, groups []string) bool {
	n := normName(name)
	for _, t := range rc.TrustedUsers {
		if normName(t) == n {
			return true
		}
	}
	for _, g := range groups {
		if slices.Contains(rc.TrustedGroups, g) {
			return true
		}
	}
	return false
}

// killSwitchOn reads a kill switch page's text: only "true" (trimmed,
// any case) lets the bot edit.
func killSwitchOn(text string) bool { return strings.EqualFold(strings.TrimSpace(text), "true") }

// guard is the per-wiki stop state: the kill switch page and the bot's talk
// page, read at most every interval (and before the first edit). The talk
// page's baseline lives in KV so every replica stops, and stays stopped
// across restarts, until an operator resets it.
type guard struct {
	wiki     string
	cfg      *WikiConfig
	interval time.Duration
	kv       jetstream.KeyValue

	mu      sync.Mutex // held across a check's reads of the wiki
	checked time.Time
	reason  string // "" when editing is allowed
	detail  string

	// last is the reason of the last check, readable without waiting for
	// a check in progress (Worker.Ready).
	last atomic.Pointer[string]
}

// stopped returns the reason editing stopped at the last check ("": it
// was allowed, or nothing was checked yet). It never blocks.
func (g *guard) stopped() string {
	if r := g.last.Load(); r != nil {
		return *r
	}
	return ""
}

// talkState is the KV record of the bot's talk page (key talk.<wiki>).
type talkState struct {
	BaseRevID int64     `json:"base_revid"`
	Stopped   bool      `json:"stopped"`
	By        string    `json:"by,omitempty"`
	RevID     int64     `json:"revid,omitempty"`
	At        time.Time `json:"at"`
}

// talkKey is edit.talk.<wiki>. Wiki ids are subject tokens already
// (enwiki, zh_min_nanwiki), so the key is the id itself, as in earlier
// releases: a talk-page stop recorded before an upgrade still holds.
func talkKey(wiki string) string { return "edit.talk." + pipeline.SubjectToken(wiki) }

// check returns "" when editing may go on, else the skip reason and a
// detail. It reads the wiki at most every interval.
func (g *guard) check(ctx context.Context, c *mediawiki.Client, now time.Time) (string, string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.checked.IsZero() && now.Sub(g.checked) < g.interval {
		return g.reason, g.detail, nil
	}
	reason, detail, err := g.read(ctx, c, now)
	if err != nil {
		return "", "", err
	}
	g.checked, g.reason, g.detail = now, reason, detail
	g.last.Store(&reason)
	return reason, detail, nil
}

// checkAsync starts check and returns the wait for its answer, so the stop
// conditions are read while the operation reads the page. A last check
// still fresh at now answers at once, without a read; while another
// operation's read is in flight, the wait is for that read.
func (g *guard) checkAsync(ctx context.Context, c *mediawiki.Client, now time.Time) (wait func() (string, string, error)) {
	if g.mu.TryLock() {
		if !g.checked.IsZero() && now.Sub(g.checked) < g.interval {
			reason, detail := g.reason, g.detail
			g.mu.Unlock()
			return func() (string, string, error) { return reason, detail, nil }
		}
		g.mu.Unlock()
	}
	type answer struct {
		reason, detail string
		err            error
	}
	ch := make(chan answer, 1)
	go func() {
		reason, detail, err := g.check(ctx, c, now)
		ch <- answer{reason, detail, err}
	}()
	var once sync.Once
	var a answer
	return func() (string, string, error) {
		once.Do(func() { a = <-ch })
		return a.reason, a.detail, a.err
	}
}

func (g *guard) read(ctx context.Context, c *mediawiki.Client, now time.Time) (string, string, error) {
	p, err := c.PageText(ctx, g.cfg.KillSwitchPage)
	switch {
	case errors.Is(err, mediawiki.ErrMissingTitle):
		return SkipKillSwitch, g.cfg.KillSwitchPage + " does not exist", nil
	case err != nil:
		return "", "", fmt.Errorf("reading the kill switch %s: %w", g.cfg.KillSwitchPage, err)
	case !killSwitchOn(p.Revision.Content):
		return SkipKillSwitch, fmt.Sprintf("%s reads %q", g.cfg.KillSwitchPage, truncate(strings.TrimSpace(p.Revision.Content), 40)), nil
	}
	if !*g.cfg.TalkPageStop {
		return "", "", nil
	}
	return g.readTalk(ctx, c, now)
}

func (g *guard) readTalk(ctx context.Context, c *mediawiki.Client, now time.Time) (string, string, error) {
	title := "User talk:" + g.cfg.Account
	var cur *mediawiki.Revision
	p, err := c.PageText(ctx, title)
	switch {
	case errors.Is(err, mediawiki.ErrMissingTitle):
	case err != nil:
		return "", "", fmt.Errorf("reading %s: %w", title, err)
	default:
		cur = p.Revision
	}
	var curID int64
	if cur != nil {
		curID = cur.RevID
	}
	key := talkKey(g.wiki)
	for attempt := 0; attempt < 5; attempt++ {
		e, err := g.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// First start: the talk page as it is now is the baseline.
			b, _ := json.Marshal(talkState{BaseRevID: curID, At: now})
			if _, err := g.kv.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				return "", "", fmt.Errorf("recording the talk page baseline: %w", err)
			}
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("reading the talk page state: %w", err)
		}
		var st talkState
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return "", "", fmt.Errorf("decoding the talk page state: %w", err)
		}
		if st.Stopped {
			return SkipTalkPage, fmt.Sprintf("new message on %s by %s (revision %d); reset with `rcwatch act edit reset-talk`", title, st.By, st.RevID), nil
		}
		if curID == st.BaseRevID || cur == nil {
			return "", "", nil
		}
		if normName(cur.User) == normName(g.cfg.Account) {
			// Our own edit of the talk page moves the baseline.
			st.BaseRevID, st.At = curID, now
		} else {
			st = talkState{BaseRevID: st.BaseRevID, Stopped: true, By: cur.User, RevID: curID, At: now}
		}
		b, _ := json.Marshal(st)
		if _, err := g.kv.Update(ctx, key, b, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			return "", "", fmt.Errorf("updating the talk page state: %w", err)
		}
		if st.Stopped {
			return SkipTalkPage, fmt.Sprintf("new message on %s by %s (revision %d)", title, cur.User, curID), nil
		}
		return "", "", nil
	}
	return "", "", errors.New("updating the talk page state: too many concurrent updates")
}

// ResetTalkStop clears a talk-page stop for wiki (after an operator read the
// message): the talk page's current revision becomes the new baseline.
func ResetTalkStop(ctx context.Context, kv jetstream.KeyValue, c *mediawiki.Client, wiki, account string, now time.Time) error {
	title := "User talk:" + normalizeTitlePart(account)
	var curID int64
	p, err := c.PageText(ctx, title)
	switch {
	case errors.Is(err, mediawiki.ErrMissingTitle):
	case err != nil:
		return fmt.Errorf("reading %s: %w", title, err)
	default:
		curID = p.Revision.RevID
	}
	b, _ := json.Marshal(talkState{BaseRevID: curID, At: now})
	if _, err := kv.Put(ctx, talkKey(wiki), b); err != nil {
		return fmt.Errorf("resetting the talk page stop of %s: %w", wiki, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
