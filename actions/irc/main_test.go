package irc

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options(
		// girc's own background handler of RPL_WELCOME sleeps 2s before it
		// fires CONNECTED, with no handle to wait for it (girc builtin.go).
		goleak.IgnoreAnyFunction("github.com/lrstanley/girc.handleConnect"),
	)...)
}
