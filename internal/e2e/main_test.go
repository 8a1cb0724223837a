// Package e2e runs rcwatch the way its users do. Without build tags: the
// hostile-input test (testdata/hostile). With -tags e2e (make e2e): from a
// real wiki's own recent-changes feed to the patrol channel and the bot's
// revert: a local MediaWiki pushes its RC feed over UDP to `rcwatch replay
// --from-mediawiki-rcfeed`, whose SSE stream `rcwatch run` ingests with every
// stage on (enrichment from the same wiki, IRC to a real ngircd, the edit
// worker live against the same wiki).
package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/proctest"

	"github.com/stretchr/testify/require"
)

// The rcwatch binary is built once for the package (proctest.Rcwatch).
func TestMain(m *testing.M) { proctest.Main(m) }

// startProc starts rcwatch with args and extra environment variables; it
// is killed at cleanup.
func startProc(tb testing.TB, env []string, args ...string) *proctest.Proc {
	tb.Helper()
	return proctest.Start(tb, proctest.Rcwatch(), proctest.Options{Env: env}, args...)
}

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	require.NoError(tb, os.WriteFile(p, []byte(content), 0o644))
	return p
}
