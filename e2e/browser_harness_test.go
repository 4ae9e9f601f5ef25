//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The browser suite runs Chromium against real peers. WebRTC gathers host
// candidates on every interface and ignores loopback, so the suite runs in a
// network namespace the test creates, whose only interfaces are lo and a
// private link (browserAddr) that leads nowhere: the top-level test makes the
// namespace and runs the test binary again inside it (browserInNetnsEnv set),
// and that inner run starts the peers, the browsers and their DevTools pipes.
const (
	browserInNetnsEnv = "P2PSIP_IN_NETNS"
	// browserAddr is the namespace's only non-loopback address: every ICE host
	// candidate is on it.
	browserAddr = "10.77.0.1"
	// browserSuiteTimeout bounds the inner run (-test.timeout).
	browserSuiteTimeout = 6 * time.Minute
	// browserWait bounds one wait for a page state.
	browserWait = 20 * time.Second
	// browserAction bounds one DevTools action (a click, typing, an eval).
	browserAction = 10 * time.Second
	// browserPoll is how often a wait reads the page.
	browserPoll = 100 * time.Millisecond
)

// runBrowserSuiteInNetns is the outer half of a browser test: it creates the
// namespace (lo plus a private link) and runs this test binary inside it with
// -test.run ^name$ (plus the subtest part of the outer -test.run), streaming
// the inner output into the test log line by line. prepare, if given, runs
// with the namespace's name before the inner run starts (e.g. to write
// /etc/netns/<name>/resolv.conf, which ip netns exec bind-mounts).
func runBrowserSuiteInNetns(t *testing.T, name string, prepare ...func(nsName string)) {
	t.Helper()
	requireRoot(t)
	requireTool(t, "chromium", "chromium")
	ns := browserNetns(t)
	for _, p := range prepare {
		p(ns[len(ns)-1])
	}

	pattern := "^" + name + "$"
	if f := flag.Lookup("test.run"); f != nil {
		if _, sub, ok := strings.Cut(f.Value.String(), "/"); ok {
			pattern += "/" + sub
		}
	}
	timeout := browserSuiteTimeout
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - 30*time.Second; left < timeout {
			timeout = left
		}
	}
	if timeout < time.Minute {
		t.Fatalf("only %s left before the test deadline: not enough for the browser suite", timeout)
	}
	args := []string{os.Args[0], "-test.run", pattern, "-test.v", "-test.count=1",
		"-test.timeout", timeout.String()}
	full := append(append([]string(nil), ns...), args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	// P2PSIP_E2E_BIN: the inner run uses the binary built here, not a new build.
	cmd.Env = append(os.Environ(), browserInNetnsEnv+"=1", "P2PSIP_E2E_BIN="+peerBin)
	if wd, err := os.Getwd(); err == nil {
		cmd.Dir = wd
	}
	lw := &lineLogger{t: t, prefix: "│ "}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Logf("running the browser suite in namespace %s: %s", ns[len(ns)-1], strings.Join(args, " "))
	err := cmd.Run()
	lw.flush()
	if err != nil {
		t.Errorf("the browser suite inside the namespace failed (%v): see the │ lines above", err)
	}
}

// browserNetns creates a namespace with lo and a private link holding
// browserAddr. The link is a dummy interface, or, where the kernel has no
// dummy driver, a veth pair whose both ends stay in the namespace: packets to
// it go nowhere outside.
func browserNetns(t *testing.T) []string {
	t.Helper()
	ns := newNetns(t)
	ip, name := ns[0], ns[len(ns)-1]
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, ip, append([]string{"-n", name}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip -n %s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	// No IPv6 link-local addresses: their duplicate address detection ends
	// a second after the link is up, and Chromium aborts the page loads of
	// that moment with ERR_NETWORK_CHANGED.
	if err := run("link", "add", "d0", "type", "dummy"); err != nil {
		t.Logf("no dummy interface (%s): using a veth pair inside the namespace", strings.TrimSpace(err.Error()))
		if err := run("link", "add", "d0", "type", "veth", "peer", "name", "d1"); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"link", "set", "d1", "addrgenmode", "none"}, {"link", "set", "d1", "up"}} {
			if err := run(args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, args := range [][]string{
		{"link", "set", "d0", "addrgenmode", "none"},
		{"addr", "add", browserAddr + "/24", "dev", "d0"},
		{"link", "set", "d0", "up"},
	} {
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// lineLogger turns a stream into t.Log lines with a prefix. The prefix keeps
// the inner run's "--- FAIL" and "=== RUN" lines from reading as the outer
// test's own (go test -json).
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

// browser is one Chromium with its own profile (so its own IndexedDB and its
// own owner key).
type browser struct {
	name   string
	ctx    context.Context // the browser's first tab: keeps the browser up
	logs   *lockedBuffer   // every tab's console, exceptions and log entries
	start  time.Time
	cancel func()
}

// tab is one page in a browser.
type tab struct {
	b      *browser
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
}

// browserInit runs in every document of every tab, before the page's own
// scripts: it records #reg-state and #call-state transitions (for failure
// messages), and answers an incoming call when window.__e2eAutoAnswer is set.
const browserInit = `(() => {
  if (window.__e2e) return;
  const e2e = window.__e2e = {transitions: [], autoAnswer: false};
  new MutationObserver(muts => {
    for (const m of muts) {
      const el = m.target;
      if (!el.id || (el.id !== 'reg-state' && el.id !== 'call-state')) continue;
      const st = el.getAttribute('data-state');
      e2e.transitions.push(el.id + '=' + st + '@' + Math.round(performance.now()));
      if (el.id === 'call-state' && st === 'incoming' && e2e.autoAnswer) {
        const a = document.querySelector('#answer');
        if (a) setTimeout(() => a.click(), 0);
      }
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
})();`

// newBrowser starts Chromium (headless, fake media, its own profile) and
// stops it at cleanup, logging every tab's console when the test failed.
func newBrowser(t *testing.T, name string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	chromium := requireTool(t, "chromium", "chromium")
	// Not t.TempDir: Chromium may write to its profile while it shuts down,
	// and a failed removal must not fail the test.
	profile, err := os.MkdirTemp("", "p2psip-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-gpu", true),
		// A tab that is not in front must keep its timers (the SIP stack's
		// keep-alives and the page's stats) running.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
	}
	opts = append(opts, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	b := &browser{name: name, ctx: bctx, logs: &lockedBuffer{}, start: time.Now()}
	var once sync.Once
	b.cancel = func() {
		once.Do(func() {
			bcancel()
			acancel()
			_ = os.RemoveAll(profile)
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser %s: console and log of its tabs:\n%s", b.name, b.logs.String())
		}
		b.cancel()
	})
	// The first run starts the browser and binds its life to the context it
	// gets: no timeout here (the test's own -test.timeout bounds it).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browser %s: starting %s: %v", name, chromium, err)
	}
	return b
}

// open opens url in a new tab of b, with the state recorder installed and
// the tab's console collected into b.logs.
func (b *browser) open(t *testing.T, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tb := &tab{b: b, name: name, ctx: ctx, cancel: cancel}
	t.Cleanup(tb.close)
	// The first run opens the tab and binds it to the context it gets: the
	// tab's own, with no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	tb.collectConsole()
	actx, acancel := context.WithTimeout(ctx, browserAction)
	defer acancel()
	if _, err := chromedp.Call(actx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: browserInit}); err != nil {
		t.Fatalf("%s: installing the state recorder: %v", name, err)
	}
	tb.navigate(t, url)
	return tb
}

func (tb *tab) navigate(t *testing.T, url string) {
	t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*browserAction)
		err := chromedp.Do(ctx, chromedp.Navigate(url))
		cancel()
		if err == nil {
			return
		}
		// A change of the namespace's addresses aborts a load once.
		if try < 3 && strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			t.Logf("%s: navigate to %s: %v; again", tb.name, url, err)
			continue
		}
		t.Fatalf("%s: navigate to %s: %v", tb.name, url, err)
	}
}

// collectConsole copies the tab's console messages, uncaught exceptions and
// browser log entries into the browser's log, until the tab closes.
func (tb *tab) collectConsole() {
	msgs := chromedp.Console(tb.ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			where := ""
			if m.URL != "" {
				where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
			}
			fmt.Fprintf(tb.b.logs, "%8.3fs %s %s: %s%s\n", time.Since(tb.b.start).Seconds(), tb.name, m.Type, m.String(), where)
		}
	}()
}

// close closes the tab (the page unloads, its WebSocket closes).
func (tb *tab) close() {
	if tb.closed {
		return
	}
	tb.closed = true
	tb.cancel()
}

// eval evaluates a JavaScript expression in the page and decodes the result.
func evalIn[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	v, err := evalErr[T](tb, expr)
	if err != nil {
		t.Fatalf("%s: evaluating %s: %v", tb.name, abbrev(expr, 120), err)
	}
	return v
}

func evalErr[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, browserAction)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

func abbrev(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// phoneState is what the page shows through the test surface of
// docs/softphone.md.
type phoneState struct {
	Ready      string   `json:"ready"`
	URL        string   `json:"url"`
	Reg        string   `json:"reg"`
	Call       string   `json:"call"`
	AOR        string   `json:"aor"`
	Name       string   `json:"name"`
	ErrCode    string   `json:"errCode"`
	ErrText    string   `json:"errText"`
	ErrVisible bool     `json:"errVisible"`
	PeerName   string   `json:"peerName"`
	DTMF       string   `json:"dtmf"`
	Packets    string   `json:"packets"`
	Level      string   `json:"level"`
	RTT        string   `json:"rtt"`
	Loss       string   `json:"loss"`
	Jitter     string   `json:"jitter"`
	Hold       string   `json:"hold"`
	History    int      `json:"history"`
	Missing    []string `json:"missing"`
	// Transitions are the last 30 changes of #reg-state and #call-state
	// (id=state@ms since the page loaded); Changes counts all of them.
	Transitions []string `json:"transitions"`
	Changes     int      `json:"changes"`
}

// phoneStateJS reads phoneState from the page. Missing lists the contract's
// selectors that are not in the document.
const phoneStateJS = `(() => {
  const q = s => document.querySelector(s);
  const attr = (s, a) => { const e = q(s); return e ? (e.getAttribute(a) || '') : ''; };
  const text = s => { const e = q(s); return e ? e.textContent.trim() : ''; };
  const visible = s => {
    const e = q(s);
    if (!e || e.hidden || e.closest('[hidden]')) return false;
    const cs = getComputedStyle(e);
    return cs.display !== 'none' && cs.visibility !== 'hidden' && e.getClientRects().length > 0;
  };
  const sels = ['#name', '#join', '#reg-state', '#aor', '#error', '#dial', '#call', '#answer', '#reject',
    '#hangup', '#mute', '#hold', '#call-state', '#peer-name', '#dtmf-received', '#quality', '#history'];
  return {
    ready: document.readyState, url: location.href,
    reg: attr('#reg-state', 'data-state'), call: attr('#call-state', 'data-state'),
    aor: text('#aor'), name: q('#name') ? q('#name').value : '',
    errCode: attr('#error', 'data-code'), errText: text('#error'), errVisible: visible('#error'),
    peerName: text('#peer-name'), dtmf: text('#dtmf-received'),
    packets: attr('#quality', 'data-packets-received'), level: attr('#quality', 'data-audio-level'),
    rtt: attr('#quality', 'data-rtt'), loss: attr('#quality', 'data-loss'), jitter: attr('#quality', 'data-jitter'),
    hold: attr('#hold', 'aria-pressed'),
    history: document.querySelectorAll('#history li').length,
    missing: sels.filter(s => !q(s)),
    transitions: window.__e2e ? window.__e2e.transitions.slice(-30) : [],
    changes: window.__e2e ? window.__e2e.transitions.length : 0,
  };
})()`

func (s phoneState) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (tb *tab) state(t *testing.T) phoneState {
	t.Helper()
	return evalIn[phoneState](t, tb, phoneStateJS)
}

// waitFor polls the page until cond holds, for at most browserWait; the
// failure names what was awaited and the last state seen.
func (tb *tab) waitFor(t *testing.T, what string, cond func(phoneState) bool) phoneState {
	t.Helper()
	return tb.waitForWithin(t, browserWait, what, cond)
}

func (tb *tab) waitForWithin(t *testing.T, timeout time.Duration, what string, cond func(phoneState) bool) phoneState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last phoneState
	var lastErr error
	for {
		st, err := evalErr[phoneState](tb, phoneStateJS)
		if err == nil {
			if cond(st) {
				return st
			}
			last, lastErr = st, nil
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				t.Fatalf("%s: %s: not within %s; reading the page failed: %v; last state seen: %s", tb.name, what, timeout, lastErr, last)
			}
			t.Fatalf("%s: %s: not within %s; last state seen: %s", tb.name, what, timeout, last)
		}
		time.Sleep(browserPoll)
	}
}

// waitCall waits for #call-state[data-state] to be one of states.
func (tb *tab) waitCall(t *testing.T, states ...string) phoneState {
	t.Helper()
	return tb.waitFor(t, "#call-state data-state in "+strings.Join(states, "|"), func(s phoneState) bool {
		for _, w := range states {
			if s.Call == w {
				return true
			}
		}
		return false
	})
}

// click clicks the element as a user would (mouse events at its center).
func (tb *tab) click(t *testing.T, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserAction)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		st, _ := evalErr[phoneState](tb, phoneStateJS)
		t.Fatalf("%s: click %s: %v; state: %s", tb.name, sel, err, st)
	}
}

// typeInto replaces the value of an input field by typing text.
func (tb *tab) typeInto(t *testing.T, sel, text string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false;
	  e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`, sel)
	if !evalIn[bool](t, tb, js) {
		t.Fatalf("%s: no %s in the page: %s", tb.name, sel, tb.state(t))
	}
	ctx, cancel := context.WithTimeout(tb.ctx, browserAction)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(sel), text)); err != nil {
		t.Fatalf("%s: typing into %s: %v; state: %s", tb.name, sel, err, tb.state(t))
	}
	if got := evalIn[string](t, tb, fmt.Sprintf(`document.querySelector(%q).value`, sel)); got != text {
		t.Fatalf("%s: %s holds %q after typing %q", tb.name, sel, got, text)
	}
}

// screenshot writes a PNG of the viewport at w×h (mobile emulation when
// mobile) to path, then restores the desktop viewport.
func (tb *tab) screenshot(t *testing.T, path string, w, h int64, mobile bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 2*browserAction)
	defer cancel()
	var emu []chromedp.EmulateViewportOption
	if mobile {
		emu = append(emu, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h, emu...), chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Errorf("%s: emulating %dx%d: %v", tb.name, w, h, err)
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("%s: screenshot: %v", tb.name, err)
	} else if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Errorf("%s: %v", tb.name, err)
	} else {
		t.Logf("screenshot: %s (%dx%d, %d bytes)", path, w, h, len(buf))
	}
	if err := chromedp.Do(ctx, chromedp.ResetViewport()); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("%s: resetting the viewport: %v", tb.name, err)
	}
}

// findFrameTarget returns the iframe target (a frame from another site runs
// as a target of its own) whose URL starts with prefix, or "".
func findFrameTarget(t *testing.T, b *browser, prefix string) target.ID {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserAction)
	defer cancel()
	infos, err := chromedp.Targets(ctx)
	if err != nil {
		t.Fatalf("browser %s: listing targets: %v", b.name, err)
	}
	for _, in := range infos {
		if in.Type == "iframe" && strings.HasPrefix(in.URL, prefix) {
			return in.TargetID
		}
	}
	return ""
}
