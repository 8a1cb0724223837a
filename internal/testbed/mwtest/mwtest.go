// Package mwtest runs a real MediaWiki (Debian's 1.39 package, PHP's built-in
// server, SQLite) on a free loopback port for tests, as
// ../shared/testbeds/mediawiki.md describes: a fresh wiki per directory with
// its own LocalSettings.php (MW_CONFIG_FILE), a bot account with a
// BotPassword, an administrator and a second normal user, and two knobs read
// on every request: a read-only file and a fake replica lag (so MediaWiki
// itself answers maxlag).
//
// Tests that need the wiki fail when CI=true and PHP or MediaWiki is missing,
// and skip otherwise. Set-up takes about 1.5–3 s, so a test package should
// share one wiki (Shared) across its tests.
//
// The harness talks to the wiki with its own minimal HTTP code, not the
// mediawiki package it is used to test.
package mwtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// InstallPath is where Debian's mediawiki package puts MediaWiki.
const InstallPath = "/usr/share/mediawiki"

// BotAppID is the app id of the bot's BotPassword (the one code under test
// logs in with); harnessAppID is the harness's own, for every account.
const (
	BotAppID     = "rcwatch"
	harnessAppID = "harness"
)

// BotGrants are the grants of the bot's BotPassword.
var BotGrants = []string{"basic", "highvolume", "editpage", "createeditmovepage", "editprotected", "patrol", "rollback"}

// Account is a wiki account. Tests log in as Name@AppID with Secret (a
// BotPassword); Password is the main password (Admin only).
type Account struct {
	Name     string
	Password string
	AppID    string
	Secret   string
}

// LoginName is the BotPassword lgname, Name@AppID.
func (a Account) LoginName() string { return a.Name + "@" + a.AppID }

// Options tune a wiki.
type Options struct {
	// RCFeedUDP, if set (host:port), makes the wiki push every recent change
	// as a JSON datagram there ($wgRCFeeds with JSONRCFeedFormatter).
	RCFeedUDP string
	// ExtraSettings is PHP appended to LocalSettings.php (e.g. $wgRateLimits).
	ExtraSettings string
}

// Wiki is a running MediaWiki.
type Wiki struct {
	Dir    string
	Port   int
	URL    string // http://127.0.0.1:port (the wiki's $wgServer)
	APIURL string // URL + "/api.php"
	// ServerScriptPath is "" (api.php is at the root), as in recentchange events.
	ServerScriptPath string

	// Bot is TestBot, in the bot group, with a BotPassword of app id BotAppID
	// and BotGrants; code under test logs in as Bot.Name@Bot.AppID.
	Bot Account
	// Admin is a sysop/bureaucrat (has rollback and protect).
	Admin Account
	// Other is a second, normal user (conflicts, vandalism).
	Other Account

	// SetupTime is how long New took, install to ready.
	SetupTime time.Duration

	cmd    *exec.Cmd
	exited chan struct{} // closed when php -S (the group leader) has exited
	logf   *os.File
	mu     sync.Mutex
	sess   map[string]*session
	closed bool
}

// Available reports why the wiki cannot run here ("" if it can).
func Available() string {
	if _, err := exec.LookPath("php"); err != nil {
		return "php is not installed"
	}
	if _, err := os.Stat(filepath.Join(InstallPath, "maintenance", "install.php")); err != nil {
		return "MediaWiki is not installed at " + InstallPath
	}
	return ""
}

// Require fails (CI=true) or skips the test when the wiki cannot run here.
func Require(tb testing.TB) {
	tb.Helper()
	why := Available()
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (CI=true): install it with scripts/test-deps.sh", why)
	}
	tb.Skipf("%s; set CI=true to make this a failure", why)
}

// Start runs a fresh wiki in tb.TempDir() and stops it at cleanup.
func Start(tb testing.TB, opts ...Options) *Wiki {
	tb.Helper()
	Require(tb)
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	w, err := New(tb.TempDir(), o)
	if err != nil {
		tb.Fatalf("starting MediaWiki: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("MediaWiki server log (tail):\n%s", w.ServerLog(4096))
		}
		if err := w.Close(); err != nil {
			tb.Errorf("stopping MediaWiki: %v", err)
		}
	})
	return w
}

// Shared starts one wiki lazily for a whole test package. Declare it in the
// package's tests and close it from TestMain:
//
//	var wiki mwtest.Shared
//	func TestMain(m *testing.M) { code := m.Run(); wiki.Close(); os.Exit(code) }
//	func TestX(t *testing.T) { w := wiki.Get(t) … }
type Shared struct {
	once sync.Once
	w    *Wiki
	dir  string
	err  error
}

// Get returns the package's wiki, starting it on first use.
func (s *Shared) Get(tb testing.TB) *Wiki {
	tb.Helper()
	Require(tb)
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "mwtest-")
		if s.err == nil {
			s.w, s.err = New(s.dir, Options{})
		}
	})
	if s.err != nil {
		tb.Fatalf("starting the shared MediaWiki: %v", s.err)
	}
	return s.w
}

// Close stops the shared wiki and removes its directory.
func (s *Shared) Close() {
	if s.w != nil {
		_ = s.w.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
