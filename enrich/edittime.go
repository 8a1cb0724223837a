package enrich

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// MissingEditTime names the edit-time context (warnings, page age, reverts,
// an IP's earlier edits) in Enrichment.Missing when it could not be fetched.
const MissingEditTime = "edit-time"

// Edit-time windows: reverts on the page count over RecentRevertWindow
// before the edit, an IP's edits over IPEditWindow.
const (
	RecentRevertWindow = 7 * 24 * time.Hour
	IPEditWindow       = 30 * 24 * time.Hour
)

// editTime fills what patrol tools (Huggle, ClueBot NG) read when an edit
// happens, each as it was before the edit, so that live values match what
// the offline cases may hold:
//
//   - the page's creation time (one request per page, cached long: it does
//     not change),
//   - reverts among the page's last 50 revisions within RecentRevertWindow
//     before the edit (undo, rollback and manual-revert tags, or a revert
//     summary),
//   - the uw- warnings on the user's talk page as it stood before the edit,
//     and their highest level (1–4; 4im counts 4),
//   - for an IP, its edits within IPEditWindow before this one.
//
// Every request goes through the wiki's client, so the per-wiki rate and
// concurrency limits apply; results are cached like user info.
func (e *Enricher) editTime(ctx context.Context, c *mediawiki.Client, api string, ev *event.RecentChange, out *rules.Enrichment) error {
	at := ev.Time()
	if at.IsZero() {
		at = e.now()
	}
	var newID int64
	if ev.Revision.New != nil {
		newID = *ev.Revision.New
	}
	// The requests are independent: they go out together (the client's
	// concurrency and rate limits still apply), each filling its own fields.
	var wg sync.WaitGroup
	var created, reverts, ipEdits, warns error
	if ev.Title != "" {
		wg.Go(func() { out.PageCreated, created = e.pageCreated(ctx, c, api, ev) })
		wg.Go(func() { out.PageRecentReverts, reverts = e.recentReverts(ctx, c, ev, at, newID) })
	}
	switch ev.UserType() {
	case "":
		wg.Wait()
		return errors.Join(created, reverts)
	case "ip":
		wg.Go(func() { out.IPEditsBefore, ipEdits = e.ipEdits(ctx, c, ev, at, newID) })
	}
	wg.Go(func() { out.UserWarnings, out.UserWarnLevel, warns = e.warnings(ctx, c, api, ev, at) })
	wg.Wait()
	return errors.Join(created, reverts, ipEdits, warns)
}

type revInfo struct {
	RevID     int64     `json:"revid"`
	Timestamp time.Time `json:"timestamp"`
	Comment   string    `json:"comment"`
	Tags      []string  `json:"tags"`
	Slots     struct {
		Main struct {
			Content string `json:"content"`
		} `json:"main"`
	} `json:"slots"`
}

type revsResponse struct {
	Query struct {
		Pages []struct {
			Missing   bool      `json:"missing"`
			Revisions []revInfo `json:"revisions"`
		} `json:"pages"`
	} `json:"query"`
}

func (e *Enricher) revisionsOf(ctx context.Context, c *mediawiki.Client, wiki, kind string, p url.Values) ([]revInfo, bool, error) {
	p.Set("action", "query")
	p.Set("prop", "revisions")
	p.Set("formatversion", "2")
	var resp revsResponse
	start := time.Now()
	err := c.Get(ctx, p, &resp)
	e.m.Seconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	e.m.Requests.WithLabelValues(wiki, kind, resultOf(err)).Inc()
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", kind, err)
	}
	if len(resp.Query.Pages) == 0 || resp.Query.Pages[0].Missing {
		return nil, true, nil
	}
	return resp.Query.Pages[0].Revisions, false, nil
}

func (e *Enricher) pageCreated(ctx context.Context, c *mediawiki.Client, api string, ev *event.RecentChange) (time.Time, error) {
	if ev.Type == "new" {
		return ev.Time(), nil
	}
	key := "p|" + api + "|" + ev.Title
	now := e.now()
	if v, ok := e.cache.get(key, now); ok {
		e.m.CacheHits.WithLabelValues("page").Inc()
		return v.(time.Time), nil
	}
	e.m.CacheMisses.WithLabelValues("page").Inc()
	revs, missing, err := e.revisionsOf(ctx, c, ev.Wiki, "page_created", url.Values{"titles": {ev.Title},
		"rvlimit": {"1"}, "rvdir": {"newer"}, "rvprop": {"timestamp"}})
	if err != nil {
		return time.Time{}, err
	}
	if missing || len(revs) == 0 {
		return time.Time{}, nil // deleted since: unknown
	}
	// A page's creation does not change: keep it as long as texts.
	e.cache.put(key, revs[0].Timestamp, 96+len(key), now.Add(e.cfg.CacheTTL))
	return revs[0].Timestamp, nil
}

func (e *Enricher) recentReverts(ctx context.Context, c *mediawiki.Client, ev *event.RecentChange, at time.Time, newID int64) (int64, error) {
	revs, _, err := e.revisionsOf(ctx, c, ev.Wiki, "page_history", url.Values{"titles": {ev.Title},
		"rvlimit": {"50"}, "rvdir": {"older"}, "rvstart": {at.UTC().Format(time.RFC3339)},
		"rvprop": {"ids|timestamp|comment|tags"}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range revs {
		if r.RevID == newID || at.Sub(r.Timestamp) > RecentRevertWindow {
			continue
		}
		if IsRevert(r.Comment, r.Tags) {
			n++
		}
	}
	return n, nil
}

// revertTags are MediaWiki's change tags of reverts.
var revertTags = map[string]bool{"mw-undo": true, "mw-rollback": true, "mw-manual-revert": true}

// IsRevert reports whether a revision's summary or tags mark a revert. The
// summaries are read by the same recogniser as the live self-measurement
// and the offline labels (quality.RevertSummary).
func IsRevert(summary string, tags []string) bool {
	for _, t := range tags {
		if revertTags[t] {
			return true
		}
	}
	return quality.RevertSummary(summary)
}

func (e *Enricher) ipEdits(ctx context.Context, c *mediawiki.Client, ev *event.RecentChange, at time.Time, newID int64) (int64, error) {
	var resp struct {
		Query struct {
			UserContribs []struct {
				RevID     int64     `json:"revid"`
				Timestamp time.Time `json:"timestamp"`
			} `json:"usercontribs"`
		} `json:"query"`
	}
	start := time.Now()
	err := c.Get(ctx, url.Values{"action": {"query"}, "list": {"usercontribs"}, "ucuser": {ev.User}, "uclimit": {"50"},
		"ucdir": {"older"}, "ucstart": {at.UTC().Format(time.RFC3339)}, "ucprop": {"ids|timestamp"}, "formatversion": {"2"}}, &resp)
	e.m.Seconds.WithLabelValues("ip_contribs").Observe(time.Since(start).Seconds())
	e.m.Requests.WithLabelValues(ev.Wiki, "ip_contribs", resultOf(err)).Inc()
	if err != nil {
		return 0, fmt.Errorf("fetching the IP's contributions: %w", err)
	}
	var n int64
	for _, uc := range resp.Query.UserContribs {
		if uc.RevID != newID && at.Sub(uc.Timestamp) <= IPEditWindow {
			n++
		}
	}
	return n, nil
}

type cachedWarnings struct{ n, level int64 }

func (e *Enricher) warnings(ctx context.Context, c *mediawiki.Client, api string, ev *event.RecentChange, at time.Time) (int64, int64, error) {
	// Keyed by the edit's second: a warning given after this edit must not
	// count for it.
	key := "w|" + api + "|" + ev.User + "|" + strconv.FormatInt(at.Unix(), 10)
	now := e.now()
	if v, ok := e.cache.get(key, now); ok {
		e.m.CacheHits.WithLabelValues("warnings").Inc()
		w := v.(cachedWarnings)
		return w.n, w.level, nil
	}
	e.m.CacheMisses.WithLabelValues("warnings").Inc()
	revs, missing, err := e.revisionsOf(ctx, c, ev.Wiki, "talk_page", url.Values{"titles": {"User talk:" + ev.User},
		"rvlimit": {"1"}, "rvdir": {"older"}, "rvstart": {at.UTC().Format(time.RFC3339)},
		"rvprop": {"timestamp|content"}, "rvslots": {"main"}})
	if err != nil {
		return 0, 0, err
	}
	var w cachedWarnings
	if !missing && len(revs) > 0 {
		w.n, w.level = Warnings(revs[0].Slots.Main.Content)
	}
	e.cache.put(key, w, 96+len(key), now.Add(min(e.cfg.CacheTTL, time.Minute)))
	return w.n, w.level, nil
}

// warningRE matches a user warning as it is left on a talk page: the
// HTML comment that substituted uw- templates leave (<!-- Template:uw-vandalism2 -->)
// or an unsubstituted {{uw-…}}. The level is the trailing 1–4 or 4im.
var warningRE = regexp.MustCompile(`(?i)(?:<!--\s*Template:uw-([a-z-]+?)(1|2|3|4im|4)?\s*-->|\{\{\s*(?:subst:\s*)?uw-([a-z-]+?)(1|2|3|4im|4)?\s*[|}])`)

// Warnings counts the uw- warnings in a talk page's wikitext and their
// highest level (0 when none has a level).
func Warnings(text string) (n, level int64) {
	for _, m := range warningRE.FindAllStringSubmatch(text, -1) {
		n++
		lv := m[2]
		if lv == "" {
			lv = m[4]
		}
		lv = strings.TrimSuffix(strings.ToLower(lv), "im")
		if l, err := strconv.ParseInt(lv, 10, 64); err == nil && l > level {
			level = l
		}
	}
	return n, level
}
