package irc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// TestBacklogFolds: a flood of 3,000 alerts of one rule, published as fast
// as NATS takes them, against a channel at 2 lines/s. The channel's backlog
// in the consumer is folded into per-(rule, wiki) digest lines linking to
// the feed; every alert is its own line or counted in a digest, once; and an
// alert published after the flood reaches the channel within 10 s.
func TestBacklogFolds(t *testing.T) {
	const total = 3000
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	cfg := env.config("rcbot", "#alerts")
	cfg.AckWait = 30 * time.Second  // fewer InProgress calls from 1,024 waiting handlers
	cfg.LeaseTTL = 10 * time.Second // the default: a 2 s lease can lapse on a loaded test machine
	cfg.BacklogFold = BacklogFoldConfig{Age: 10 * time.Second, Pending: 20, FeedURL: "http://feed.example:9095/"}
	rw := env.startWorker(t, cfg, WithFlood(2, 4))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var futures []jetstream.PubAckFuture
	for i := range total {
		a := testAlert("qs-flood", int64(10_000+i), "#alerts")
		a.Event.Wiki = "wikidatawiki"
		data, err := json.Marshal(a)
		require.NoError(t, err)
		f, err := env.js.PublishAsync(pipeline.AlertSubject("wikidatawiki", a.Rule.ID), data, jetstream.WithMsgID(a.ID))
		require.NoError(t, err)
		futures = append(futures, f)
	}
	select {
	case <-env.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing the flood timed out")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
	live := testAlert("vandalism", 99_999, "#alerts")
	live.Event.User = "LiveVandal" // no flood alert shares its rule or user, so no digest hides it
	publishAlert(t, env.js, live)
	published := time.Now()

	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range watcher.Messages("#alerts") {
				t.Logf("%s %q", m.At.Format("15:04:05.000"), m.Text)
			}
		}
	})
	// The live alert reaches the channel as its own line, or — when it
	// waited behind the flood longer than backlog_fold.age — as the latest
	// alert (title and diff link) of its rule's backlog digest.
	isLive := func(m ircdtest.Msg) bool { return strings.Contains(m.Text, "diff=99999&") }
	watcher.Wait(t, 30*time.Second, "the live alert's line", func([]ircdtest.Line) bool {
		return slices.ContainsFunc(watcher.Messages("#alerts"), isLive)
	})
	var liveAt time.Time
	for _, m := range watcher.Messages("#alerts") {
		if isLive(m) {
			liveAt = m.At
		}
	}
	lag := liveAt.Sub(published)
	require.Less(t, lag, 10*time.Second, "the live alert is not stuck behind the flood")

	accounted := func() (singles map[int64]int, folded, backlog int) {
		singles = map[int64]int{}
		for _, m := range watcher.Messages("#alerts") {
			if n := digestCount(m.Text); n > 0 {
				folded += n
				if strings.Contains(m.Text, "(backlog") {
					backlog++
				}
			} else if r := revOf(m.Text); r > 0 {
				singles[r]++
			}
		}
		return singles, folded, backlog
	}
	watcher.Wait(t, 60*time.Second, "every alert in a line or a digest", func([]ircdtest.Line) bool {
		s, f, _ := accounted()
		return len(s)+f >= total+1
	})
	rw.stop()
	singles, folded, backlogLines := accounted()
	for r, n := range singles {
		require.Equal(t, 1, n, "alert %d posted once", r)
	}
	require.Equal(t, total+1, len(singles)+folded, "each alert is its own line or counted in a digest, once")
	require.Positive(t, backlogLines, "the backlog was folded")
	msgs := watcher.Messages("#alerts")
	for _, m := range msgs {
		requireWireSafe(t, m.Raw)
		if strings.Contains(m.Text, "(backlog") {
			require.Contains(t, m.Text, "from rule \x0307qs-flood\x03 on wikidatawiki (backlog; latest: ")
			require.Contains(t, m.Text, "http://feed.example:9095/?rule=qs-flood&wiki=wikidatawiki")
		}
	}
	m := rw.w.m
	require.Equal(t, float64(folded), testutil.ToFloat64(m.folded.WithLabelValues("test", "backlog"))+
		testutil.ToFloat64(m.folded.WithLabelValues("test", "queue")))
	require.Positive(t, testutil.ToFloat64(m.folded.WithLabelValues("test", "backlog")))
	require.Less(t, len(msgs), 60, "the flood became a few lines")
	t.Logf("%d alerts → %d lines (%d single, %d backlog digests, folded %d); live alert %v after publishing",
		total+1, len(msgs), len(singles), backlogLines, folded, lag)
}
