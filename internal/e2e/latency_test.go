//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
)

// latencyRules: one rule, needing the same enrichment as the e2e test's
// (the diff for removed_chars, user info for user_editcount), that posts to
// the patrol channel and reverts.
const latencyRules = `rules:
  - id: latency-blanking
    when: >-
      type == "edit" && !bot && page_namespace == 0
      && user_editcount >= 0 && old_size >= 200 && new_size * 4 < old_size && removed_chars >= 150
    severity: high
    score: 0.9
    actions: [irc:#patrol, edit:revert]
    max_match_rate: 1
`

// TestLatency measures, over E2E_LATENCY_EDITS vandal edits made one after
// the other on the local wiki, the time from the edit request to the IRC
// line in the patrol channel and to the bot's revert (its audit record, sent
// when the wiki has answered the undo). `make e2e-latency`; skipped unless
// E2E_LATENCY_EDITS is set (it is a measurement, not a check).
func TestLatency(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("E2E_LATENCY_EDITS"))
	if n <= 0 {
		t.Skip("set E2E_LATENCY_EDITS=100 (make e2e-latency) to measure")
	}
	// The vandal is a newcomer: MediaWiki's newbie edit rate limit (8/min)
	// would stop it after 8 edits.
	e := setup(t, latencyRules, "{rate: 2, burst: 4, backlog: 1000}",
		"$wgGroupPermissions['user']['noratelimit'] = true;\n")
	w := e.wiki
	title := func(i int) string { return fmt.Sprintf("Latency page %d", i) }
	for i := range n {
		w.Edit(t, w.Admin, title(i), article, "create")
	}
	p := e.run(t)
	nc, _ := e.connect(t)
	var mu sync.Mutex
	reverted := map[string]time.Time{}
	revertDone := make(chan struct{}, n)
	sub, err := nc.Subscribe("audit.edit.>", func(m *nats.Msg) {
		at := time.Now()
		var a struct {
			Title, Operation, Result string
		}
		if json.Unmarshal(m.Data, &a) == nil && a.Operation == "revert" && a.Result == "edited" {
			mu.Lock()
			reverted[a.Title] = at
			mu.Unlock()
			revertDone <- struct{}{}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	var toIRC, toRevert, save []time.Duration
	for i := range n {
		start := time.Now()
		w.Edit(t, w.Other, title(i), fmt.Sprintf("qwpoeiru zxmcnvb %d lol", i), "")
		save = append(save, time.Since(start))
		l := e.watcher.WaitLine(t, 30*time.Second, func(l ircdtest.Line) bool {
			return strings.Contains(l.Raw, "PRIVMSG "+patrol) && strings.Contains(l.Raw, "[["+title(i)+"]]")
		})
		toIRC = append(toIRC, l.At.Sub(start))
		select {
		case <-revertDone:
		case <-time.After(60 * time.Second):
			t.Fatalf("edit %d: no revert within 60s", i)
		}
		mu.Lock()
		at, ok := reverted[title(i)]
		mu.Unlock()
		require.True(t, ok, "edit %d: the revert was of another page", i)
		toRevert = append(toRevert, at.Sub(start))
	}
	require.Len(t, e.watcher.Messages(patrol), n, "one line per edit")
	t.Logf("%d edits, one after the other, on the local wiki (php -S, 4 workers, SQLite)", n)
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"edit request (the wiki saving)", save}, {"edit → IRC line", toIRC}, {"edit → revert", toRevert}} {
		p50, p99, mx := pct(s.d, 50), pct(s.d, 99), slices.Max(s.d)
		t.Logf("%-32s p50 %6.0f ms  p99 %6.0f ms  max %6.0f ms", s.name, ms(p50), ms(p99), ms(mx))
	}
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 60*time.Second))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	k := (p*len(s) + 99) / 100
	return s[max(k-1, 0)]
}
