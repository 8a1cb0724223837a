package irc

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// http.Transport keeps idle connections' goroutines until they time out.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// girc's own background handler of RPL_WELCOME sleeps 2s before it
		// fires CONNECTED, with no handle to wait for it (girc builtin.go).
		goleak.IgnoreAnyFunction("github.com/lrstanley/girc.handleConnect"),
	)
}
