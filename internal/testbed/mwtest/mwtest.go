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
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

//go:embed setup.php
var setupPHP []byte

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

// New installs a wiki in dir and serves it. Close stops it.
func New(dir string, opts Options) (*Wiki, error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	start := time.Now()
	w := &Wiki{
		Dir:   dir,
		Bot:   Account{Name: "TestBot", AppID: BotAppID, Secret: secret()},
		Admin: Account{Name: "Admin", Password: "Adm1n-" + secret()[:12], AppID: harnessAppID, Secret: secret()},
		Other: Account{Name: "Other User", AppID: harnessAppID, Secret: secret()},
		sess:  map[string]*session{},
	}
	w.sess[w.Bot.Name] = &session{acct: Account{Name: w.Bot.Name, AppID: harnessAppID, Secret: secret()}}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	w.setPort(port)
	conf := filepath.Join(dir, "LocalSettings.php")
	install := exec.Command("php", filepath.Join(InstallPath, "maintenance", "install.php"), "--quiet",
		"--dbtype", "sqlite", "--dbpath", filepath.Join(dir, "data"), "--dbname", "testwiki",
		"--server", w.URL, "--scriptpath", "", "--lang", "en", "--pass", w.Admin.Password,
		"--confpath", dir, "--skins", "Vector", "TestWiki", w.Admin.Name)
	install.Env = append(os.Environ(), "MW_CONFIG_FILE="+conf)
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("install.php: %w: %s", err, tail(out, 2000))
	}
	base, err := os.ReadFile(conf)
	if err != nil {
		return nil, fmt.Errorf("reading LocalSettings.php: %w", err)
	}
	if err := os.WriteFile(conf, append(base, w.settings(opts)...), 0o644); err != nil {
		return nil, fmt.Errorf("writing LocalSettings.php: %w", err)
	}
	// Accounts (one PHP process) and the server start side by side.
	setupErr := make(chan error, 1)
	go func() { setupErr <- w.createAccounts(conf) }()
	if err := w.serve(conf); err != nil {
		<-setupErr
		return nil, err
	}
	if err := <-setupErr; err != nil {
		_ = w.Close()
		return nil, err
	}
	if err := w.waitReady(30 * time.Second); err != nil {
		_ = w.Close()
		return nil, err
	}
	w.SetupTime = time.Since(start)
	return w, nil
}

func (w *Wiki) setPort(port int) {
	w.Port = port
	w.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	w.APIURL = w.URL + "/api.php"
}

// settings is the block appended to LocalSettings.php (testbeds/mediawiki.md).
func (w *Wiki) settings(o Options) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "\n// rcwatch mwtest\n$wgServer = %s;\n", q(w.URL))
	fmt.Fprintf(&b, "$wgCacheDirectory = %s;\n", q(filepath.Join(w.Dir, "cache")))
	b.WriteString(`$wgShowExceptionDetails = true;
$wgEnableEmail = false;
$wgGroupPermissions['bot']['noratelimit'] = true;
$wgGroupPermissions['*']['edit'] = false;
$wgGroupPermissions['*']['createaccount'] = false;
$wgJobRunRate = 0;
`)
	if o.RCFeedUDP != "" {
		fmt.Fprintf(&b, "$wgRCFeeds['test'] = ['formatter' => 'JSONRCFeedFormatter', 'uri' => %s, 'add_interwiki_prefix' => false, 'omit_bots' => false];\n",
			q("udp://"+o.RCFeedUDP))
	}
	fmt.Fprintf(&b, "$wgReadOnlyFile = %s;\n", q(w.readOnlyFile()))
	fmt.Fprintf(&b, `$wgHooks['ApiMaxLagInfo'][] = static function (&$lagInfo) {
    $f = %s;
    if (is_readable($f)) $lagInfo = ['host' => 'fake-replica', 'lag' => (float)trim(file_get_contents($f)), 'type' => 'db'];
};
`, q(w.lagFile()))
	b.WriteString(o.ExtraSettings)
	b.WriteString("\n")
	return b.String()
}

func (w *Wiki) readOnlyFile() string { return filepath.Join(w.Dir, "readonly") }
func (w *Wiki) lagFile() string      { return filepath.Join(w.Dir, "fakelag") }

func (w *Wiki) createAccounts(conf string) error {
	all := []string{"basic", "highvolume", "editpage", "createeditmovepage", "editprotected", "patrol", "rollback", "protect", "delete"}
	type bp struct {
		AppID  string   `json:"appid"`
		Secret string   `json:"secret"`
		Grants []string `json:"grants"`
	}
	type acct struct {
		Name         string   `json:"name"`
		Groups       []string `json:"groups,omitempty"`
		BotPasswords []bp     `json:"botpasswords"`
	}
	harnessBot := w.sess[w.Bot.Name].acct
	spec := []acct{
		{Name: w.Bot.Name, Groups: []string{"bot"}, BotPasswords: []bp{
			{AppID: w.Bot.AppID, Secret: w.Bot.Secret, Grants: BotGrants},
			{AppID: harnessAppID, Secret: harnessBot.Secret, Grants: all}}},
		{Name: w.Admin.Name, BotPasswords: []bp{{AppID: harnessAppID, Secret: w.Admin.Secret, Grants: all}}},
		{Name: w.Other.Name, BotPasswords: []bp{{AppID: harnessAppID, Secret: w.Other.Secret, Grants: all}}},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	specFile := filepath.Join(w.Dir, "accounts.json")
	script := filepath.Join(w.Dir, "setup.php")
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(script, setupPHP, 0o644); err != nil {
		return err
	}
	cmd := exec.Command("php", script, specFile)
	cmd.Env = append(os.Environ(), "MW_CONFIG_FILE="+conf, "MW_INSTALL_PATH="+InstallPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("creating accounts: %w: %s", err, tail(out, 2000))
	}
	return nil
}

// serve starts php -S in its own process group (PHP_CLI_SERVER_WORKERS
// forks workers that outlive a SIGTERM to the parent; Close kills the group).
func (w *Wiki) serve(conf string) error {
	logf, err := os.Create(filepath.Join(w.Dir, "server.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("php", "-S", "127.0.0.1:"+strconv.Itoa(w.Port), "-t", InstallPath)
	cmd.Env = append(os.Environ(), "MW_CONFIG_FILE="+conf, "PHP_CLI_SERVER_WORKERS=4")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting php -S: %w", err)
	}
	w.cmd, w.logf, w.exited = cmd, logf, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	return nil
}

// waitReady polls the API until it answers siteinfo.
func (w *Wiki) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	delay := 10 * time.Millisecond
	for {
		resp, err := hc.Get(w.APIURL + "?action=query&meta=siteinfo&format=json&formatversion=2")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"general"`) {
				return nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, tail(body, 300))
		}
		select {
		case <-w.exited:
			return fmt.Errorf("php -S exited: %s", w.ServerLog(2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MediaWiki not ready after %s: %w; server log: %s", timeout, err, w.ServerLog(2000))
		}
		time.Sleep(delay) // polling interval, not synchronisation
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// Close stops the server's whole process group.
func (w *Wiki) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.cmd == nil {
		return nil
	}
	w.closed = true
	pgid := w.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-w.exited
	}
	// The workers are not the leader: wait until none of the group is alive
	// (zombies left for init to reap do not count), killing after a grace.
	deadline := time.Now().Add(5 * time.Second)
	killed := false
	for groupAlive(pgid) {
		if !killed && time.Now().After(deadline.Add(-4*time.Second)) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killed = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("php -S process group %d still alive after SIGKILL", pgid)
		}
		time.Sleep(10 * time.Millisecond) // polling the process table
	}
	if w.logf != nil {
		w.logf.Close()
	}
	return nil
}

// groupAlive reports whether a process of group pgid is alive (not a zombie).
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may contain spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// ServerLog returns the last n bytes of php -S's output.
func (w *Wiki) ServerLog(n int) string {
	b, _ := os.ReadFile(filepath.Join(w.Dir, "server.log"))
	return tail(b, n)
}

// SetLag makes the wiki report a replica lag of seconds (0 removes it): a
// request with maxlag below it gets code=maxlag with Retry-After.
func (w *Wiki) SetLag(tb testing.TB, seconds float64) {
	tb.Helper()
	if seconds <= 0 {
		if err := os.Remove(w.lagFile()); err != nil && !os.IsNotExist(err) {
			tb.Fatalf("removing the lag knob: %v", err)
		}
		return
	}
	if err := os.WriteFile(w.lagFile(), []byte(strconv.FormatFloat(seconds, 'f', -1, 64)), 0o644); err != nil {
		tb.Fatalf("setting the lag knob: %v", err)
	}
}

// SetReadOnly puts the wiki in (or out of) read-only mode: writes fail with
// code=readonly.
func (w *Wiki) SetReadOnly(tb testing.TB, on bool) {
	tb.Helper()
	if !on {
		if err := os.Remove(w.readOnlyFile()); err != nil && !os.IsNotExist(err) {
			tb.Fatalf("removing the read-only knob: %v", err)
		}
		return
	}
	if err := os.WriteFile(w.readOnlyFile(), []byte("rcwatch test: read-only\n"), 0o644); err != nil {
		tb.Fatalf("setting the read-only knob: %v", err)
	}
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// session is a logged-in harness connection as one account.
type session struct {
	acct Account
	mu   sync.Mutex
	hc   *http.Client
	csrf string
}

func (w *Wiki) session(a Account) *session {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.sess[a.Name]
	if !ok {
		s = &session{acct: a}
		w.sess[a.Name] = s
	}
	return s
}

// api performs one request with the harness's own code; errors are returned
// with the API's code.
func (s *session) api(ctx context.Context, apiURL string, post bool, p url.Values, out any) error {
	p.Set("format", "json")
	p.Set("formatversion", "2")
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, apiURL, strings.NewReader(p.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"?"+p.Encode(), nil)
	}
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "rcwatch-mwtest (test harness)")
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var e struct {
		Error *struct{ Code, Info string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("HTTP %d, not JSON: %s", resp.StatusCode, tail(body, 300))
	}
	if e.Error != nil {
		return fmt.Errorf("api error %s: %s", e.Error.Code, e.Error.Info)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func (s *session) login(ctx context.Context, apiURL string) error {
	if s.hc != nil {
		return nil
	}
	jar, _ := cookiejar.New(nil)
	s.hc = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	var tok struct {
		Query struct{ Tokens map[string]string } `json:"query"`
	}
	if err := s.api(ctx, apiURL, false, url.Values{"action": {"query"}, "meta": {"tokens"}, "type": {"login|csrf"}}, &tok); err != nil {
		s.hc = nil
		return fmt.Errorf("login token: %w", err)
	}
	var lr struct {
		Login struct{ Result, Reason string } `json:"login"`
	}
	if err := s.api(ctx, apiURL, true, url.Values{"action": {"login"}, "lgname": {s.acct.LoginName()},
		"lgpassword": {s.acct.Secret}, "lgtoken": {tok.Query.Tokens["logintoken"]}}, &lr); err != nil || lr.Login.Result != "Success" {
		s.hc = nil
		return fmt.Errorf("harness login as %s: %v %s %s", s.acct.LoginName(), err, lr.Login.Result, lr.Login.Reason)
	}
	if err := s.api(ctx, apiURL, false, url.Values{"action": {"query"}, "meta": {"tokens"}}, &tok); err != nil {
		s.hc = nil
		return fmt.Errorf("csrf token: %w", err)
	}
	s.csrf = tok.Query.Tokens["csrftoken"]
	return nil
}

// post performs a write as the session's account.
func (w *Wiki) post(tb testing.TB, a Account, p url.Values, out any) error {
	tb.Helper()
	s := w.session(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.login(ctx, w.APIURL); err != nil {
		tb.Fatalf("mwtest: %v", err)
	}
	p.Set("token", s.csrf)
	return s.api(ctx, w.APIURL, true, p, out)
}

// Edit saves text on title as account a (Admin, Other or Bot, through the
// harness's own session) and returns the new revision id (the current one
// if nothing changed). For test set-up.
func (w *Wiki) Edit(tb testing.TB, a Account, title, text, summary string) int64 {
	tb.Helper()
	var resp struct {
		Edit struct {
			Result   string `json:"result"`
			NewRevID int64  `json:"newrevid"`
			NoChange bool   `json:"nochange"`
		} `json:"edit"`
	}
	if err := w.post(tb, a, url.Values{"action": {"edit"}, "title": {title}, "text": {text}, "summary": {summary}}, &resp); err != nil {
		tb.Fatalf("mwtest: editing %q as %s: %v", title, a.Name, err)
	}
	if resp.Edit.Result != "Success" {
		tb.Fatalf("mwtest: editing %q as %s: result %q", title, a.Name, resp.Edit.Result)
	}
	if resp.Edit.NoChange {
		return w.PageHistory(tb, title)[0].RevID
	}
	return resp.Edit.NewRevID
}

// Protect protects title for editing at level ("sysop", "autoconfirmed";
// "" removes protection), as Admin.
func (w *Wiki) Protect(tb testing.TB, title, level string) {
	tb.Helper()
	prot := "edit=all"
	if level != "" {
		prot = "edit=" + level
	}
	if err := w.post(tb, w.Admin, url.Values{"action": {"protect"}, "title": {title}, "protections": {prot}, "reason": {"mwtest"}}, nil); err != nil {
		tb.Fatalf("mwtest: protecting %q: %v", title, err)
	}
}

// RC is one row of the wiki's recent changes.
type RC struct {
	Type      string    `json:"type"`
	Title     string    `json:"title"`
	RevID     int64     `json:"revid"`
	OldRevID  int64     `json:"old_revid"`
	User      string    `json:"user"`
	Bot       bool      `json:"bot"`
	Minor     bool      `json:"minor"`
	Timestamp time.Time `json:"timestamp"`
	Comment   string    `json:"comment"`
	Tags      []string  `json:"tags"`
}

// RecentChanges returns the wiki's recent changes, newest first (up to 500).
func (w *Wiki) RecentChanges(tb testing.TB) []RC {
	tb.Helper()
	var resp struct {
		Query struct {
			RecentChanges []RC `json:"recentchanges"`
		} `json:"query"`
	}
	w.get(tb, url.Values{"action": {"query"}, "list": {"recentchanges"}, "rclimit": {"500"},
		"rcprop": {"title|ids|flags|user|timestamp|comment|tags"}}, &resp)
	return resp.Query.RecentChanges
}

// Rev is one revision in a page's history.
type Rev struct {
	RevID     int64     `json:"revid"`
	ParentID  int64     `json:"parentid"`
	User      string    `json:"user"`
	Timestamp time.Time `json:"timestamp"`
	Comment   string    `json:"comment"`
	Minor     bool      `json:"minor"`
	Tags      []string  `json:"tags"`
	Content   string    `json:"-"`
	Slots     struct {
		Main struct {
			Content string `json:"content"`
		} `json:"main"`
	} `json:"slots"`
}

// PageHistory returns a page's revisions, newest first, with content (up to
// 50); empty if the page does not exist.
func (w *Wiki) PageHistory(tb testing.TB, title string) []Rev {
	tb.Helper()
	var resp struct {
		Query struct {
			Pages []struct {
				Revisions []Rev `json:"revisions"`
			} `json:"pages"`
		} `json:"query"`
	}
	w.get(tb, url.Values{"action": {"query"}, "prop": {"revisions"}, "titles": {title}, "rvlimit": {"50"},
		"rvslots": {"main"}, "rvprop": {"ids|user|timestamp|comment|flags|tags|content"}}, &resp)
	if len(resp.Query.Pages) == 0 {
		return nil
	}
	revs := resp.Query.Pages[0].Revisions
	for i := range revs {
		revs[i].Content = revs[i].Slots.Main.Content
	}
	return revs
}

// PageText returns the current text and revision id of title ("", 0 if missing).
func (w *Wiki) PageText(tb testing.TB, title string) (string, int64) {
	tb.Helper()
	h := w.PageHistory(tb, title)
	if len(h) == 0 {
		return "", 0
	}
	return h[0].Content, h[0].RevID
}

// get is an anonymous read (no maxlag: the knob never blocks the harness).
func (w *Wiki) get(tb testing.TB, p url.Values, out any) {
	tb.Helper()
	s := &session{hc: &http.Client{Timeout: 30 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.api(ctx, w.APIURL, false, p, out); err != nil {
		tb.Fatalf("mwtest: %s: %v", p.Get("action"), err)
	}
}
