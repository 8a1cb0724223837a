package enrich_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/enrich"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
)

// revTime is the wiki's timestamp of revision id on title.
func revTime(t *testing.T, w *mwtest.Wiki, title string, id int64) time.Time {
	t.Helper()
	for _, r := range w.PageHistory(t, title) {
		if r.RevID == id {
			return r.Timestamp
		}
	}
	t.Fatalf("revision %d of %q not found", id, title)
	return time.Time{}
}

// anonEdit saves text on title without logging in (the wiki records the
// client's IP, 127.0.0.1) and returns the new revision id.
func anonEdit(t *testing.T, w *mwtest.Wiki, title, text string) int64 {
	t.Helper()
	resp, err := http.PostForm(w.APIURL, url.Values{"action": {"edit"}, "title": {title}, "text": {text},
		"token": {"+\\"}, "format": {"json"}, "formatversion": {"2"}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Edit struct {
			Result   string `json:"result"`
			NewRevID int64  `json:"newrevid"`
		} `json:"edit"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "Success", out.Edit.Result)
	return out.Edit.NewRevID
}

// The edit-time context against the real wiki: a user with warnings on
// their talk page, a page with a recent revert, an IP with an earlier edit,
// each with the value it had when the edit was made.
func TestEnrichEditTime(t *testing.T) {
	w := wiki.Get(t)
	en := newEnricher(t, pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, enrich.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const page = "Edit time page"
	created := w.Edit(t, w.Admin, page, "'''Edit time''' is a page.", "create")
	talk := w.Edit(t, w.Admin, "User talk:Other User", "== Warnings ==\nPlease do not vandalise. <!-- Template:uw-vandalism1 -->\n"+
		"Please stop. {{uw-vandalism2|Edit time page}} ~~~~\n", "warning")
	bad := w.Edit(t, w.Other, page, "'''Edit time''' is a page. LOL", "")
	w.Edit(t, w.Admin, page, "'''Edit time''' is a page.", "Reverted edits by [[Special:Contributions/Other User|Other User]] to last version by Admin")
	again := w.Edit(t, w.Other, page, "'''Edit time''' is a page. LOL LOL", "")

	ev := editEvent(w, page, "Other User", 0, again)
	ev.Meta.DT = revTime(t, w, page, again).Format(time.RFC3339)
	got, err := en.Enrich(ctx, ev, rules.Need{User: true})
	require.NoError(t, err)
	assert.Empty(t, got.Missing)
	assert.EqualValues(t, 2, got.UserWarnings, "a substituted and an unsubstituted warning")
	assert.EqualValues(t, 2, got.UserWarnLevel)
	assert.EqualValues(t, 1, got.PageRecentReverts, "the rollback-style revert before the edit")
	assert.Equal(t, revTime(t, w, page, created), got.PageCreated)

	// As of before the talk page existed: no warnings, and before the
	// revert: no reverts.
	early := editEvent(w, page, "Other User", 0, bad)
	early.Meta.DT = revTime(t, w, "User talk:Other User", talk).Add(-time.Second).Format(time.RFC3339)
	got, err = en.Enrich(ctx, early, rules.Need{User: true})
	require.NoError(t, err)
	assert.Zero(t, got.UserWarnings)
	assert.Zero(t, got.PageRecentReverts)

	// The page's creation is cached.
	assert.Positive(t, testutil.ToFloat64(en.Metrics().CacheHits.WithLabelValues("page")))

	// The evaluator's variables get the edit-time values.
	n, level := enrich.Warnings("<!-- Template:uw-vandalism4im --> {{subst:uw-spam3}} {{uw-npov1|X}}")
	assert.EqualValues(t, 3, n)
	assert.EqualValues(t, 4, level)
}

// An IP's edits before this one, on a wiki that lets IPs edit (the shared
// test wiki does not).
func TestEnrichIPEditsBefore(t *testing.T) {
	w := mwtest.Start(t, mwtest.Options{ExtraSettings: "$wgGroupPermissions['*']['edit'] = true;\n"})
	en := newEnricher(t, pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, enrich.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const page = "IP page"
	w.Edit(t, w.Admin, page, "A page.", "create")
	anonEdit(t, w, page, "A page. IP was here.")
	second := anonEdit(t, w, page, "A page. IP was here twice.")
	hist := w.PageHistory(t, page)
	require.Equal(t, second, hist[0].RevID)
	ip := editEvent(w, page, hist[0].User, 0, second)
	ip.Meta.DT = hist[0].Timestamp.Format(time.RFC3339)
	got, err := en.Enrich(ctx, ip, rules.Need{User: true})
	require.NoError(t, err)
	assert.Empty(t, got.Missing)
	assert.EqualValues(t, 1, got.IPEditsBefore, "the IP's earlier edit, not this one")
	assert.Equal(t, 1.0, testutil.ToFloat64(en.Metrics().Requests.WithLabelValues("testwiki", "ip_contribs", "ok")))
}

func TestIsRevert(t *testing.T) {
	for _, s := range []string{"Undid revision 123 by [[Special:Contributions/X|X]]", "Reverted edits by X to last version by Y",
		"Reverting possible vandalism by X to version by Y. Report False Positive? Thanks, [[WP:CBNG|ClueBot NG]]", "rvv",
		"Revert as per wikipedia BLP provision, unsourced and untrue", "Rollback to the last good version"} {
		assert.True(t, enrich.IsRevert(s, nil), s)
	}
	assert.True(t, enrich.IsRevert("", []string{"mw-rollback"}))
	assert.False(t, enrich.IsRevert("Fixed the description of the revert button", nil))
	assert.False(t, enrich.IsRevert("observed undercurrents", nil), "words with rv or und inside")
	assert.False(t, enrich.IsRevert("copyedit", []string{"visualeditor"}))
}
