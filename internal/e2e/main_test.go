// Package e2e runs rcwatch the way its users do. Without build tags: the
// hostile-input test (testdata/hostile). With -tags e2e (make e2e): from a
// real wiki's own recent-changes feed to the patrol channel and the bot's
// revert: a local MediaWiki pushes its RC feed over UDP to `rcwatch replay
// --from-mediawiki-rcfeed`, whose SSE stream `rcwatch run` ingests with every
// stage on (enrichment from the same wiki, IRC to a real ngircd, the edit
// worker live against the same wiki).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
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

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	require.NoError(tb, os.WriteFile(p, []byte(content), 0o644))
	return p
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
