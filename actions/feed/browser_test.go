package feed_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions/feed"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// chromiumPath finds Debian's chromium (scripts/test-deps.sh installs it).
// In CI a missing browser fails the test; elsewhere it skips.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("RCWATCH_CHROMIUM"), "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: scripts/test-deps.sh installs it (apt-get install chromium)")
	}
	t.Skip("chromium not found (scripts/test-deps.sh installs it); CI fails instead of skipping")
	return ""
}

// browser is a headless Chromium with a record of what its pages reported.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	console []string // console errors, exceptions, CSP and other log errors
	dialogs []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	b := &browser{ctx: ctx}
	require.NoError(t, chromedp.Do(ctx)) // start the browser
	return b
}

// tab opens a page and records its console errors, exceptions, browser log
// errors (a CSP violation is one) and dialogs (closing them).
func (b *browser) tab(t *testing.T, url string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx)) // open the tab
	console := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.console = append(b.console, string(m.Type)+": "+m.Text)
				b.mu.Unlock()
			}
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(ev.Type)+": "+ev.Message)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	do(t, ctx, ui, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#status.live`)))
	return ctx
}

func (b *browser) problems() ([]string, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...), append([]string(nil), b.dialogs...)
}

// ui bounds one step of the test's own machinery (opening a tab, typing,
// clicking, pressing keys): each is a series of DevTools round trips, which
// take a second or more each on a loaded machine (load average 20 on 2
// cores: typing an 11-character name, 33 key events, took more than 5 s).
// It is not a claim about the feed: the feed's own latency is measured
// inside the pages (see claimShownAfter).
const ui = 30 * time.Second

func do(t *testing.T, ctx context.Context, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	require.NoError(t, chromedp.Do(tctx, actions...))
}

func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, ui)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	require.NoError(t, err)
	return v
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, chromedp.TextContent(chromedp.CSS(sel)))
}

func alertSel(seq uint64) chromedp.CSS {
	return chromedp.CSS(fmt.Sprintf(`li.alert[data-seq="%d"]`, seq))
}

func media(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme},
				{Name: "prefers-reduced-motion", Value: "reduce"}}})
		return err
	})
}

// screenshotDir is $RCWATCH_SCREENSHOTS, or the test's artifact
// directory: kept with `go test -artifacts -outputdir DIR` (under
// DIR/_artifacts/), removed after the test otherwise.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("RCWATCH_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.ArtifactDir()
}

// watchClaimShown makes page record, in window.__claimShownAt (ms since the
// epoch, the machine's clock), when the alert at seq first shows state
// (the class claimed-<state> is set on it): the moment the page has
// rendered the claim into its document, read in the page itself so that no
// DevTools round trip is counted.
func watchClaimShown(t *testing.T, page context.Context, seq uint64, state string) {
	t.Helper()
	do(t, page, ui, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		window.__claimShownAt = 0;
		const cls = 'claimed-%s';
		const li = document.querySelector('li.alert[data-seq="%d"]');
		const seen = () => {
			if (!window.__claimShownAt && li.classList.contains(cls)) {
				window.__claimShownAt = performance.timeOrigin + performance.now();
			}
		};
		new MutationObserver(seen).observe(li, {attributes: true, attributeFilter: ['class']});
		seen();
	})()`, state, seq)))
}

// claimShownAfter is how long after the claims bucket stored the claim of
// the alert at seq the page rendered it: the bucket entry's timestamp
// (set by the NATS server, in this process, when it stores the write) to
// the page's __claimShownAt (see watchClaimShown). It covers the feed's
// KV watch, its dispatch, the SSE write, the browser's network and event
// loop and the page's script; not the click, the POST or the test's
// polling.
func claimShownAfter(t *testing.T, e *env, page context.Context, seq uint64) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, pipeline.BucketFeedClaims)
	require.NoError(t, err)
	entry, err := kv.Get(ctx, feed.ClaimKey(seq))
	require.NoError(t, err, "the claim is not in the bucket")
	shown := get(t, page, chromedp.Evaluate[float64](`window.__claimShownAt`))
	require.NotZero(t, shown, "the page has not shown the claim")
	return time.UnixMicro(int64(shown * 1000)).Sub(entry.Created())
}

func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	r := e.start(t, feed.Config{ClaimTTL: 90 * time.Minute})
	p1 := b.tab(t, r.srv.URL+"/")
	assert.Equal(t, "an hour and 30 minutes", text(t, p1, `#claim-ttl`), "the footer shows --feed-claim-ttl")

	// An alert appears, live.
	seq, _ := e.alert(t, "enwiki", "Vandalised page", withComment("replaced the page with nonsense"))
	do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(seq)))
	assert.Equal(t, "Vandalised page", text(t, p1, string(alertSel(seq))+` .page`))
	assert.Equal(t, "198.51.100.7", text(t, p1, `li.group .user`))
	assert.Equal(t, "IP", text(t, p1, `li.group .class`))

	t.Run("what an alert shows", func(t *testing.T) {
		year := 365 * 24 * time.Hour
		first, a1 := e.alert(t, "enwiki", "Grouped page", withUser("Grouper"), withAccount(3, year), withScore(0.73),
			withRule("profanity-added"), withSeverity(event.SeverityHigh), func(a *event.Alert) {
				a.Event.OldSize, a.Event.NewSize = 3000, 2880
				a.Reasons = []string{"profanity_count > 0 (profanity_count=2)", "user_editcount < 50 (user_editcount=3)"}
			})
		second, _ := e.alert(t, "enwiki", "Other page", withUser("Grouper"), withAccount(3, year), func(a *event.Alert) {
			a.Event.OldSize, a.Event.NewSize = 100, 350
		})
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(first)), chromedp.WaitVisible(alertSel(second)))
		one := string(alertSel(first))
		href := func(sel string) string {
			return get(t, p1, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('%s').getAttribute('href') || ''`, sel)))
		}
		wiki := func(title string) string {
			return "https://enwiki.example/w/index.php?" + url.Values{"title": {title}}.Encode()
		}
		assert.Equal(t, a1.Event.DiffURL, href(one+` a.diff`))
		assert.Equal(t, wiki("Grouped page"), href(one+` a.page`))
		assert.Equal(t, "−120", text(t, p1, one+` .delta`))
		assert.Equal(t, "+250", text(t, p1, string(alertSel(second))+` .delta`))
		assert.Equal(t, "score 0.73", text(t, p1, one+` .score`))
		assert.Equal(t, "high", text(t, p1, one+` .sev`))
		assert.Equal(t, "profanity-added", text(t, p1, one+` .rule`))
		assert.Equal(t, a1.Reasons, get(t, p1, chromedp.Evaluate[[]string](fmt.Sprintf(
			`Array.from(document.querySelectorAll('%s .reasons li'), li => li.textContent)`, one))))

		// Two consecutive alerts of one user are one group, under the
		// user with their links and the class from the enrichment.
		group := fmt.Sprintf(`document.querySelector('%s').closest('li.group')`, one)
		assert.True(t, get(t, p1, chromedp.Evaluate[bool](fmt.Sprintf(`%s === document.querySelector('%s').closest('li.group')`,
			group, alertSel(second)))), "the two alerts of Grouper are in one group")
		assert.Equal(t, 2, get(t, p1, chromedp.Evaluate[int](group+`.querySelectorAll('li.alert').length`)))
		assert.Equal(t, "Grouper", get(t, p1, chromedp.Evaluate[string](group+`.querySelector('.user').textContent`)))
		assert.Equal(t, "new", get(t, p1, chromedp.Evaluate[string](group+`.querySelector('.class').textContent`)),
			"3 edits: not autoconfirmed")
		assert.Equal(t, wiki("Special:Contributions/Grouper"),
			get(t, p1, chromedp.Evaluate[string](group+`.querySelector('a.contribs').getAttribute('href')`)))
		assert.Equal(t, wiki("User talk:Grouper"),
			get(t, p1, chromedp.Evaluate[string](group+`.querySelector('a.talk').getAttribute('href')`)))

		// Links come only from http(s) URLs: a javascript: diff or server
		// URL leaves the link without an href.
		evil, _ := e.alert(t, "enwiki", "Trap", withUser("Trickster"), func(a *event.Alert) {
			a.Event.DiffURL = "javascript:alert(4)"
			a.Event.ServerURL = "javascript:alert(5)//"
		})
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(evil)))
		assert.Empty(t, href(string(alertSel(evil))+` a.diff`))
		assert.Empty(t, href(string(alertSel(evil))+` a.page`))
		assert.Equal(t, "Trap", text(t, p1, string(alertSel(evil))+` .page`))
		scripted := get(t, p1, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('a[href]'))
			.filter(a => !/^https?:$/.test(a.protocol)).map(a => a.getAttribute('href'))`))
		assert.Empty(t, scripted, "a link that is not http(s)")
	})

	t.Run("filter", func(t *testing.T) {
		do(t, p1, ui,
			chromedp.SendKeys(chromedp.CSS(`#f-wiki`), "dewiki"),
			chromedp.Click(chromedp.CSS(`#apply`)),
			chromedp.WaitNotPresent(alertSel(seq)),
			chromedp.WaitVisible(chromedp.CSS(`#status.live`)))
		assert.Equal(t, "?wiki=dewiki", get(t, p1, chromedp.Evaluate[string](`location.search`)), "the filter is mirrored in the URL")
		en, _ := e.alert(t, "enwiki", "Not shown")
		de, _ := e.alert(t, "dewiki", "Shown")
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(de)))
		n := get(t, p1, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll('%s').length`, alertSel(en))))
		assert.Zero(t, n, "an enwiki alert under a dewiki filter")
		do(t, p1, ui, chromedp.Click(chromedp.CSS(`#reset`)), chromedp.WaitVisible(alertSel(seq)))
	})

	t.Run("claim seen in a second page within a second", func(t *testing.T) {
		p2 := b.tab(t, r.srv.URL+"/")
		do(t, p2, 10*time.Second, chromedp.WaitVisible(alertSel(seq)))
		typing := time.Now()
		do(t, p1, ui, chromedp.SendKeys(chromedp.CSS(`#claim-name`), "Patroller A"))
		watchClaimShown(t, p2, seq, "on-it")
		clicking := time.Now()
		do(t, p1, ui, chromedp.Click(chromedp.CSS(string(alertSel(seq))+` .on-it`)))
		t.Logf("the test's machinery: typing the name took %v, the click %v", clicking.Sub(typing), time.Since(clicking))
		// The clicking page shows the claim from the POST's answer: the
		// claim was made. The second page shows it from the feed.
		do(t, p1, ui, chromedp.WaitVisible(chromedp.CSS(string(alertSel(seq))+`.claimed-on-it`)))
		do(t, p2, ui, chromedp.WaitVisible(chromedp.CSS(string(alertSel(seq))+`.claimed-on-it`)))
		took := claimShownAfter(t, e, p2, seq)
		t.Logf("claim stored → shown in the second page: %v", took)
		assert.Less(t, took, time.Second, "the second page showed the claim %v after it was stored", took)
		assert.Greater(t, took, -50*time.Millisecond, "the page's clock and the NATS server's disagree")
		assert.Equal(t, "on it: Patroller A", text(t, p2, string(alertSel(seq))+` .state`))
		assert.Equal(t, "Patroller A", get(t, p1, chromedp.Evaluate[string](`localStorage.getItem('rcwatch.name')`)),
			"the name is kept in the browser")
	})

	t.Run("retires when the page is edited again", func(t *testing.T) {
		e.edit(t, "enwiki", "Vandalised page", "Reverter")
		do(t, p1, 10*time.Second, chromedp.WaitVisible(chromedp.CSS(string(alertSel(seq))+`.retired`)))
		assert.Contains(t, text(t, p1, string(alertSel(seq))+` .state`), "retired: page edited again by Reverter")
	})

	t.Run("hostile strings render as text", func(t *testing.T) {
		evil := `<img src=x onerror=alert(1)>`
		seq, _ := e.alert(t, "enwiki", `<script>alert("t")</script>`, withComment(evil),
			withUser(`"><svg onload=alert(2)>`), func(a *event.Alert) {
				a.Reasons = []string{`<b onmouseover=alert(3)>bold</b>`, "\u202Eevil RTL"}
			})
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(seq)))
		assert.Equal(t, evil, text(t, p1, string(alertSel(seq))+` .summary`))
		assert.Equal(t, `<script>alert("t")</script>`, text(t, p1, string(alertSel(seq))+` .page`))
		n := get(t, p1, chromedp.Evaluate[int](`document.querySelectorAll('#alerts img, #alerts script, #alerts svg, #alerts b').length`))
		assert.Zero(t, n, "markup from the wiki became elements")
	})

	t.Run("keyboard shortcuts, opt-in", func(t *testing.T) {
		seq, _ := e.alert(t, "enwiki", "Keyboard page")
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(seq)))
		// Counted, not assumed: an earlier subtest's claim may have failed.
		claimed := `document.querySelectorAll('li.claimed-on-it').length`
		before := get(t, p1, chromedp.Evaluate[int](claimed))
		// Off by default: "c" claims nothing.
		do(t, p1, ui, chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`),
			chromedp.KeyEvent("j"), chromedp.KeyEvent("c"))
		do(t, p1, ui, chromedp.Click(chromedp.CSS(`#shortcuts`)),
			chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`),
			chromedp.KeyEvent("j"), chromedp.KeyEvent("c"),
			chromedp.WaitVisible(chromedp.CSS(string(alertSel(seq))+`.claimed-on-it`)))
		// Had the first "j", "c" worked, the second pair would have
		// claimed the next alert too.
		assert.Equal(t, before+1, get(t, p1, chromedp.Evaluate[int](claimed)), "only the opted-in \"c\" claimed")
	})

	t.Run("accessible markup", func(t *testing.T) {
		unlabelled := get(t, p1, chromedp.Evaluate[int](`Array.from(document.querySelectorAll('input, select, button'))
			.filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim()).length`))
		assert.Zero(t, unlabelled, "form controls without a label")
		landmarks := get(t, p1, chromedp.Evaluate[int](`document.querySelectorAll('header, main, footer, [role=search]').length`))
		assert.Equal(t, 4, landmarks)
		assert.Equal(t, "en", get(t, p1, chromedp.Evaluate[string](`document.documentElement.lang`)))
	})

	t.Run("screenshots", func(t *testing.T) {
		dir := screenshotDir(t)
		e.alert(t, "dewiki", "Berlin", withUser("~2026-31337-2"), withSeverity(event.SeverityHigh), withScore(0.91),
			withComment("Abschnitt entfernt"), func(a *event.Alert) { a.Event.NewSize = 120 })
		e.alert(t, "enwiki", "Sandbox cat", withUser("NewAccount42"), withTags(feed.TagNewUser),
			withRule("new-page-patrol"), withSeverity(event.SeverityLow), withScore(0.35), withComment("Created page"),
			func(a *event.Alert) {
				a.Event.OldSize, a.Event.NewSize, a.Reasons = 0, 2400, []string{"new page by a new account"}
			})
		last, _ := e.alert(t, "enwiki", "Sandbox cat", withUser("NewAccount42"), withTags(feed.TagNewUser),
			withSeverity(event.SeverityCritical), withScore(0.97), withComment("lol"),
			func(a *event.Alert) { a.Reasons = []string{"removed 95% of the page", "bad words: 3"} })
		do(t, p1, 10*time.Second, chromedp.WaitVisible(alertSel(last)))
		shot := func(name string, setup ...chromedp.Action[chromedp.Void]) {
			do(t, p1, ui, setup...)
			png := get(t, p1, chromedp.FullScreenshot(100))
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
		}
		shot("feed-light.png", media("light"))
		shot("feed-dark.png", media("dark"))
		shot("feed-phone.png", media("light"), chromedp.EmulateViewport(390, 844))
		assert.LessOrEqual(t, get(t, p1, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)), 390,
			"the page scrolls sideways at phone width")
		t.Logf("screenshots in %s", dir)
	})

	console, dialogs := b.problems()
	assert.Empty(t, dialogs, "a script from the wiki ran")
	assert.Empty(t, console, "console errors (a CSP violation shows here)")
}
