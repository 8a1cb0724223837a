package mediawiki

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// EditRequest is one action=edit. Exactly one of Text, AppendText/PrependText
// or Undo says what changes. Every edit sends assert, bot=1, maxlag and
// baserevid (never basetimestamp: with it MediaWiki suppresses conflicts with
// the same user's edits and can overwrite another user's edit made in the
// same second; with baserevid alone it merges or answers editconflict).
type EditRequest struct {
	Title string
	// Text replaces the page (or Section). An empty Text is refused unless
	// AllowBlank is set.
	Text       string
	AllowBlank bool
	// AppendText/PrependText add to the page (or Section) instead.
	AppendText  string
	PrependText string
	// Section is a section number, or "new" to add a section titled SectionTitle.
	Section      string
	SectionTitle string
	Summary      string
	// BaseRevID is the revision the change was decided on (from PageText).
	// Required unless CreateOnly.
	BaseRevID int64
	Minor     bool
	Tags      []string
	// Assert is "bot" or "user" (default: the client's Config.Assert).
	Assert string
	// NoCreate fails with ErrMissingTitle if the page does not exist;
	// CreateOnly fails with ErrArticleExists if it does.
	NoCreate   bool
	CreateOnly bool
	// Undo and UndoAfter make this an undo (set by Client.Undo).
	Undo, UndoAfter int64
}

// EditResult is MediaWiki's answer to a successful edit.
type EditResult struct {
	Result       string    `json:"result"` // "Success"
	PageID       int64     `json:"pageid"`
	Title        string    `json:"title"`
	OldRevID     int64     `json:"oldrevid"`
	NewRevID     int64     `json:"newrevid"`
	NewTimestamp time.Time `json:"newtimestamp"`
	NoChange     bool      `json:"nochange"` // the text was identical: no revision was made
	New          bool      `json:"new"`      // the page was created
}

func (r EditRequest) params(defaultAssert string) (url.Values, error) {
	if strings.TrimSpace(r.Title) == "" {
		return nil, fmt.Errorf("%w: edit without a title", ErrInvalidRequest)
	}
	p := url.Values{"action": {"edit"}, "title": {r.Title}, "bot": {"1"}, "watchlist": {"nochange"}}
	kinds := 0
	if r.Text != "" || r.AllowBlank {
		p.Set("text", r.Text)
		kinds++
	}
	if r.AppendText != "" || r.PrependText != "" {
		if r.AppendText != "" {
			p.Set("appendtext", r.AppendText)
		}
		if r.PrependText != "" {
			p.Set("prependtext", r.PrependText)
		}
		kinds++
	}
	if r.Undo != 0 {
		p.Set("undo", strconv.FormatInt(r.Undo, 10))
		if r.UndoAfter != 0 {
			p.Set("undoafter", strconv.FormatInt(r.UndoAfter, 10))
		}
		kinds++
	}
	if kinds != 1 {
		return nil, fmt.Errorf("%w: an edit needs exactly one of Text (or AllowBlank), AppendText/PrependText, Undo", ErrInvalidRequest)
	}
	switch {
	case r.CreateOnly && r.NoCreate:
		return nil, fmt.Errorf("%w: CreateOnly and NoCreate together", ErrInvalidRequest)
	case r.CreateOnly:
		p.Set("createonly", "1")
	case r.BaseRevID <= 0:
		return nil, fmt.Errorf("%w: BaseRevID is required (read the page first) unless CreateOnly", ErrInvalidRequest)
	}
	if r.BaseRevID > 0 {
		p.Set("baserevid", strconv.FormatInt(r.BaseRevID, 10))
	}
	if r.NoCreate {
		p.Set("nocreate", "1")
	}
	if r.Section != "" {
		p.Set("section", r.Section)
		if r.SectionTitle != "" {
			p.Set("sectiontitle", r.SectionTitle)
		}
	}
	p.Set("summary", r.Summary)
	if r.Minor {
		p.Set("minor", "1")
	} else {
		p.Set("notminor", "1")
	}
	if len(r.Tags) > 0 {
		p.Set("tags", strings.Join(r.Tags, "|"))
	}
	if a := cmpOr(r.Assert, defaultAssert); a != "" {
		p.Set("assert", a)
	}
	return p, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Edit makes one edit. The CSRF token is fetched once and refreshed (with one
// retry) on badtoken; a lost BotPassword session is re-established once. A
// maxlag/429/503 answer is waited out within Config.MaxWait, then returned as
// a *BackoffError. Other refusals come back as *APIError matching the
// sentinels: ErrEditConflict (re-read and decide again), ErrReadOnly,
// ErrRateLimited, ErrAssertFailed, ErrMissingTitle, ErrArticleExists,
// ErrProtected, ErrPermissionDenied, ErrBlocked, ErrDisallowed. An edit that
// changed nothing returns NoChange true and no new revision.
func (c *Client) Edit(ctx context.Context, r EditRequest) (*EditResult, error) {
	p, err := r.params(c.cfg.Assert)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Edit EditResult `json:"edit"`
	}
	if err := c.Post(ctx, "csrf", p, &resp); err != nil {
		return nil, fmt.Errorf("editing %q: %w", r.Title, err)
	}
	if resp.Edit.Result != "Success" {
		// A non-Success result without an error is a captcha or an extension
		// asking for confirmation: never treated as done.
		return &resp.Edit, fmt.Errorf("editing %q: %w", r.Title,
			&APIError{Code: "edit-" + strings.ToLower(cmpOr(resp.Edit.Result, "noresult")), Info: "edit result " + resp.Edit.Result,
				Codes: []string{"edit-" + strings.ToLower(cmpOr(resp.Edit.Result, "noresult"))}})
	}
	return &resp.Edit, nil
}

// UndoRequest undoes revision Undo (and those between UndoAfter and Undo when
// UndoAfter is set) on Title, based on BaseRevID (the top revision read).
type UndoRequest struct {
	Title     string
	Undo      int64
	UndoAfter int64
	Summary   string
	BaseRevID int64
	Tags      []string
	Assert    string
}

// Undo undoes revisions with action=edit&undo (for bots without the rollback
// right). It fails with ErrUndoFailed when intermediate edits conflict, and
// ErrEditConflict when the page moved past BaseRevID in an overlapping way.
func (c *Client) Undo(ctx context.Context, r UndoRequest) (*EditResult, error) {
	if r.Undo <= 0 {
		return nil, fmt.Errorf("%w: undo needs the revision id to undo", ErrInvalidRequest)
	}
	return c.Edit(ctx, EditRequest{Title: r.Title, Undo: r.Undo, UndoAfter: r.UndoAfter, Summary: r.Summary,
		BaseRevID: r.BaseRevID, Tags: r.Tags, Assert: r.Assert, NoCreate: true})
}

// RollbackRequest rolls back the top edits of User on Title.
type RollbackRequest struct {
	Title   string
	User    string // whose consecutive top edits are reverted
	Summary string // empty: the wiki's default rollback summary
	Tags    []string
	// MarkBot marks the rolled-back edits and the rollback as bot edits.
	MarkBot bool
	// Assert is "bot" or "user" (default: the client's Config.Assert).
	Assert string
}

// RollbackResult is MediaWiki's answer to a rollback.
type RollbackResult struct {
	Title     string `json:"title"`
	PageID    int64  `json:"pageid"`
	Summary   string `json:"summary"`
	RevID     int64  `json:"revid"`      // the new revision made by the rollback
	OldRevID  int64  `json:"old_revid"`  // the last revision by User (reverted)
	LastRevID int64  `json:"last_revid"` // the revision restored
}

// Rollback reverts the consecutive top edits of r.User on r.Title
// (action=rollback with a rollback token). MediaWiki itself checks that the
// top revision is still by that user: otherwise ErrAlreadyRolled. Without the
// rollback right: ErrPermissionDenied (use Undo).
func (c *Client) Rollback(ctx context.Context, r RollbackRequest) (*RollbackResult, error) {
	if r.Title == "" || r.User == "" {
		return nil, fmt.Errorf("%w: rollback needs Title and User", ErrInvalidRequest)
	}
	p := url.Values{"action": {"rollback"}, "title": {r.Title}, "user": {r.User}, "watchlist": {"nochange"}}
	if r.Summary != "" {
		p.Set("summary", r.Summary)
	}
	if len(r.Tags) > 0 {
		p.Set("tags", strings.Join(r.Tags, "|"))
	}
	if r.MarkBot {
		p.Set("markbot", "1")
	}
	if a := cmpOr(r.Assert, c.cfg.Assert); a != "" {
		p.Set("assert", a)
	}
	var resp struct {
		Rollback RollbackResult `json:"rollback"`
	}
	if err := c.Post(ctx, "rollback", p, &resp); err != nil {
		return nil, fmt.Errorf("rolling back %s on %q: %w", r.User, r.Title, err)
	}
	return &resp.Rollback, nil
}
