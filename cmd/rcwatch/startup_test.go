package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
)

// runFails runs rcwatch, expects it to exit non-zero within 15 s (not the
// 30 s of a server that never got ready), and returns its output.
func runFails(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proctest.Rcwatch(), args...)
	cmd.Env = append(os.Environ(), "RCWATCH_LOG_FORMAT=json")
	out, err := cmd.CombinedOutput()
	require.NoError(tb, ctx.Err(), "rcwatch %v did not exit:\n%s", args, out)
	var ee *exec.ExitError
	require.ErrorAs(tb, err, &ee, "rcwatch %v should fail:\n%s", args, out)
	return string(out)
}

// waitLog waits until the process's log contains s.
func waitLog(tb testing.TB, p *proctest.Proc, s string, within time.Duration) string {
	tb.Helper()
	var log string
	require.Eventually(tb, func() bool {
		b, _ := os.ReadFile(p.Log)
		log = string(b)
		return strings.Contains(log, s)
	}, within, 20*time.Millisecond, "log never said %q", s)
	return log
}

// Two `rcwatch run` on one --data-dir: the second refuses, naming the
// directory and the first one's pid, and the first runs on; once the first
// has exited, the directory is free again.
func TestRunDataDirLock(t *testing.T) {
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: testEvents(t, 50)}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	args := []string{"run", "--source", hs.URL, "--data-dir", dir, "--ops-addr", "", "--enrich=false"}
	first := startProc(t, args...)
	waitLog(t, first, "ingest configured", 30*time.Second)

	out := runFails(t, args...)
	assert.Contains(t, out, "data directory in use")
	assert.Contains(t, out, dir)
	assert.Contains(t, out, fmt.Sprintf("pid %d", first.Cmd.Process.Pid))
	assert.NotContains(t, out, "not ready after")

	require.NoError(t, first.Signal(t, syscall.SIGTERM, 30*time.Second))
	again := startProc(t, args...)
	waitLog(t, again, "ingest configured", 30*time.Second)
	require.NoError(t, again.Signal(t, syscall.SIGTERM, 30*time.Second))
}

// A SIGKILLed holder does not leave the directory locked (flock dies with
// the process).
func TestRunDataDirLockFreedBySIGKILL(t *testing.T) {
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: testEvents(t, 50)}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	args := []string{"run", "--source", hs.URL, "--data-dir", dir, "--ops-addr", "", "--enrich=false"}
	first := startProc(t, args...)
	waitLog(t, first, "ingest configured", 30*time.Second)
	require.Error(t, first.Signal(t, syscall.SIGKILL, 10*time.Second))
	again := startProc(t, args...)
	waitLog(t, again, "ingest configured", 30*time.Second)
	require.NoError(t, again.Signal(t, syscall.SIGTERM, 30*time.Second))
}

// Configuration errors name their cause, quickly.
func TestStartupErrorsNameTheirCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })
	busyPort := busy.Addr().(*net.TCPAddr).Port
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"busy --nats-port", []string{"run", "--data-dir", t.TempDir(), "--nats-port", fmt.Sprint(busyPort)},
			[]string{fmt.Sprintf("NATS port %d", busyPort), "address already in use"}},
		{"--data-dir is a file", []string{"run", "--data-dir", file},
			[]string{"data directory " + file, "cannot be created"}},
		{"--data-dir under a file", []string{"run", "--data-dir", filepath.Join(file, "data")},
			[]string{"data directory " + filepath.Join(file, "data"), "not a directory"}},
		{"--nats-port out of range", []string{"run", "--data-dir", t.TempDir(), "--nats-port", "70000"},
			[]string{"--nats-port 70000"}},
		{"NATS URL scheme", []string{"ingest", "--nats", "http://127.0.0.1:4222"},
			[]string{"NATS URL http://127.0.0.1:4222", `scheme "http"`}},
		{"NATS URL port, password hidden", []string{"ingest", "--nats", "nats://bot:hunter2@127.0.0.1:99999"},
			[]string{"NATS URL nats://bot:xxxxx@127.0.0.1:99999", "out of range"}},
		{"tiny stream limit", []string{"run", "--data-dir", t.TempDir(), "--stream-max-bytes", "RECENTCHANGE=10"},
			[]string{"RECENTCHANGE max bytes 10, want at least 65536"}},
		{"unknown stream", []string{"ingest", "--nats", "nats://127.0.0.1:4222", "--stream-max-age", "EVENTS=1d"},
			[]string{`unknown stream "EVENTS"`}},
		{"age below dedup window", []string{"ingest", "--nats", "nats://127.0.0.1:4222", "--stream-max-age", "RECENTCHANGE=1m"},
			[]string{"shorter than its duplicate window"}},
		{"--ops-addr", []string{"run", "--data-dir", t.TempDir(), "--ops-addr", "9090"},
			[]string{`--ops-addr "9090"`}},
		{"--stream-replicas", []string{"ingest", "--nats", "nats://127.0.0.1:4222", "--stream-replicas", "7"},
			[]string{"--stream-replicas 7"}},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := t.TempDir()
		require.NoError(t, os.Chmod(ro, 0o500))
		t.Cleanup(func() { _ = os.Chmod(ro, 0o700) })
		tests = append(tests, struct {
			name string
			args []string
			want []string
		}{"read-only --data-dir", []string{"run", "--data-dir", ro}, []string{"data directory " + ro, "not writable"}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := runFails(t, tc.args...)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			assert.NotContains(t, out, "hunter2")
			assert.NotContains(t, out, "not ready after 30s")
		})
	}
}

// An unreachable NATS server is named with the dial error while the stage
// keeps retrying (Kubernetes may start NATS after it).
func TestUnreachableNATSIsNamed(t *testing.T) {
	port := freeport.Must(t)
	url := fmt.Sprintf("nats://bot:hunter2@127.0.0.1:%d", port)
	p := startProc(t, "ingest", "--nats", url, "--ops-addr", "")
	log := waitLog(t, p, "NATS not reachable", 20*time.Second)
	assert.Contains(t, log, fmt.Sprintf("127.0.0.1:%d", port))
	assert.Contains(t, log, "connection refused")
	assert.NotContains(t, log, "hunter2")
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 15*time.Second))
}

// `rcwatch run` (a laptop) serves metrics on loopback unless told otherwise;
// the stage commands (pods) listen on every interface, and the manifests
// set RCWATCH_OPS_ADDR themselves.
func TestRunOpsAddrLoopbackByDefault(t *testing.T) {
	assert.Equal(t, "127.0.0.1:9090", newRunCmd().Flags().Lookup("ops-addr").DefValue)
	assert.Equal(t, ":9090", newIngestCmd().Flags().Lookup("ops-addr").DefValue)
}
