// Package leaktest fails a test package that leaves a goroutine behind
// (go.uber.org/goleak), checked after the package's shared servers (a
// wiki, a built binary) are stopped. Every package that starts goroutines
// runs it from TestMain:
//
//	func TestMain(m *testing.M) { leaktest.Main(m, wiki.Close) }
package leaktest

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Options are what goleak ignores everywhere, plus extra: only the
// keep-alive connections an http.Transport holds idle until its idle
// timeout (no test owns them; a connection in use is not idle and is still
// reported).
func Options(extra ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	}, extra...)
}

// Main runs the tests, then each of after (in order), then looks for
// goroutines still running (goleak retries for a while, so a goroutine that
// is ending is not reported), and exits.
func Main(m *testing.M, after ...func()) {
	code := m.Run()
	for _, f := range after {
		f()
	}
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(Options()...); err != nil {
			fmt.Fprintf(os.Stderr, "leaktest: goroutines left behind by the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
