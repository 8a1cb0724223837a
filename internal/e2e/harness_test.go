//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// env is the whole set-up: the wiki, its feed adapter, the IRC server and a
// watcher in the patrol channel, and rcwatch's config files.
type env struct {
	wiki     *mwtest.Wiki
	ircd     *ircdtest.Server
	watcher  *ircdtest.Client
	adapter  *proctest.Proc
	feedURL  string // the adapter's SSE endpoint
	feedOps  string // the adapter's /metrics
	dir      string
	rules    string
	ircConf  string
	editConf string
	natsPort int
	opsAddr  string
}

const patrol = "#patrol"

// freeUDP returns a loopback UDP address nobody listens on (now).
func freeUDP(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := pc.LocalAddr().String()
	require.NoError(tb, pc.Close())
	return addr
}

// setup starts everything but `rcwatch run`; rules is the rules file's text,
// flood the IRC flood settings, settings PHP for the wiki's LocalSettings.
func setup(tb testing.TB, rules, flood, settings string) *env {
	tb.Helper()
	e := &env{dir: tb.TempDir()}
	udp := freeUDP(tb)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freeport.Must(tb))
	e.adapter = startProc(tb, nil, "replay", "--from-mediawiki-rcfeed", "udp://"+udp, "--listen", httpAddr)
	e.feedURL = "http://" + httpAddr + "/v2/stream/recentchange"
	e.feedOps = "http://" + httpAddr + "/metrics"
	waitHTTP(tb, e.feedOps, 30*time.Second)
	e.wiki = mwtest.Start(tb, mwtest.Options{RCFeedUDP: udp, ExtraSettings: settings})
	e.ircd = ircdtest.Start(tb, ircdtest.Options{})
	e.watcher = ircdtest.Dial(tb, e.ircd.Addr, "patroller", "")
	e.watcher.Join(tb, patrol)
	e.wiki.Edit(tb, e.wiki.Admin, "User:"+e.wiki.Bot.Name+"/Run", "true", "kill switch on")

	e.rules = writeFile(tb, e.dir, "rules.yaml", rules)
	e.ircConf = writeFile(tb, e.dir, "irc.yaml", fmt.Sprintf(`lease_ttl: 2s
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: rcwatchbot
    flood: %s
    channels:
      - name: "%s"
        plain: true
        route: {from_actions: true}
`, e.ircd.Port, flood, patrol))
	e.editConf = writeFile(tb, e.dir, "edit.yaml", fmt.Sprintf(`rate_per_minute: 600
kill_switch_interval: 1s
# A killed process's alert is redelivered after ack_wait and its claim taken
# over after claim_ttl (defaults 60s and 2m: shortened for the test).
ack_wait: 5s
claim_ttl: 10s
wikis:
  testwiki:
    api_url: %s
    account: %s
    app_id: %s
    user_agent: "rcwatch-e2e (end-to-end test)"
    operations: [revert, tag]
    talk_page_stop: false
    revert: {method: undo}
    tag:
      template: "{{Update|date={month} {year}}}"
      rules:
        e2e-stale-citation: "{{Citation check|date={month} {year}}}"
`, e.wiki.APIURL, e.wiki.Bot.Name, e.wiki.Bot.AppID))
	e.natsPort = freeport.Must(tb)
	e.opsAddr = fmt.Sprintf("127.0.0.1:%d", freeport.Must(tb))
	return e
}

// run starts `rcwatch run` with every stage on and waits until its ingest
// is connected to the adapter (one more SSE client than before).
func (e *env) run(tb testing.TB, extra ...string) *proctest.Proc {
	tb.Helper()
	before := metric(tb, e.feedOps, "rcwatch_rcfeed_clients")
	args := append([]string{"run", "--source", e.feedURL, "--data-dir", filepath.Join(e.dir, "data"),
		"--ops-addr", e.opsAddr, "--nats-port", fmt.Sprint(e.natsPort),
		"--rules", e.rules, "--enrich-api-url", e.wiki.APIURL,
		"--irc-config", e.ircConf, "--edit-config", e.editConf, "--edit-live",
		// Killed before it first stored its position (every 1s), ingest
		// would restart live and miss what happened while it was down.
		"--since", "10m"}, extra...)
	p := startProc(tb, []string{"RCWATCH_EDIT_BOT_PASSWORD=" + e.wiki.Bot.Secret}, args...)
	require.Eventually(tb, func() bool {
		select {
		case <-p.Done():
			tb.Fatalf("rcwatch run exited: %v\n%s", p.Err(), p.Tail(8000))
		default:
		}
		return metric(tb, e.feedOps, "rcwatch_rcfeed_clients") > before
	}, 60*time.Second, 20*time.Millisecond, "rcwatch run never connected to the feed adapter")
	return p
}

// connect is a NATS connection to rcwatch run's embedded server.
func (e *env) connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := pipeline.Connect(fmt.Sprintf("nats://127.0.0.1:%d", e.natsPort), "e2e", zerolog.Nop())
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(tb, err)
	return nc, js
}

func waitHTTP(tb testing.TB, url string, timeout time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, timeout, 20*time.Millisecond, "GET %s", url)
}

// metric reads one unlabelled gauge or counter from a /metrics page (0 when
// absent).
func metric(tb testing.TB, url, name string) float64 {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			var v float64
			_, _ = fmt.Sscanf(strings.TrimPrefix(line, name+" "), "%g", &v)
			return v
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0
}
