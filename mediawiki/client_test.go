package mediawiki_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/mediawiki"
)

// One real wiki for the package. Tests that turn a knob (lag, read-only)
// are not parallel; the others use their own pages.
var wiki mwtest.Shared

// The shared wiki is stopped before goleak looks for goroutines left behind.
func TestMain(m *testing.M) { leaktest.Main(m, wiki.Close) }

type env struct {
	w    *mwtest.Wiki
	logs *logtest.Sink
	reg  *prometheus.Registry
	m    *mediawiki.Metrics
}

func newEnv(t *testing.T) *env {
	t.Helper()
	w := wiki.Get(t)
	reg := prometheus.NewRegistry()
	m, err := mediawiki.NewMetrics(reg)
	require.NoError(t, err)
	e := &env{w: w, logs: logtest.NewSink(), reg: reg, m: m}
	t.Cleanup(func() {
		// No secret of any account ever reaches the logs.
		for _, s := range []string{w.Bot.Secret, w.Admin.Secret, w.Other.Secret, w.Admin.Password} {
			assert.NotContains(t, e.logs.String(), s, "a secret was logged")
		}
	})
	return e
}

// client returns a client logged in (lazily) as the bot, or as acct.
func (e *env) client(t *testing.T, mutate ...func(*mediawiki.Config)) *mediawiki.Client {
	t.Helper()
	cfg := mediawiki.Config{
		APIURL:  e.w.APIURL,
		Auth:    mediawiki.BotPassword{User: e.w.Bot.Name, AppID: e.w.Bot.AppID, Secret: e.w.Bot.Secret},
		Metrics: e.m,
	}
	for _, f := range mutate {
		f(&cfg)
	}
	c, err := mediawiki.New(cfg, zerolog.New(e.logs).Level(zerolog.DebugLevel))
	require.NoError(t, err)
	return c
}

// counter sums the counter name over series whose labels include kv.
func (e *env) counter(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	return metrictest.Sum(t, e.reg, name, kv...)
}

func asUser(a mwtest.Account) func(*mediawiki.Config) {
	return func(c *mediawiki.Config) {
		c.Auth = mediawiki.BotPassword{User: a.Name, AppID: a.AppID, Secret: a.Secret}
		c.Assert = "user"
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLoginAndUserInfo(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := ctxT(t)
	require.NoError(t, c.Login(ctx))
	ui, err := c.UserInfo(ctx)
	require.NoError(t, err)
	assert.Equal(t, "TestBot", ui.Name)
	assert.True(t, ui.InGroup("bot"))
	assert.True(t, ui.HasRight("bot"))
	assert.False(t, ui.HasRight("rollback"), "the bot group has no rollback right on a default wiki")

	// A wrong secret: ErrLoginFailed, and the wrong secret is not in the error.
	bad := e.client(t, func(c *mediawiki.Config) {
		c.Auth = mediawiki.BotPassword{User: e.w.Bot.Name, AppID: e.w.Bot.AppID, Secret: strings.Repeat("0", 32)}
	})
	err = bad.Login(ctx)
	require.ErrorIs(t, err, mediawiki.ErrLoginFailed)
	assert.NotContains(t, err.Error(), strings.Repeat("0", 32))
	assert.Equal(t, 1.0, e.counter(t, "rcwatch_mediawiki_logins_total", "result", "failed"))
}

func TestEditWithBaseRevIDAndNoChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)
	ctx := ctxT(t)

	created, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", Text: "alpha\nbeta", Summary: "create", CreateOnly: true})
	require.NoError(t, err)
	assert.True(t, created.New)
	page, err := c.PageText(ctx, "Client edit page")
	require.NoError(t, err)
	assert.Equal(t, created.NewRevID, page.Revision.RevID)
	assert.Equal(t, "alpha\nbeta", page.Revision.Content)

	res, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", Text: "alpha\nbeta\ngamma", Summary: "rcwatch test: add gamma",
		BaseRevID: page.Revision.RevID, Tags: nil, Minor: true})
	require.NoError(t, err)
	assert.Equal(t, page.Revision.RevID, res.OldRevID)
	assert.False(t, res.NoChange)

	same, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", Text: "alpha\nbeta\ngamma", Summary: "again", BaseRevID: res.NewRevID})
	require.NoError(t, err)
	assert.True(t, same.NoChange)
	assert.Zero(t, same.NewRevID)

	// The history shows the bot flag and the summary.
	var found bool
	for _, rc := range e.w.RecentChanges(t) {
		if rc.RevID == res.NewRevID {
			found = true
			assert.True(t, rc.Bot, "edits are flagged bot")
			assert.True(t, rc.Minor)
			assert.Equal(t, "rcwatch test: add gamma", rc.Comment)
			assert.Equal(t, "TestBot", rc.User)
		}
	}
	assert.True(t, found)
	assert.Len(t, e.w.PageHistory(t, "Client edit page"), 2, "nochange made no revision")

	// Create-only on an existing page, no-create on a missing one, and a
	// write without a base revision (refused before sending).
	_, err = c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", Text: "x", CreateOnly: true})
	assert.ErrorIs(t, err, mediawiki.ErrArticleExists)
	_, err = c.Edit(ctx, mediawiki.EditRequest{Title: "No such page here", Text: "x", NoCreate: true, BaseRevID: 1})
	assert.ErrorIs(t, err, mediawiki.ErrMissingTitle)
	_, err = c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", Text: "x"})
	assert.ErrorIs(t, err, mediawiki.ErrInvalidRequest)
	_, err = c.PageText(ctx, "No such page here")
	assert.ErrorIs(t, err, mediawiki.ErrMissingTitle)

	// Append a line to a report page.
	ap, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Client edit page", AppendText: "\n* report line", Summary: "report", BaseRevID: res.NewRevID})
	require.NoError(t, err)
	text, rev := e.w.PageText(t, "Client edit page")
	assert.Equal(t, ap.NewRevID, rev)
	assert.Equal(t, "alpha\nbeta\ngamma\n* report line", text)
}

// A stale CSRF token (the session was replaced by a new login on the same
// cookie jar) is refreshed once and the edit goes through.
func TestBadTokenRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	shared := func(c *mediawiki.Config) { c.HTTPClient = hc }
	c1, c2 := e.client(t, shared), e.client(t, shared)
	ctx := ctxT(t)

	r1, err := c1.Edit(ctx, mediawiki.EditRequest{Title: "Token page", Text: "one", CreateOnly: true})
	require.NoError(t, err)
	require.NoError(t, c2.Login(ctx)) // a new session: c1's cached token is stale now
	r2, err := c1.Edit(ctx, mediawiki.EditRequest{Title: "Token page", Text: "two", BaseRevID: r1.NewRevID, Summary: "after re-login"})
	require.NoError(t, err)
	assert.Greater(t, r2.NewRevID, r1.NewRevID)
	assert.Equal(t, 1.0, e.counter(t, "rcwatch_mediawiki_token_fetches_total", "type", "csrf", "reason", "refresh"), "one refresh after badtoken")
	assert.Contains(t, e.logs.String(), "badtoken")
	text, _ := e.w.PageText(t, "Token page")
	assert.Equal(t, "two", text)
}

// Another user's overlapping change since the base revision is an edit
// conflict; a non-overlapping one is merged by MediaWiki.
func TestEditConflictByAnotherUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(t)
	ctx := ctxT(t)
	base := e.w.Edit(t, e.w.Admin, "Conflict page", "line one\nline two\nline three\n\nline five", "create")

	e.w.Edit(t, e.w.Other, "Conflict page", "line one\nline two CHANGED BY HUMAN\nline three\n\nline five", "human edit")
	_, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Conflict page", Text: "line one\nline two (bot)\nline three\n\nline five",
		BaseRevID: base, Summary: "bot"})
	require.ErrorIs(t, err, mediawiki.ErrEditConflict)
	assert.Equal(t, "editconflict", mediawiki.ErrorCode(err))
	text, _ := e.w.PageText(t, "Conflict page")
	assert.Contains(t, text, "CHANGED BY HUMAN", "the other user's change was not overwritten")

	// Re-read and decide again: based on the current revision it works.
	page, err := c.PageText(ctx, "Conflict page")
	require.NoError(t, err)
	_, err = c.Edit(ctx, mediawiki.EditRequest{Title: "Conflict page", Text: page.Revision.Content + "\nline six (bot)",
		BaseRevID: page.Revision.RevID, Summary: "bot, re-decided"})
	require.NoError(t, err)
}

func TestAssertFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Other is not a bot: assert=bot fails even after the re-login retry.
	c := e.client(t, asUser(e.w.Other), func(c *mediawiki.Config) { c.Assert = "bot" })
	ctx := ctxT(t)
	_, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Assert page", Text: "x", CreateOnly: true})
	require.ErrorIs(t, err, mediawiki.ErrAssertFailed)
	assert.Empty(t, e.w.PageHistory(t, "Assert page"))
	// Anonymous: no token to be had.
	anon, err := mediawiki.New(mediawiki.Config{APIURL: e.w.APIURL}, zerolog.New(e.logs))
	require.NoError(t, err)
	_, err = anon.Edit(ctx, mediawiki.EditRequest{Title: "Assert page", Text: "x", CreateOnly: true, Assert: "user"})
	require.Error(t, err)
}

func TestRollbackAndUndo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	good := e.w.Edit(t, e.w.Admin, "Rollback page", "good text", "create")
	e.w.Edit(t, e.w.Other, "Rollback page", "good text\nvandalism", "vandal")

	bot := e.client(t)
	_, err := bot.Rollback(ctx, mediawiki.RollbackRequest{Title: "Rollback page", User: "Other User", Summary: "revert"})
	require.ErrorIs(t, err, mediawiki.ErrPermissionDenied, "the bot group has no rollback right")

	admin := e.client(t, asUser(e.w.Admin))
	rb, err := admin.Rollback(ctx, mediawiki.RollbackRequest{Title: "Rollback page", User: "Other User", Summary: "rcwatch test: revert vandalism"})
	require.NoError(t, err)
	assert.Equal(t, good, rb.LastRevID)
	text, rev := e.w.PageText(t, "Rollback page")
	assert.Equal(t, "good text", text)
	assert.Equal(t, rb.RevID, rev)
	// Again: the top revision is no longer by that user.
	_, err = admin.Rollback(ctx, mediawiki.RollbackRequest{Title: "Rollback page", User: "Other User"})
	require.ErrorIs(t, err, mediawiki.ErrAlreadyRolled)

	// Undo (what a bot without rollback does).
	v := e.w.Edit(t, e.w.Other, "Rollback page", "good text\nmore vandalism", "vandal again")
	und, err := bot.Undo(ctx, mediawiki.UndoRequest{Title: "Rollback page", Undo: v, Summary: "undo", BaseRevID: v})
	require.NoError(t, err)
	text, rev = e.w.PageText(t, "Rollback page")
	assert.Equal(t, "good text", text)
	assert.Equal(t, und.NewRevID, rev)
}

func TestProtected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	r := e.w.Edit(t, e.w.Admin, "Protected page", "text", "create")
	e.w.Protect(t, "Protected page", "sysop")
	other := e.client(t, asUser(e.w.Other))
	_, err := other.Edit(ctx, mediawiki.EditRequest{Title: "Protected page", Text: "changed", BaseRevID: r})
	require.ErrorIs(t, err, mediawiki.ErrProtected)
}

func TestReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	r1 := e.w.Edit(t, e.w.Admin, "Read page", "first", "one")
	r2 := e.w.Edit(t, e.w.Other, "Read page", "first\nsecond", "two")
	anon, err := mediawiki.New(mediawiki.Config{APIURL: e.w.APIURL, Metrics: e.m}, zerolog.New(e.logs))
	require.NoError(t, err)

	revs, err := anon.Revisions(ctx, r1, r2, 99999999)
	require.NoError(t, err)
	require.Len(t, revs, 2, "a missing revision is absent, not an error")
	assert.Equal(t, "first", revs[r1].Content)
	assert.Equal(t, "first\nsecond", revs[r2].Content)
	assert.Equal(t, r1, revs[r2].ParentID)
	assert.Equal(t, "Other User", revs[r2].User)
	assert.Equal(t, "Read page", revs[r2].Title)
	assert.Equal(t, "wikitext", revs[r2].ContentModel)
	assert.False(t, revs[r2].Timestamp.IsZero())

	users, err := anon.Users(ctx, "Other User", "Admin", "Nobody at all", "127.0.0.1")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, users["Other User"].EditCount, int64(1))
	assert.Contains(t, users["Other User"].Groups, "user")
	assert.False(t, users["Other User"].Registration.IsZero())
	assert.Contains(t, users["Admin"].Groups, "sysop")
	assert.True(t, users["Nobody at all"].Missing)
	assert.True(t, users["127.0.0.1"].Invalid)

	rcs, err := anon.RecentChanges(ctx, mediawiki.RecentChangesQuery{Title: "Read page"})
	require.NoError(t, err)
	require.Len(t, rcs, 2)
	assert.Equal(t, r2, rcs[0].RevID)
	assert.Equal(t, r1, rcs[0].OldRevID)
}

// The lag knob: the edit waits Retry-After and succeeds once the lag is
// gone; with a short MaxWait it returns the backoff error instead. Not
// parallel: the knob is wiki-wide.
func TestMaxLag(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	r := e.w.Edit(t, e.w.Admin, "Lag page", "before", "create")

	impatient := e.client(t, func(c *mediawiki.Config) { c.MaxWait = -1 })
	require.NoError(t, impatient.Login(ctx))
	backedOff := make(chan mediawiki.BackoffEvent, 1)
	c := e.client(t, func(c *mediawiki.Config) {
		c.OnBackoff = func(ev mediawiki.BackoffEvent) {
			select {
			case backedOff <- ev:
			default:
			}
		}
	})
	require.NoError(t, c.Login(ctx))
	_, err := c.Token(ctx, "csrf")
	require.NoError(t, err)

	e.w.SetLag(t, 7)
	t.Cleanup(func() { e.w.SetLag(t, 0) })
	_, err = impatient.Edit(ctx, mediawiki.EditRequest{Title: "Lag page", Text: "impatient", BaseRevID: r})
	require.ErrorIs(t, err, mediawiki.ErrMaxLag)
	wait, ok := mediawiki.RetryAfter(err)
	require.True(t, ok)
	assert.Equal(t, 5*time.Second, wait, "Retry-After from MediaWiki")

	type result struct {
		res *mediawiki.EditResult
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Lag page", Text: "after lag", BaseRevID: r, Summary: "waited"})
		done <- result{res, err}
	}()
	select {
	case ev := <-backedOff:
		assert.Equal(t, "maxlag", ev.Reason)
		assert.Equal(t, 7*time.Second, ev.Lag)
		assert.Equal(t, 5*time.Second, ev.Wait)
	case <-ctx.Done():
		t.Fatal("the client never backed off")
	}
	_, rev := e.w.PageText(t, "Lag page")
	assert.Equal(t, r, rev, "nothing was written while lagged")
	e.w.SetLag(t, 0)
	got := <-done
	require.NoError(t, got.err)
	assert.GreaterOrEqual(t, time.Since(start), 5*time.Second, "Retry-After was honoured")
	text, rev := e.w.PageText(t, "Lag page")
	assert.Equal(t, "after lag", text)
	assert.Equal(t, got.res.NewRevID, rev)
	assert.Len(t, e.w.PageHistory(t, "Lag page"), 2, "exactly one edit")
}

// Not parallel: the read-only knob is wiki-wide.
func TestReadOnly(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	r := e.w.Edit(t, e.w.Admin, "Read-only page", "before", "create")
	c := e.client(t)
	require.NoError(t, c.Login(ctx))
	e.w.SetReadOnly(t, true)
	t.Cleanup(func() { e.w.SetReadOnly(t, false) })
	_, err := c.Edit(ctx, mediawiki.EditRequest{Title: "Read-only page", Text: "during", BaseRevID: r})
	require.ErrorIs(t, err, mediawiki.ErrReadOnly)
	var ae *mediawiki.APIError
	require.ErrorAs(t, err, &ae)
	assert.Contains(t, ae.Data["readonlyreason"], "read-only")
	e.w.SetReadOnly(t, false)
	_, err = c.Edit(ctx, mediawiki.EditRequest{Title: "Read-only page", Text: "after", BaseRevID: r})
	require.NoError(t, err)
}

// OAuth 2: the bearer token is sent (an invalid one is refused by the wiki,
// which has no OAuth extension: it reports the header as unknown auth) and
// never logged.
func TestOAuth2HeaderNotLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := "oauth-secret-" + strings.Repeat("x", 20)
	var seen string
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header.Get("Authorization")
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := e.client(t, func(c *mediawiki.Config) { c.Auth = mediawiki.OAuth2{Token: token}; c.HTTPClient = hc })
	_, _ = c.UserInfo(ctxT(t))
	assert.Equal(t, "Bearer "+token, seen)
	assert.NotContains(t, e.logs.String(), token)
	assert.NotContains(t, mediawiki.OAuth2{Token: token}.String(), token)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
