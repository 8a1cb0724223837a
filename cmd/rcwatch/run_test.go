package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// graceRun is the longest `rcwatch run` may take to drain every stage.
const graceRun = 60 * time.Second

// `rcwatch run` as a user runs it with every stage on: ingest from the
// project's replay server, the evaluator enriching from the real local
// MediaWiki, the IRC worker posting to a real ngircd and the edit worker in
// dry-run against the same wiki. Every replayed edit becomes one IRC line and
// one audit record; /readyz says ready; SIGTERM drains everything and exits 0.
// (Before the stage contract, this start panicked: the MediaWiki client
// metrics were registered twice.)
func TestRunEveryStage(t *testing.T) {
	w := mwtest.Start(t)
	ircd := ircdtest.Start(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, ircd.Addr, "watcher", "")
	watcher.Join(t, "#run")

	// The edits the replayed events describe exist on the wiki, so the edit
	// worker's dry run reads real pages and revisions.
	w.Edit(t, w.Admin, "User:"+w.Bot.Name+"/Run", "true", "kill switch on")
	const n = 12
	events := make([][]byte, n)
	for i := range n {
		title := fmt.Sprintf("Run page %d", i)
		rev := w.Edit(t, w.Other, title, "Some text about a thing.", "create")
		events[i] = runEvent(t, i, w.URL, title, w.Other.Name, rev)
	}
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: events}, zerolog.Nop()))
	t.Cleanup(hs.Close)

	dir := t.TempDir()
	rules := writeFile(t, dir, "rules.yaml", `rules:
  - id: run-every-edit
    when: wiki == "testwiki" && type == "edit"
    severity: high
    score: 0.9
    actions: [irc:#run, edit:tag]
`)
	ircConf := writeFile(t, dir, "irc.yaml", fmt.Sprintf(`lease_ttl: 2s
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: runbot
    flood: {rate: 20, burst: 4, backlog: 1000}
    channels:
      - name: "#run"
        plain: true
        route: {from_actions: true}
`, ircd.Port))
	editConf := writeFile(t, dir, "edit.yaml", fmt.Sprintf(`rate_per_minute: 600
kill_switch_interval: 1s
max_alert_age: 0s
wikis:
  testwiki:
    api_url: %s
    account: %s
    app_id: %s
    user_agent: "rcwatch-test (run test)"
    operations: [tag]
    talk_page_stop: false
    tag:
      template: "{{Update|date={month} {year}}}"
`, w.APIURL, w.Bot.Name, w.Bot.AppID))

	opsPort, natsPort := freeport.Must(t), freeport.Must(t)
	ops := fmt.Sprintf("127.0.0.1:%d", opsPort)
	p := startProcEnv(t, []string{"RCWATCH_EDIT_BOT_PASSWORD=" + w.Bot.Secret},
		"run", "--source", hs.URL, "--data-dir", filepath.Join(dir, "data"), "--ops-addr", ops,
		"--nats-port", fmt.Sprint(natsPort), "--rules", rules, "--enrich-api-url", w.APIURL,
		"--irc-config", ircConf, "--edit-config", editConf)

	_, js := natstest.Connect(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort))

	lines := watcher.WaitMessages(t, "#run", n, 90*time.Second)
	seen := map[string]int{}
	page := regexp.MustCompile(`Run[ _]page[ _](\d+)\b`)
	for _, l := range lines {
		if m := page.FindStringSubmatch(l.Text); m != nil {
			seen[m[1]]++
		}
	}
	for i := range n {
		assert.Equal(t, 1, seen[fmt.Sprint(i)], "one IRC line for page %d", i)
	}
	assert.Len(t, lines, n, "one line per alert")
	// The dry-run records land in the AUDIT stream (read from the stream:
	// a subscription made after start could miss the first ones).
	natstest.WaitCount(t, js, pipeline.StreamAudit, n, 90*time.Second)
	audited := map[string]int{}
	for _, m := range natstest.Messages(t, js, pipeline.StreamAudit) {
		var a struct {
			AlertID string `json:"alert_id"`
		}
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		audited[a.AlertID]++
	}
	assert.Len(t, audited, n, "every alert audited by the edit worker")
	for id, c := range audited {
		assert.Equal(t, 1, c, "alert %s audited once", id)
	}

	resp, err := http.Get("http://" + ops + "/readyz")
	require.NoError(t, err)
	var ready struct {
		Ready   bool              `json:"ready"`
		Failing map[string]string `json:"failing"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ready))
	resp.Body.Close()
	assert.True(t, ready.Ready, "every stage ready: %v", ready.Failing)
	metrics := httpGet(t, "http://"+ops+"/metrics")
	assert.Contains(t, metrics, "rcwatch_mediawiki_requests_total", "one set of MediaWiki metrics, shared")
	assert.Contains(t, metrics, "rcwatch_irc_lines_sent_total")

	start := time.Now()
	require.NoError(t, p.Signal(t, syscall.SIGTERM, graceRun), "exit 0 after draining every stage")
	assert.Less(t, time.Since(start), graceRun)
	for _, rc := range w.RecentChanges(t) {
		assert.NotEqual(t, w.Bot.Name, rc.User, "dry-run made an edit")
	}
}

// runEvent is a recent-change event, as EventStreams would send it, for an
// edit made on the local wiki.
func runEvent(tb testing.TB, i int, serverURL, title, user string, rev int64) []byte {
	tb.Helper()
	now := time.Now().UTC()
	ev := map[string]any{
		"meta": map[string]any{
			"id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "dt": now.Format(time.RFC3339),
			"domain": "127.0.0.1", "stream": "mediawiki.recentchange", "uri": serverURL + "/index.php/" + title,
		},
		"id": 1000 + i, "type": "edit", "namespace": 0, "title": title, "comment": "edit " + fmt.Sprint(i),
		"timestamp": now.Unix(), "user": user, "bot": false, "minor": false,
		"length": map[string]int{"old": 0, "new": 24}, "revision": map[string]int64{"new": rev},
		"server_url": serverURL, "server_name": "127.0.0.1", "server_script_path": "", "wiki": "testwiki",
	}
	b, err := json.Marshal(ev)
	require.NoError(tb, err)
	return b
}

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	require.NoError(tb, os.WriteFile(p, []byte(content), 0o644))
	return p
}
