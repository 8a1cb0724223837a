package quality_test

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// rcEvents receives the local wiki's RC feed datagrams on a UDP socket and
// converts them to recent-change events as the RC feed adapter does,
// keeping those whose title starts with prefix.
func rcEvents(t *testing.T, prefix string) (addr string, evs <-chan *event.RecentChange) {
	feed, err := ingest.NewRCFeed(ingest.RCFeedConfig{}, prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(t, err)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan *event.RecentChange, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			data, err := feed.Convert(buf[:n])
			if err != nil {
				continue
			}
			ev, err := event.Decode(data)
			if err == nil && strings.HasPrefix(ev.Title, prefix) {
				ch <- ev
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
		feed.Close()
	})
	return pc.LocalAddr().String(), ch
}

// Against the real local MediaWiki: the test makes edits, undoes one
// (action=edit&undo, MediaWiki's own summary) and rolls back two
// consecutive ones (action=rollback); the events its RC feed pushes are
// recognised as those reverts, and the live tracker, told that a rule
// alerted on every edit of the vandal, counts 3 of its 5 alerted edits
// reverted.
func TestRevertsOnRealWiki(t *testing.T) {
	addr, evc := rcEvents(t, "Quality test")
	w := mwtest.Start(t, mwtest.Options{RCFeedUDP: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	admin, err := mediawiki.New(mediawiki.Config{APIURL: w.APIURL,
		Auth:       mediawiki.BotPassword{User: w.Admin.Name, AppID: w.Admin.AppID, Secret: w.Admin.Secret},
		HTTPClient: &http.Client{Jar: jar, Timeout: 30 * time.Second}, MaxWait: -1}, zerolog.Nop())
	require.NoError(t, err)

	w.Edit(t, w.Admin, "Quality test undo", "A good article.", "create")
	vandal := w.Edit(t, w.Other, "Quality test undo", "A good article. POOP", "")
	// Without a summary parameter, as the web form's undo does, so that
	// MediaWiki writes its autosummary (mediawiki.Client.Undo always sends
	// one, even empty, which suppresses it).
	var undo struct {
		Edit mediawiki.EditResult `json:"edit"`
	}
	require.NoError(t, admin.Post(ctx, "csrf", url.Values{"action": {"edit"}, "title": {"Quality test undo"},
		"undo": {strconv.FormatInt(vandal, 10)}, "baserevid": {strconv.FormatInt(vandal, 10)}}, &undo))
	require.Equal(t, "Success", undo.Edit.Result)
	w.Edit(t, w.Admin, "Quality test rollback", "Another good article.", "create")
	w.Edit(t, w.Other, "Quality test rollback", "Another good article. x", "")
	w.Edit(t, w.Other, "Quality test rollback", "Another good article. xy", "")
	rb, err := admin.Rollback(ctx, mediawiki.RollbackRequest{Title: "Quality test rollback", User: w.Other.Name, Assert: "user"})
	require.NoError(t, err)
	w.Edit(t, w.Other, "Quality test kept", "Kept.", "create")
	w.Edit(t, w.Other, "Quality test kept", "Kept, and longer.", "expand")

	var evs []*event.RecentChange
	timeout := time.After(time.Minute)
	for len(evs) < 9 {
		select {
		case ev := <-evc:
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("%d of 9 RC feed events arrived", len(evs))
		}
	}
	byRev := map[int64]*event.RecentChange{}
	for _, ev := range evs {
		require.NotNil(t, ev.Revision.New, "%+v", ev)
		byRev[*ev.Revision.New] = ev
	}
	require.Contains(t, byRev, undo.Edit.NewRevID)
	require.Contains(t, byRev, rb.RevID)
	t.Logf("undo summary %q; rollback summary %q", byRev[undo.Edit.NewRevID].Comment, byRev[rb.RevID].Comment)
	r, ok := quality.Recognise(byRev[undo.Edit.NewRevID])
	require.True(t, ok, "the undo is recognised")
	assert.Equal(t, quality.Revert{Kind: quality.KindUndo, Revs: []int64{vandal}}, r)
	r, ok = quality.Recognise(byRev[rb.RevID])
	require.True(t, ok, "the rollback is recognised")
	assert.Equal(t, quality.Revert{Kind: quality.KindRollback, User: w.Other.Name}, r)

	// Offline: the vandal's undone edit and both rolled-back edits.
	rev := quality.RevertedEvents(evs, time.Hour)
	reverted := 0
	for i, ev := range evs {
		if rev[i] {
			reverted++
			assert.Equal(t, w.Other.Name, ev.User)
			assert.NotEqual(t, "Quality test kept", ev.Title)
		}
	}
	assert.Equal(t, 3, reverted)

	// Live: the tracker on a real JetStream.
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	reg := prometheus.NewRegistry()
	tr, err := quality.New(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, quality.Config{Window: time.Hour})
	require.NoError(t, err)
	require.NoError(t, tr.Open(ctx))
	for _, ev := range evs {
		var alerted []string
		if ev.User == w.Other.Name {
			alerted = []string{"vandal-rule"}
		}
		tr.Observe(ctx, ev, alerted)
	}
	assert.Equal(t, 5.0, metrictest.Sum(t, reg, "rcwatch_quality_alerted_total", "rule", "vandal-rule", "wiki", "testwiki"))
	assert.Equal(t, 3.0, metrictest.Sum(t, reg, "rcwatch_quality_alerted_reverted_total", "rule", "vandal-rule", "wiki", "testwiki"))
	assert.Equal(t, 3.0, metrictest.Sum(t, reg, "rcwatch_quality_reverted_total", "wiki", "testwiki"))
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_quality_reverts_total", "kind", "undo"))
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_quality_reverts_total", "kind", "rollback"))
	assert.Zero(t, metrictest.Sum(t, reg, "rcwatch_quality_errors_total"))
}
