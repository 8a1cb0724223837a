package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// The drain that each Deployment's terminationGracePeriodSeconds relies on
// (deploy/k8s/base) is real: SIGTERM under load, exit 0 within the grace
// period, and after a restart nothing is missing.

const (
	graceEvaluate = 45 * time.Second
	graceIRC      = 30 * time.Second
	graceEdit     = 60 * time.Second
)

func TestEvaluateDrainsOnSIGTERM(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	events := testEvents(t, 1700)
	want := 0
	for _, e := range events {
		ev, err := event.Decode(e)
		require.NoError(t, err)
		natstest.Publish(t, js, pipeline.RecentChangeSubject(ev.Wiki, ev.Type), ev.Meta.ID, e)
		if ev.Type == "edit" {
			want++
		}
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(`rules:
  - id: every-edit
    when: type == "edit"
    severity: low
`), 0o644))
	args := []string{"evaluate", "--nats", srv.URL, "--ops-addr", "", "--rules", rules, "--enrich=false", "--max-match-rate", "-1"}

	p := startProc(t, args...)
	require.Eventually(t, func() bool { return natstest.Count(t, js, pipeline.StreamAlerts) >= 200 }, 60*time.Second, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, p.Signal(t, syscall.SIGTERM, graceEvaluate), "exit 0")
	assert.Less(t, time.Since(start), graceEvaluate)
	require.Less(t, natstest.Count(t, js, pipeline.StreamAlerts), want, "stopped under load, mid-run")
	// The evaluator acks without waiting for the server's reply (its alerts
	// are deduplicated by id), so the server may apply the last acks a moment
	// after the process exits; a message left unacked would stay pending for
	// the 30 s ack wait.
	assert.Eventually(t, func() bool {
		return natstest.ConsumerInfo(t, js, pipeline.StreamRecentChange, "rules").NumAckPending == 0
	}, 5*time.Second, 20*time.Millisecond, "every message delivered before SIGTERM was finished and acked")

	p2 := startProc(t, args...)
	require.Eventually(t, func() bool {
		i := natstest.ConsumerInfo(t, js, pipeline.StreamRecentChange, "rules")
		return i.NumPending == 0 && i.NumAckPending == 0
	}, 60*time.Second, 20*time.Millisecond)
	assert.Equal(t, want, natstest.Count(t, js, pipeline.StreamAlerts), "every event evaluated, no alert lost")
	require.NoError(t, p2.Signal(t, syscall.SIGTERM, graceEvaluate))
}

func ircAlert(i int) event.Alert {
	return event.Alert{
		ID: event.AlertID("drain", fmt.Sprintf("ev-%d", i)), Rule: event.RuleRef{ID: "drain", Version: "v1"},
		Severity: event.SeverityHigh, Score: 0.9,
		Event: event.Ref{MetaID: fmt.Sprintf("ev-%d", i), Wiki: "enwiki", ServerURL: "https://en.wikipedia.org",
			ScriptPath: "/w", Type: "edit", Title: fmt.Sprintf("Page %d", i), User: "192.0.2.1", UserType: "ip",
			OldRev: int64(1000 + i), NewRev: int64(2000 + i), OldSize: 100, NewSize: 50,
			DiffURL: fmt.Sprintf("https://en.wikipedia.org/w/index.php?diff=%d&oldid=%d", 2000+i, 1000+i)},
		DetectedAt: time.Now(), Actions: []string{"irc:#drain"},
	}
}

func TestIRCWorkerDrainsOnSIGTERM(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ircd := ircdtest.Start(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, ircd.Addr, "watcher", "")
	watcher.Join(t, "#drain")
	conf := filepath.Join(t.TempDir(), "irc.yaml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`lease_ttl: 2s
# Every alert on its own line: this test counts them (folding a backlog
# into digests is tested in actions/irc).
backlog_fold: {off: true}
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: drainbot
    flood: {rate: 20, burst: 4, backlog: 1000}
    channels:
      - name: "#drain"
        plain: true
        route: {from_actions: true}
`, ircd.Port)), 0o644))
	args := []string{"act", "irc", "--nats", srv.URL, "--ops-addr", "", "--config", conf}
	p := startProc(t, args...)
	// The channel's consumer starts at new alerts: wait for it.
	natstest.WaitConsumer(t, js, pipeline.StreamAlerts, "irc-", 30*time.Second)

	const n = 120
	for i := range n {
		a := ircAlert(i)
		b, err := json.Marshal(a)
		require.NoError(t, err)
		natstest.Publish(t, js, pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID), a.ID, b)
	}
	require.Less(t, len(watcher.WaitMessages(t, "#drain", 30, 30*time.Second)), n, "stopped under load, mid-run")
	start := time.Now()
	require.NoError(t, p.Signal(t, syscall.SIGTERM, graceIRC), "exit 0")
	assert.Less(t, time.Since(start), graceIRC)

	p2 := startProc(t, args...)
	lines := watcher.WaitMessages(t, "#drain", n, 90*time.Second)
	seen := map[int]int{}
	for _, l := range lines {
		for i := range n {
			if strings.Contains(l.Text, fmt.Sprintf("diff=%d&", 2000+i)) {
				seen[i]++
			}
		}
	}
	for i := range n {
		assert.Equal(t, 1, seen[i], "alert %d", i)
	}
	require.NoError(t, p2.Signal(t, syscall.SIGTERM, graceIRC))
}

func TestEditWorkerDrainsOnSIGTERM(t *testing.T) {
	w := mwtest.Start(t)
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	w.Edit(t, w.Admin, "User:"+w.Bot.Name+"/Run", "true", "kill switch on")
	const n = 24
	revs := make([]int64, n)
	for i := range n {
		revs[i] = w.Edit(t, w.Other, fmt.Sprintf("Drain page %d", i), "Some text about a thing.", "create")
	}
	conf := filepath.Join(t.TempDir(), "edit.yaml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`rate_per_minute: 600
kill_switch_interval: 1s
max_alert_age: 0s
wikis:
  testwiki:
    api_url: %s
    account: %s
    app_id: %s
    user_agent: "rcwatch-test (drain test)"
    operations: [tag]
    talk_page_stop: false
    tag:
      template: "{{Update|date={month} {year}}}"
`, w.APIURL, w.Bot.Name, w.Bot.AppID)), 0o644))
	audits := make(chan event.Alert, 4*n)
	sub, err := nc.Subscribe("audit.edit.>", func(m *nats.Msg) {
		var a struct {
			AlertID string `json:"alert_id"`
		}
		if json.Unmarshal(m.Data, &a) == nil {
			audits <- event.Alert{ID: a.AlertID}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	args := []string{"act", "edit", "--nats", srv.URL, "--ops-addr", "", "--config", conf}
	p := startProcEnv(t, []string{"RCWATCH_EDIT_BOT_PASSWORD=" + w.Bot.Secret}, args...)
	natstest.WaitConsumer(t, js, pipeline.StreamAlerts, "edit", 30*time.Second)
	for i := range n {
		a := event.Alert{
			ID: event.AlertID("drain-edit", fmt.Sprintf("e-%d", i)), Rule: event.RuleRef{ID: "drain-edit", Version: "v1"},
			Severity: event.SeverityMedium, Score: 0.5,
			Event: event.Ref{Wiki: "testwiki", ServerURL: w.URL, Type: "edit", Title: fmt.Sprintf("Drain page %d", i),
				User: w.Other.Name, NewRev: revs[i], Timestamp: time.Now().Unix()},
			DetectedAt: time.Now(), Actions: []string{"edit:tag"},
		}
		b, err := json.Marshal(a)
		require.NoError(t, err)
		natstest.Publish(t, js, pipeline.AlertSubject("testwiki", a.Rule.ID), a.ID, b)
	}
	got := map[string]int{}
	recv := func(k int, timeout time.Duration) {
		deadline := time.After(timeout)
		for len(got) < k {
			select {
			case a := <-audits:
				got[a.ID]++
			case <-deadline:
				t.Fatalf("%d of %d alerts audited", len(got), k)
			}
		}
	}
	recv(5, 60*time.Second)
	require.Less(t, len(got), n, "stopped under load, mid-run")
	start := time.Now()
	require.NoError(t, p.Signal(t, syscall.SIGTERM, graceEdit), "exit 0")
	assert.Less(t, time.Since(start), graceEdit)

	p2 := startProcEnv(t, []string{"RCWATCH_EDIT_BOT_PASSWORD=" + w.Bot.Secret}, args...)
	recv(n, 2*time.Minute)
	assert.Len(t, got, n, "every alert handled after the restart")
	require.NoError(t, p2.Signal(t, syscall.SIGTERM, graceEdit))
	for _, rc := range w.RecentChanges(t) {
		assert.NotEqual(t, w.Bot.Name, rc.User, "dry-run made an edit")
	}
}
