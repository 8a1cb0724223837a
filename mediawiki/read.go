package mediawiki

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxIDs is the API's limit of values per multi-value parameter for
// clients without apihighlimits.
const maxIDs = 50

// Revision is one revision with its main-slot content.
type Revision struct {
	RevID        int64
	ParentID     int64
	PageID       int64
	Namespace    int
	Title        string
	Timestamp    time.Time
	User         string
	UserHidden   bool // the user name is revision-deleted
	Comment      string
	Tags         []string
	Minor        bool
	Size         int64
	SHA1         string
	ContentModel string
	Content      string
	TextHidden   bool // the content is revision-deleted (Content is empty)
}

type apiRevision struct {
	RevID      int64     `json:"revid"`
	ParentID   int64     `json:"parentid"`
	Minor      bool      `json:"minor"`
	User       string    `json:"user"`
	UserHidden bool      `json:"userhidden"`
	Timestamp  time.Time `json:"timestamp"`
	Size       int64     `json:"size"`
	SHA1       string    `json:"sha1"`
	Comment    string    `json:"comment"`
	Tags       []string  `json:"tags"`
	Slots      map[string]struct {
		ContentModel string `json:"contentmodel"`
		Content      string `json:"content"`
		TextHidden   bool   `json:"texthidden"`
		Missing      bool   `json:"missing"`
	} `json:"slots"`
}

type apiPage struct {
	PageID    int64         `json:"pageid"`
	Namespace int           `json:"ns"`
	Title     string        `json:"title"`
	Missing   bool          `json:"missing"`
	Invalid   bool          `json:"invalid"`
	Revisions []apiRevision `json:"revisions"`
}

type queryPages struct {
	Query struct {
		Pages []apiPage `json:"pages"`
	} `json:"query"`
}

func (r apiRevision) revision(p apiPage) *Revision {
	rev := &Revision{
		RevID: r.RevID, ParentID: r.ParentID, PageID: p.PageID, Namespace: p.Namespace, Title: p.Title,
		Timestamp: r.Timestamp, User: r.User, UserHidden: r.UserHidden, Comment: r.Comment, Tags: r.Tags,
		Minor: r.Minor, Size: r.Size, SHA1: r.SHA1,
	}
	if m, ok := r.Slots["main"]; ok {
		rev.ContentModel, rev.Content, rev.TextHidden = m.ContentModel, m.Content, m.TextHidden
	}
	return rev
}

const revProps = "ids|timestamp|user|content|tags|flags|comment|size|sha1"

// Revisions fetches revisions by id with their main-slot content, in one
// request per 50 ids (prop=revisions&revids=A|B&rvslots=main). Ids that do not
// exist or are deleted are absent from the map (badrevids); that is not an error.
func (c *Client) Revisions(ctx context.Context, revids ...int64) (map[int64]*Revision, error) {
	out := make(map[int64]*Revision, len(revids))
	for start := 0; start < len(revids); start += maxIDs {
		chunk := revids[start:min(start+maxIDs, len(revids))]
		ids := make([]string, len(chunk))
		for i, id := range chunk {
			ids[i] = strconv.FormatInt(id, 10)
		}
		var resp queryPages
		p := url.Values{"action": {"query"}, "prop": {"revisions"}, "revids": {strings.Join(ids, "|")},
			"rvslots": {"main"}, "rvprop": {revProps}}
		if err := c.Get(ctx, p, &resp); err != nil {
			return nil, fmt.Errorf("fetching revisions %s: %w", strings.Join(ids, "|"), err)
		}
		for _, pg := range resp.Query.Pages {
			for _, r := range pg.Revisions {
				out[r.RevID] = r.revision(pg)
			}
		}
	}
	return out, nil
}

// Page is the current revision of a page.
type Page struct {
	PageID    int64
	Namespace int
	Title     string
	Revision  *Revision // the top revision (RevID, Timestamp, User, Content)
}

// PageText fetches the current wikitext of a page with its revision id and
// timestamp: what the edit worker checks ({{nobots}}, the kill switch) and
// passes back as BaseRevID. A page that does not exist returns an error
// matching ErrMissingTitle.
func (c *Client) PageText(ctx context.Context, title string) (*Page, error) {
	var resp queryPages
	p := url.Values{"action": {"query"}, "prop": {"revisions"}, "titles": {title}, "rvslots": {"main"}, "rvprop": {revProps}}
	if err := c.Get(ctx, p, &resp); err != nil {
		return nil, fmt.Errorf("fetching the text of %q: %w", title, err)
	}
	if len(resp.Query.Pages) == 0 {
		return nil, fmt.Errorf("fetching the text of %q: no page in the answer", title)
	}
	pg := resp.Query.Pages[0]
	switch {
	case pg.Invalid:
		return nil, fmt.Errorf("fetching the text of %q: %w", title, &APIError{Code: "invalidtitle", Info: "invalid title", Codes: []string{"invalidtitle"}})
	case pg.Missing || len(pg.Revisions) == 0:
		return nil, fmt.Errorf("fetching the text of %q: %w", title, &APIError{Code: "missingtitle", Info: "the page does not exist", Codes: []string{"missingtitle"}})
	}
	return &Page{PageID: pg.PageID, Namespace: pg.Namespace, Title: pg.Title, Revision: pg.Revisions[0].revision(pg)}, nil
}

// User is what list=users tells about an account.
type User struct {
	Name         string
	UserID       int64
	EditCount    int64
	Registration time.Time // zero when unknown (very old accounts)
	Groups       []string  // implicit groups included ("*", "user", "autoconfirmed")
	Missing      bool      // no such account
	Invalid      bool      // not a valid account name (an IP address)
	Blocked      bool
}

// Users fetches accounts by name (list=users&usprop=editcount|registration|groups|blockinfo),
// one request per 50 names. The map is keyed by the names as given; IP
// addresses come back Invalid, unknown names Missing.
func (c *Client) Users(ctx context.Context, names ...string) (map[string]*User, error) {
	out := make(map[string]*User, len(names))
	for start := 0; start < len(names); start += maxIDs {
		chunk := names[start:min(start+maxIDs, len(names))]
		var resp struct {
			Query struct {
				Users []struct {
					Name         string   `json:"name"`
					UserID       int64    `json:"userid"`
					EditCount    int64    `json:"editcount"`
					Registration string   `json:"registration"`
					Groups       []string `json:"groups"`
					Missing      bool     `json:"missing"`
					Invalid      bool     `json:"invalid"`
					BlockID      int64    `json:"blockid"`
				} `json:"users"`
			} `json:"query"`
		}
		p := url.Values{"action": {"query"}, "list": {"users"}, "ususers": {strings.Join(chunk, "|")},
			"usprop": {"editcount|registration|groups|blockinfo"}}
		if err := c.Get(ctx, p, &resp); err != nil {
			return nil, fmt.Errorf("fetching users: %w", err)
		}
		byName := make(map[string]*User, len(resp.Query.Users))
		for _, u := range resp.Query.Users {
			usr := &User{Name: u.Name, UserID: u.UserID, EditCount: u.EditCount, Groups: u.Groups,
				Missing: u.Missing, Invalid: u.Invalid, Blocked: u.BlockID != 0}
			if t, err := time.Parse(time.RFC3339, u.Registration); err == nil {
				usr.Registration = t
			}
			byName[u.Name] = usr
		}
		for _, n := range chunk {
			if u, ok := byName[n]; ok {
				out[n] = u
			} else if u, ok := byName[normalizeUserName(n)]; ok {
				out[n] = u
			}
		}
	}
	return out, nil
}

// normalizeUserName is MediaWiki's canonical form for the common cases:
// underscores are spaces and the first letter is upper case.
func normalizeUserName(n string) string {
	n = strings.TrimSpace(strings.ReplaceAll(n, "_", " "))
	for i, r := range n {
		return strings.ToUpper(string(r)) + n[i+len(string(r)):]
	}
	return n
}

// UserInfo is the logged-in identity (meta=userinfo).
type UserInfo struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Anon   bool     `json:"anon"`
	Groups []string `json:"groups"`
	Rights []string `json:"rights"`
}

// HasRight reports whether the user has the right (e.g. "rollback", "bot").
func (u *UserInfo) HasRight(r string) bool {
	for _, x := range u.Rights {
		if x == r {
			return true
		}
	}
	return false
}

// InGroup reports whether the user is in the group.
func (u *UserInfo) InGroup(g string) bool {
	for _, x := range u.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// UserInfo returns who the client is logged in as, with groups and rights
// (the edit worker picks rollback or undo from HasRight("rollback")).
func (c *Client) UserInfo(ctx context.Context) (*UserInfo, error) {
	var resp struct {
		Query struct {
			UserInfo UserInfo `json:"userinfo"`
		} `json:"query"`
	}
	p := url.Values{"action": {"query"}, "meta": {"userinfo"}, "uiprop": {"groups|rights"}}
	if err := c.Get(ctx, p, &resp); err != nil {
		return nil, fmt.Errorf("fetching user info: %w", err)
	}
	return &resp.Query.UserInfo, nil
}

// RecentChange is one row of list=recentchanges.
type RecentChange struct {
	Type      string    `json:"type"`
	Namespace int       `json:"ns"`
	Title     string    `json:"title"`
	PageID    int64     `json:"pageid"`
	RevID     int64     `json:"revid"`
	OldRevID  int64     `json:"old_revid"`
	RCID      int64     `json:"rcid"`
	User      string    `json:"user"`
	Bot       bool      `json:"bot"`
	New       bool      `json:"new"`
	Minor     bool      `json:"minor"`
	OldLen    int64     `json:"oldlen"`
	NewLen    int64     `json:"newlen"`
	Timestamp time.Time `json:"timestamp"`
	Comment   string    `json:"comment"`
	Tags      []string  `json:"tags"`
	LogType   string    `json:"logtype"`
	LogAction string    `json:"logaction"`
}

// RecentChangesQuery filters list=recentchanges. Zero values mean no filter.
type RecentChangesQuery struct {
	Limit int    // default 50, at most 500
	User  string // rcuser
	Title string // rctitle
	Type  string // rctype, e.g. "edit|new"
	Start time.Time
}

// RecentChanges lists recent changes, newest first (one request, no continuation).
func (c *Client) RecentChanges(ctx context.Context, q RecentChangesQuery) ([]RecentChange, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	p := url.Values{"action": {"query"}, "list": {"recentchanges"}, "rclimit": {strconv.Itoa(min(limit, 500))},
		"rcprop": {"title|ids|sizes|flags|user|comment|timestamp|tags|loginfo"}}
	if q.User != "" {
		p.Set("rcuser", q.User)
	}
	if q.Title != "" {
		p.Set("rctitle", q.Title)
	}
	if q.Type != "" {
		p.Set("rctype", q.Type)
	}
	if !q.Start.IsZero() {
		p.Set("rcend", q.Start.UTC().Format(time.RFC3339))
	}
	var resp struct {
		Query struct {
			RecentChanges []RecentChange `json:"recentchanges"`
		} `json:"query"`
	}
	if err := c.Get(ctx, p, &resp); err != nil {
		return nil, fmt.Errorf("listing recent changes: %w", err)
	}
	return resp.Query.RecentChanges, nil
}
