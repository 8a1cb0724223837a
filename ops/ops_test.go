package ops_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ops"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestHandler(t *testing.T) {
	health := ops.NewHealth()
	failing := errors.New("behind the stream's retention")
	var fail error
	health.AddCheck("rules", func() error { return fail })
	mux := ops.Handler(ops.NewRegistry(), health)

	tests := []struct {
		name     string
		path     string
		fail     error
		pprof    bool
		code     int
		contains string
	}{
		{"healthz", "/healthz", nil, false, 200, "ok"},
		{"metrics", "/metrics", nil, false, 200, "go_goroutines"},
		{"readyz ready", "/readyz", nil, false, 200, `"ready":true`},
		{"readyz names the failing check", "/readyz", failing, false, 503, `"rules":"behind the stream's retention"`},
		{"no profiles unless asked for", "/debug/pprof/", nil, false, 404, ""},
		{"profiles when mounted", "/debug/pprof/", nil, true, 200, "goroutine"},
		{"goroutine profile", "/debug/pprof/goroutine?debug=1", nil, true, 200, "goroutine profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fail = tt.fail
			h := http.Handler(mux)
			if tt.pprof {
				m := ops.Handler(ops.NewRegistry(), health)
				ops.MountPprof(m)
				h = m
			}
			rec := get(t, h, tt.path)
			require.Equal(t, tt.code, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tt.contains)
		})
	}
}
