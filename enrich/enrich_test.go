package enrich_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/enrich"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
)

var wiki mwtest.Shared

// The shared wiki is stopped before goleak looks for goroutines left behind.
func TestMain(m *testing.M) { leaktest.Main(m, wiki.Close) }

func editEvent(w *mwtest.Wiki, title, user string, oldRev, newRev int64) *event.RecentChange {
	ev := &event.RecentChange{Meta: event.Meta{ID: "test-" + title}, Type: "edit", Title: title, User: user,
		ServerURL: w.URL, ServerScriptPath: "", Wiki: "testwiki"}
	if oldRev > 0 {
		ev.Revision.Old = &oldRev
	}
	ev.Revision.New = &newRev
	return ev
}

// A page the test creates and then vandalises as another user: one request
// for both texts, one for the user, the right diff; the second time
// everything comes from the cache.
func TestEnrichVandalisedPage(t *testing.T) {
	w := wiki.Get(t)
	reg := prometheus.NewRegistry()
	logs := logtest.NewSink()
	en := newEnricher(t, pipeline.Deps{Reg: reg, Log: zerolog.New(logs).Level(zerolog.DebugLevel)}, enrich.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	good := "'''Example''' is a town.\n\n== History ==\nFounded in 1900.<ref>Book, p. 1</ref>\n\n== References ==\n<references/>"
	bad := "'''Example''' is a town.\n\n== History ==\nFounded in 1900 by BOB WHO IS AWESOME!!!!\n\n== References ==\n<references/>"
	oldRev := w.Edit(t, w.Admin, "Enrich page", good, "create")
	newRev := w.Edit(t, w.Other, "Enrich page", bad, "")
	ev := editEvent(w, "Enrich page", "Other User", oldRev, newRev)

	need := rules.Need{Wikitext: true, Diff: true, User: true}
	got, err := en.Enrich(ctx, ev, need)
	require.NoError(t, err)
	assert.Empty(t, got.Missing)
	assert.Equal(t, good, got.OldWikitext)
	assert.Equal(t, bad, got.NewWikitext)
	assert.Equal(t, []string{"Founded in 1900 by BOB WHO IS AWESOME!!!!"}, got.AddedLines)
	assert.Equal(t, []string{"Founded in 1900.<ref>Book, p. 1</ref>"}, got.RemovedLines)
	assert.GreaterOrEqual(t, got.UserEditCount, int64(1))
	assert.Contains(t, got.UserGroups, "user")
	assert.NotContains(t, got.UserGroups, "sysop")
	assert.False(t, got.UserRegistration.IsZero())
	assert.WithinDuration(t, time.Now(), got.UserRegistration, 10*time.Minute)

	req := func(kind string) float64 {
		return testutil.ToFloat64(en.Metrics().Requests.WithLabelValues("testwiki", kind, "ok"))
	}
	assert.Equal(t, 1.0, req("revisions"), "one request for both revisions")
	assert.Equal(t, 1.0, req("users"), "one request for the user")

	again, err := en.Enrich(ctx, ev, need)
	require.NoError(t, err)
	assert.Equal(t, got, again)
	assert.Equal(t, 1.0, req("revisions"), "the cache avoided a second request")
	assert.Equal(t, 1.0, req("users"), "the cache avoided a second request")
	assert.Equal(t, 2.0, testutil.ToFloat64(en.Metrics().CacheHits.WithLabelValues("revision")))

	// The next edit on the page needs only its new revision: the old one is cached.
	newer := w.Edit(t, w.Admin, "Enrich page", good, "revert")
	diffOnly, err := en.Enrich(ctx, editEvent(w, "Enrich page", "Admin", newRev, newer), rules.Need{Diff: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"Founded in 1900.<ref>Book, p. 1</ref>"}, diffOnly.AddedLines)
	assert.Empty(t, diffOnly.NewWikitext, "texts are not returned when only the diff was asked for")
	assert.Equal(t, 2.0, req("revisions"))
}

func TestEnrichCreationAndIP(t *testing.T) {
	w := wiki.Get(t)
	en := newEnricher(t, pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, enrich.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev := w.Edit(t, w.Other, "Enrich new page", "first line\nsecond line", "create")
	ev := editEvent(w, "Enrich new page", "Other User", 0, rev)
	ev.Type = "new"
	got, err := en.Enrich(ctx, ev, rules.Need{Wikitext: true, Diff: true})
	require.NoError(t, err)
	assert.Empty(t, got.Missing)
	assert.Empty(t, got.OldWikitext)
	assert.Equal(t, []string{"first line", "second line"}, got.AddedLines)

	// IPs have no account: nothing is fetched and nothing is missing.
	ip := editEvent(w, "Enrich new page", "192.0.2.7", 0, rev)
	got, err = en.Enrich(ctx, ip, rules.Need{User: true})
	require.NoError(t, err)
	assert.Empty(t, got.Missing)
	assert.Zero(t, got.UserEditCount)
}

// When the wiki cannot answer, Enrich returns what it has with Missing
// filled, and no error.
func TestEnrichFailureIsPartial(t *testing.T) {
	w := wiki.Get(t)
	reg := prometheus.NewRegistry()
	en := newEnricher(t, pipeline.Deps{Reg: reg, Log: zerolog.Nop()}, enrich.Config{MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A deleted/nonexistent revision.
	got, err := en.Enrich(ctx, editEvent(w, "Nowhere", "Other User", 999998, 999999), rules.Need{Wikitext: true, Diff: true, User: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{enrich.MissingWikitext, enrich.MissingDiff}, got.Missing)
	assert.Contains(t, got.UserGroups, "user", "the user part still worked")

	// A wiki that is down, a redacted user, an event without a server.
	down := editEvent(w, "X", "", 1, 2)
	down.ServerURL = "http://127.0.0.1:1"
	got, err = en.Enrich(ctx, down, rules.Need{Wikitext: true, User: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{enrich.MissingWikitext, enrich.MissingUser, enrich.MissingEditTime}, got.Missing)
	down.ServerURL = ""
	got, err = en.Enrich(ctx, down, rules.Need{Diff: true})
	require.NoError(t, err)
	assert.Equal(t, []string{enrich.MissingDiff}, got.Missing)
	assert.Equal(t, 2.0, testutil.ToFloat64(en.Metrics().Errors.WithLabelValues(enrich.MissingDiff)))
}

// A lagged wiki: enrichment waits within MaxWait, then gives up partial.
func TestEnrichMaxLagGivesUpPartial(t *testing.T) {
	w := wiki.Get(t)
	en := newEnricher(t, pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, enrich.Config{MaxWait: -1})
	rev := w.Edit(t, w.Admin, "Enrich lag page", "text", "create")
	w.SetLag(t, 9)
	t.Cleanup(func() { w.SetLag(t, 0) })
	got, err := en.Enrich(context.Background(), editEvent(w, "Enrich lag page", "Admin", 0, rev), rules.Need{Wikitext: true})
	require.NoError(t, err)
	assert.Equal(t, []string{enrich.MissingWikitext}, got.Missing)
}

func TestDefaultAPIURL(t *testing.T) {
	for _, tc := range []struct{ server, script, want string }{
		{"https://en.wikipedia.org", "/w", "https://en.wikipedia.org/w/api.php"},
		{"http://127.0.0.1:8089", "/", "http://127.0.0.1:8089/api.php"},
		{"http://127.0.0.1:8089", "", "http://127.0.0.1:8089/api.php"},
		{"", "/w", ""},
	} {
		assert.Equal(t, tc.want, enrich.DefaultAPIURL(&event.RecentChange{ServerURL: tc.server, ServerScriptPath: tc.script}))
	}
}

// A wiki that cannot be reached opens its circuit after five failures: the
// following events are enriched partially at once, with no request, until
// the cool-down ends.
func TestEnrichCircuitOpensForUnreachableWiki(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	e := newEnricher(t, pipeline.Deps{Reg: reg, Log: zerolog.Nop(), Now: func() time.Time { return now }}, enrich.Config{
		APIURLFor:  func(*event.RecentChange) string { return "http://127.0.0.1:1/api.php" },
		MaxRetries: -1,
	})
	requests := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var n float64
		for _, mf := range mfs {
			if mf.GetName() == "rcwatch_enrich_requests_total" {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	old, cur := int64(1), int64(2)
	ev := &event.RecentChange{Meta: event.Meta{ID: "x"}, Type: "edit", Wiki: "downwiki", User: "Someone",
		Revision: event.OldNew{Old: &old, New: &cur}}
	need := rules.Need{Diff: true}
	for i := 0; i < 5; i++ {
		out, err := e.Enrich(context.Background(), ev, need)
		require.NoError(t, err)
		require.Contains(t, out.Missing, enrich.MissingDiff)
	}
	assert.Equal(t, 5.0, requests())
	out, err := e.Enrich(context.Background(), ev, need)
	require.NoError(t, err)
	assert.Contains(t, out.Missing, enrich.MissingDiff)
	assert.Equal(t, 5.0, requests(), "no request while the circuit is open")

	now = now.Add(31 * time.Second)
	_, err = e.Enrich(context.Background(), ev, need)
	require.NoError(t, err)
	assert.Equal(t, 6.0, requests(), "one request after the cool-down")
}

// newEnricher builds an Enricher with the shared MediaWiki metrics on d.Reg.
func newEnricher(t *testing.T, d pipeline.Deps, cfg enrich.Config) *enrich.Enricher {
	t.Helper()
	mw, err := mediawiki.NewMetrics(d.Reg)
	require.NoError(t, err)
	e, err := enrich.New(d, cfg, mw)
	require.NoError(t, err)
	return e
}
