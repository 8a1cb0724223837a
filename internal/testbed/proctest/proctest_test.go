package proctest_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// The built binary runs; SIGTERM during `rcwatch run` start-up exits 0
// within the grace period; a SIGKILL is reported as such; the log is kept.
func TestProc(t *testing.T) {
	out, err := exec.Command(proctest.Rcwatch(), "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "rcwatch")

	sleeper := proctest.Start(t, "/bin/sh", proctest.Options{Name: "sleeper"}, "-c", "echo started; exec sleep 60")
	require.Eventually(t, func() bool { return sleeper.Output() == "started\n" }, 10*time.Second, 10*time.Millisecond)
	err = sleeper.Signal(t, syscall.SIGTERM, 10*time.Second)
	require.Error(t, err, "sleep does not handle SIGTERM")
	assert.Contains(t, err.Error(), "terminated")

	k := proctest.Start(t, "/bin/sh", proctest.Options{Name: "killed"}, "-c", "exec sleep 60")
	k.Kill(t)
	assert.Contains(t, k.Err().Error(), "killed")
	select {
	case <-k.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
}
