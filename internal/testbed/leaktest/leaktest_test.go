package leaktest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// A goroutine blocked for good is found; an idle keep-alive connection of
// an http.Transport is not.
func TestOptions(t *testing.T) {
	base := goleak.IgnoreCurrent()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())

	// The server's side of the test is not what is checked here.
	opts := leaktest.Options(base,
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"))
	require.NoError(t, goleak.Find(opts...), "an idle keep-alive connection is not a leak")

	stuck := make(chan struct{})
	go func() { <-stuck }()
	require.Error(t, goleak.Find(opts...), "a blocked goroutine is a leak")
	close(stuck)
}
