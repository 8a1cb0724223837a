//go:build rehearsal

// Package rehearsal runs the cluster on loopback: a three-node NATS
// JetStream cluster, two replicas of every stage as separate rcwatch
// processes, the replay server as the source. During the run it kills one
// NATS node and one replica of each stage, then checks that every event was
// stored and evaluated once and every alert delivered exactly once.
//
// Run it with `make rehearsal` (go test -tags rehearsal ./internal/rehearsal).
package rehearsal

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

const ruleFile = `rules:
  - id: rehearsal-edit
    description: every edit (the rehearsal checks each is alerted once)
    when: type == "edit"
    severity: low
    score: 1
    actions: ["irc:#rehearsal"]
  - id: rehearsal-new
    description: every page creation asks the edit worker (dry-run) to tag it
    when: type == "new"
    severity: low
    actions: ["edit:tag"]
`

// start runs one rcwatch replica; at cleanup it gets SIGTERM and 20s.
func start(t *testing.T, bin, name string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, bin, proctest.Options{Name: name, Env: []string{"RCWATCH_OPS_ADDR="}, Grace: 20 * time.Second, LogTail: 4000}, args...)
}

func TestRehearsal(t *testing.T) {
	bin, err := proctest.Build(t.TempDir(), proctest.Package)
	require.NoError(t, err)
	cluster := natstest.StartCluster(t, 3)
	urls := cluster.URLs()

	evs := fixtures.Unique(t, 2000)
	wantAlerts := map[string]bool{}
	wantEdits := map[string]bool{}
	for _, e := range evs {
		ev, _ := event.Decode(e)
		switch ev.Type {
		case "edit":
			wantAlerts[event.AlertID("rehearsal-edit", ev.Meta.ID)] = true
		case "new":
			wantAlerts[event.AlertID("rehearsal-new", ev.Meta.ID)] = true
			wantEdits[event.AlertID("rehearsal-new", ev.Meta.ID)] = true
		}
	}
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: evs, Rate: 250, CutEvery: 300}, zerolog.Nop())
	hs := httptest.NewServer(replay)
	t.Cleanup(hs.Close)

	rulesDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rulesDir, "rehearsal.yaml"), []byte(ruleFile), 0o644))

	ircd := ircdtest.Start(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, ircd.Addr, "watcher", "")
	watcher.Join(t, "#rehearsal")
	ircConf := filepath.Join(t.TempDir(), "irc.yaml")
	require.NoError(t, os.WriteFile(ircConf, []byte(fmt.Sprintf(`lease_ttl: 3s
# Every alert on its own line: this test counts them (folding a backlog
# into digests is tested in actions/irc).
backlog_fold: {off: true}
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: rcwatch
    flood: {rate: 400, burst: 100, backlog: 10000}
    channels:
      - name: "#rehearsal"
        plain: true
        route:
          from_actions: true
`, ircd.Port)), 0o644))

	wiki := mwtest.Start(t)
	wiki.Edit(t, wiki.Admin, "User:"+wiki.Bot.Name+"/Run", "true", "kill switch on")
	editConf := filepath.Join(t.TempDir(), "edit.yaml")
	require.NoError(t, os.WriteFile(editConf, []byte(fmt.Sprintf(`rate_per_minute: 6000
max_alert_age: 0s
claim_ttl: 5s
wikis:
  wikidatawiki:
    api_url: %s
    account: %s
    app_id: %s
    user_agent: "rcwatch-rehearsal"
    operations: [tag]
    talk_page_stop: false
    tag:
      template: "{{Update}}"
`, wiki.APIURL, wiki.Bot.Name, wiki.Bot.AppID)), 0o644))
	t.Setenv("RCWATCH_EDIT_BOT_PASSWORD", wiki.Bot.Secret)

	common := []string{"--nats", urls, "--stream-replicas", "3"}
	// Start order: consumers first (a new action consumer starts at new alerts).
	order := []string{"act-irc", "act-edit", "evaluate", "ingest"}
	stages := map[string][]string{
		"act-irc":  append([]string{"act", "irc", "--config", ircConf}, common...),
		"act-edit": append([]string{"act", "edit", "--config", editConf}, common...),
		"evaluate": append([]string{"evaluate", "--rules", rulesDir, "--max-match-rate", "-1", "--enrich=false"}, common...),
		"ingest":   append([]string{"ingest", "--source", hs.URL}, common...),
	}

	nc, err := pipeline.Connect(urls, "rehearsal", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)

	procs := map[string][2]*proctest.Proc{}
	for _, name := range order {
		args := stages[name]
		if name == "act-irc" {
			procs[name] = [2]*proctest.Proc{start(t, bin, name+"-a", append(args, "--replica-id", "a")...),
				start(t, bin, name+"-b", append(args, "--replica-id", "b")...)}
		} else {
			procs[name] = [2]*proctest.Proc{start(t, bin, name+"-a", args...), start(t, bin, name+"-b", args...)}
		}
		switch name {
		case "act-irc":
			natstest.WaitConsumer(t, js, pipeline.StreamAlerts, "irc-", 90*time.Second)
		case "act-edit":
			natstest.WaitConsumer(t, js, pipeline.StreamAlerts, "edit", 90*time.Second)
		}
	}
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 400, 90*time.Second)

	// Mid-run: one NATS node and one replica of each stage die.
	cluster.Nodes[2].Shutdown()
	for _, p := range procs {
		p[0].Kill(t)
	}
	t.Logf("killed NATS node n2 and one replica of each stage")

	natstest.WaitCount(t, js, pipeline.StreamRecentChange, len(evs), 3*time.Minute)
	natstest.WaitCount(t, js, pipeline.StreamAlerts, len(wantAlerts), 2*time.Minute)
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "rules", time.Minute)

	// Every event stored once.
	msgs := natstest.StreamMessages(t, js, pipeline.StreamRecentChange, len(evs), time.Minute)
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		require.False(t, seen[id], "event %s stored twice", id)
		seen[id] = true
	}
	assert.Len(t, seen, len(evs))

	// Every event evaluated: exactly the expected alerts, once each.
	alerts := natstest.StreamMessages(t, js, pipeline.StreamAlerts, len(wantAlerts), time.Minute)
	got := map[string]int{}
	for _, m := range alerts {
		var a event.Alert
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		got[a.ID]++
	}
	for id := range wantAlerts {
		assert.Equal(t, 1, got[id], "alert %s", id)
	}
	assert.Len(t, got, len(wantAlerts), "no unexpected alerts")

	// Every alert delivered to IRC: one line per alert. A poster killed
	// between the server's confirmation of a line and the write of its
	// idempotency key posts that one line again (docs/IRC.md): at most one.
	// Every edit alert handled by the (dry-run) edit workers: one audit record each.
	natstest.WaitConsumerDone(t, js, pipeline.StreamAlerts, "edit", 2*time.Minute)
	audits := natstest.StreamMessages(t, js, pipeline.StreamAudit, len(wantEdits), time.Minute)
	audited := map[string]int{}
	for _, m := range audits {
		var a struct {
			AlertID string `json:"alert_id"`
			DryRun  bool   `json:"dry_run"`
		}
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		assert.True(t, a.DryRun)
		audited[a.AlertID]++
	}
	for id := range wantEdits {
		assert.Equal(t, 1, audited[id], "edit alert %s audited once", id)
	}
	assert.Len(t, audited, len(wantEdits))

	diffURLs := map[string]string{}
	for _, e := range evs {
		ev, _ := event.Decode(e)
		if ev.Type == "edit" {
			diffURLs[ev.DiffURL()] = ev.Meta.ID
		}
	}
	lines := watcher.WaitMessages(t, "#rehearsal", len(diffURLs), 3*time.Minute)
	perAlert := map[string]int{}
	for _, l := range lines {
		for _, f := range strings.Fields(l.Text) {
			if id, ok := diffURLs[f]; ok {
				perAlert[id]++
			}
		}
	}
	dups := 0
	for url, id := range diffURLs {
		require.GreaterOrEqual(t, perAlert[id], 1, "alert for %s never reached IRC", url)
		dups += perAlert[id] - 1
	}
	assert.LessOrEqual(t, dups, 1, "lines posted twice")
	t.Logf("events %d, alerts %d, IRC lines %d (repeated %d), edit audits %d", len(seen), len(got), len(lines), dups, len(audited))
}
