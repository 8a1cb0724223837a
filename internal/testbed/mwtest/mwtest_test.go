package mwtest_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
)

// The harness itself: set-up, knobs, edits as other users, and a clean stop
// of the whole php -S process group.
func TestHarness(t *testing.T) {
	w := mwtest.Start(t)
	t.Logf("MediaWiki set-up (install, accounts, server ready): %s", w.SetupTime)

	// Edits as two users; history and recent changes show them.
	r1 := w.Edit(t, w.Admin, "Harness page", "line one\nline two", "create")
	r2 := w.Edit(t, w.Other, "Harness page", "line one\nline two\nline three", "add")
	assert.Greater(t, r2, r1)
	h := w.PageHistory(t, "Harness page")
	require.Len(t, h, 2)
	assert.Equal(t, "Other User", h[0].User)
	assert.Equal(t, "line one\nline two\nline three", h[0].Content)
	assert.Equal(t, r1, h[0].ParentID)
	text, rev := w.PageText(t, "Harness page")
	assert.Equal(t, r2, rev)
	assert.Contains(t, text, "line three")
	assert.Equal(t, r2, w.Edit(t, w.Other, "Harness page", text, "same"), "an identical edit returns the current revision")
	rcs := w.RecentChanges(t)
	require.NotEmpty(t, rcs)
	assert.Equal(t, r2, rcs[0].RevID)

	// The lag knob: MediaWiki itself answers maxlag, with Retry-After.
	w.SetLag(t, 7)
	resp, body := get(t, w.APIURL+"?action=query&meta=siteinfo&format=json&maxlag=5")
	assert.Equal(t, "maxlag", resp.Header.Get("MediaWiki-API-Error"))
	assert.Equal(t, "7", resp.Header.Get("X-Database-Lag"))
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	assert.Contains(t, body, `"code":"maxlag"`)
	w.SetLag(t, 0)
	resp, _ = get(t, w.APIURL+"?action=query&meta=siteinfo&format=json&maxlag=5")
	assert.Empty(t, resp.Header.Get("MediaWiki-API-Error"))

	// The read-only knob.
	w.SetReadOnly(t, true)
	_, body = get(t, w.APIURL+"?action=query&meta=siteinfo&format=json&formatversion=2")
	var si struct {
		Query struct {
			General struct {
				ReadOnly bool `json:"readonly"`
			} `json:"general"`
		} `json:"query"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &si))
	assert.True(t, si.Query.General.ReadOnly)
	w.SetReadOnly(t, false)

	// Close stops the server and its workers: the port is free again and
	// no process of the group is left.
	pgid := serverPGID(t, w)
	require.NoError(t, w.Close())
	pids, _ := exec.Command("pgrep", "-g", strconv.Itoa(pgid)).Output()
	for _, pid := range strings.Fields(string(pids)) {
		out, _ := exec.Command("ps", "-o", "stat=", "-p", pid).Output()
		st := strings.TrimSpace(string(out))
		if st == "" {
			continue // gone between pgrep and ps
		}
		assert.True(t, strings.HasPrefix(st, "Z"), "a process of the php -S group survived Close (state %s)", st)
	}
	_, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(w.Port), time.Second)
	assert.Error(t, err, "the port still accepts connections after Close")
}

func TestRequireSkipsOrFails(t *testing.T) {
	if mwtest.Available() != "" {
		t.Skip("MediaWiki is missing here; Require's behaviour is what skipped this")
	}
	assert.Empty(t, mwtest.Available())
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// serverPGID finds php -S's process group from the process listening on the
// wiki's port (the harness does not export the *exec.Cmd).
func serverPGID(t *testing.T, w *mwtest.Wiki) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "php -S 127.0.0.1:"+strconv.Itoa(w.Port)).Output()
	require.NoError(t, err, "pgrep")
	pids := strings.Fields(string(out))
	require.NotEmpty(t, pids)
	pid, err := strconv.Atoi(pids[0])
	require.NoError(t, err)
	pgid, err := syscall.Getpgid(pid)
	require.NoError(t, err)
	require.NotEqual(t, os.Getpid(), pgid)
	// With PHP_CLI_SERVER_WORKERS=4 there are the parent and its workers.
	assert.GreaterOrEqual(t, len(pids), 2, "workers of php -S")
	return pgid
}
