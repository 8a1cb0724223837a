package mwtest

// The harness's own minimal API client (it must not depend on the mediawiki
// package it is used to test): sessions, login, and the reads and writes
// tests set up and check with.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

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
