package mwtest

// Wiki set-up: a fresh install in its own directory, LocalSettings.php,
// the accounts and BotPasswords, and the two knobs (read-only, fake lag).

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
)

//go:embed setup.php
var setupPHP []byte

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
	port, err := freeport.Get()
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
