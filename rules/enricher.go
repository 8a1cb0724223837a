package rules

import (
	"context"
	"time"

	"github.com/rcwatch/rcwatch/event"
)

// Need says which enrichment a set of rules requires, known from the
// variables their compiled expressions reference.
type Need struct {
	Wikitext bool // old_wikitext, new_wikitext (and anything derived from them)
	Diff     bool // added_lines, removed_lines, added_links, removed_links
	User     bool // user_editcount, user_age, user_groups
}

// Any reports whether anything must be fetched.
func (n Need) Any() bool { return n.Wikitext || n.Diff || n.User }

// Enrichment is what an Enricher fetched for one event. Fields it could not
// fetch stay zero and are named in Missing.
type Enrichment struct {
	OldWikitext  string
	NewWikitext  string
	AddedLines   []string
	RemovedLines []string

	UserEditCount    int64
	UserRegistration time.Time // zero if unknown (IPs, very old accounts)
	UserGroups       []string

	// Edit-time context, each as it was before the edit (fetched with the
	// user info): uw- warnings on the user's talk page and their highest
	// level, for an IP its edits in the 30 days before, the page's creation
	// and its reverts in the 7 days before.
	UserWarnings      int64
	UserWarnLevel     int64
	IPEditsBefore     int64
	PageCreated       time.Time // zero if unknown
	PageRecentReverts int64

	// Missing names what could not be fetched (e.g. "wikitext", "user"); the
	// alert is then marked partial.
	Missing []string
}

// Enricher fetches what rules need beyond the event itself (the MediaWiki
// Action API in production). It is declared here, where it is consumed, and
// implemented by the enrich package.
type Enricher interface {
	Enrich(ctx context.Context, ev *event.RecentChange, need Need) (*Enrichment, error)
}
