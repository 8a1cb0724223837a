//go:build e2e

// Package e2e runs rcwatch the way its users do, from a real wiki's own
// recent-changes feed to the patrol channel and the bot's revert: a local
// MediaWiki pushes its RC feed over UDP to `rcwatch replay
// --from-mediawiki-rcfeed`, whose SSE stream `rcwatch run` ingests with every
// stage on (enrichment from the same wiki, IRC to a real ngircd, the edit
// worker live against the same wiki). Run with `make e2e` (build tag e2e).
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// binary is the rcwatch binary, built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rcwatch-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rcwatch")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/rcwatch").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building rcwatch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is an rcwatch process started by a test.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func startProc(tb testing.TB, env []string, args ...string) *proc {
	tb.Helper()
	logf := filepath.Join(tb.TempDir(), "rcwatch.log")
	f, err := os.Create(logf)
	require.NoError(tb, err)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "RCWATCH_LOG_FORMAT=json"), env...)
	require.NoError(tb, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan error, 1), log: logf}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			b, _ := os.ReadFile(logf)
			tb.Logf("rcwatch %v log (tail):\n%s", args[0], tail(b, 12000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// stop sends sig and waits for the exit.
func (p *proc) stop(tb testing.TB, sig syscall.Signal, within time.Duration) error {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(sig))
	select {
	case err := <-p.done:
		p.done <- err // for cleanup
		return err
	case <-time.After(within):
		tb.Fatalf("rcwatch did not exit within %v of %v", within, sig)
		return nil
	}
}

// env is the whole set-up: the wiki, its feed adapter, the IRC server and a
// watcher in the patrol channel, and rcwatch's config files.
type env struct {
	wiki     *mwtest.Wiki
	ircd     *ircdtest.Server
	watcher  *ircdtest.Client
	adapter  *proc
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
func (e *env) run(tb testing.TB, extra ...string) *proc {
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
		case err := <-p.done:
			p.done <- err
			b, _ := os.ReadFile(p.log)
			tb.Fatalf("rcwatch run exited: %v\n%s", err, tail(b, 8000))
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

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	require.NoError(tb, os.WriteFile(p, []byte(content), 0o644))
	return p
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

// waitConsumersDone waits until every durable consumer of stream (the
// stages'; the test's own readers are ephemeral) has nothing pending and
// nothing waiting for an ack.
func waitConsumersDone(tb testing.TB, js jetstream.JetStream, stream string, timeout time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		n := 0
		for info := range s.ListConsumers(ctx).Info() {
			if info.Config.Durable == "" {
				continue
			}
			n++
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return n > 0
	}, timeout, 50*time.Millisecond, "the consumers of %s never caught up", stream)
}
