//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// TestBrowser drives the web softphone (docs/softphone.md) in headless
// Chromium against two peers in one overlay: register, call with audio both
// ways, DTMF, hold, hang-up; a call cancelled while it rings on the other
// peer; a name held by another browser; the widget on an
// allowed and on a refused origin; timing over 20 calls; a peer restart; and
// a closed tab releasing its name. It runs inside a network namespace (see
// runBrowserSuiteInNetns). P2PSIP_SCREENSHOTS=1 writes docs/screenshots/*.png;
// P2PSIP_BENCH_OUT=file (relative to the repository root) writes the timing
// line there.
func TestBrowser(t *testing.T) {
	if os.Getenv(browserInNetnsEnv) != "1" {
		runBrowserSuiteInNetns(t, "TestBrowser")
		return
	}
	s := newSoftphoneEnv(t)
	t.Run("config", s.testConfig)
	if !t.Run("register", s.testRegister) {
		t.Fatal("the phones did not register: the other steps need them")
	}
	t.Run("call", s.testCall)
	t.Run("callee-hangs-up", s.testCalleeHangsUp)
	t.Run("cancel-while-ringing", s.testCancelWhileRinging)
	t.Run("name-taken", s.testNameTaken)
	t.Run("widget", s.testWidget)
	t.Run("timing", s.testTiming)
	t.Run("restart", s.testRestart)
}

// softphoneEnv is what the steps of TestBrowser share: two joined peers, the
// host page server for the widget, and the phones A (on peer 1) and B (on
// peer 2).
type softphoneEnv struct {
	p1, p2 *peer
	// host serves the widget's host page; allowedOrigin is in peer 1's
	// --embed-origins, blockedOrigin (the same server by another name) is not.
	host                         *httptest.Server
	allowedOrigin, blockedOrigin string

	ba, bb *browser
	a, b   *tab
	aName  string // A's name: the one the page proposed
	bName  string // B's name: typed
	bOwner string // owner of B's record once B registered
}

func (s *softphoneEnv) aor(name string) string { return "sip:" + name + "@" + overlayDomain }

func newSoftphoneEnv(t *testing.T) *softphoneEnv {
	t.Helper()
	s := &softphoneEnv{bName: "bob"}

	// The host page: the peer's widget.js, and an inline script that records
	// the p2psip events widget.js dispatches on window.
	var mu sync.Mutex
	var peerURL string
	s.host = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent) // no 404 in the console log
			return
		default:
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		base := peerURL
		mu.Unlock()
		call := r.URL.Query().Get("call")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><title>widget host</title></head>
<body>
<h1>A page that embeds the phone</h1>
<script>
window.p2psipEvents = [];
window.addEventListener('p2psip', e => window.p2psipEvents.push(e.detail));
</script>
<script src="%s/widget.js" data-call="%s"></script>
</body></html>
`, html.EscapeString(base), html.EscapeString(call))
	}))
	t.Cleanup(s.host.Close)
	s.allowedOrigin = s.host.URL // http://127.0.0.1:PORT
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.host.URL, "http://"))
	s.blockedOrigin = "http://localhost:" + port

	s.p1 = startPeerOpts(t, peerOpts{name: "peer1", args: []string{"--embed-origins", s.allowedOrigin}})
	mu.Lock()
	peerURL = s.p1.URL
	mu.Unlock()
	s.p2 = startPeerOpts(t, peerOpts{name: "peer2", args: []string{"--join", s.p1.URL + "/"}})
	waitJoined(t, s.p1, s.p2)

	s.ba = newBrowser(t, "A")
	s.bb = newBrowser(t, "B")
	s.a = s.ba.open(t, "A", s.p1.URL+"/")
	s.b = s.bb.open(t, "B", s.p2.URL+"/")
	return s
}

// waitJoined waits until each peer lists the other.
func waitJoined(t *testing.T, p1, p2 *peer) {
	t.Helper()
	for _, pair := range [][2]*peer{{p2, p1}, {p1, p2}} {
		self, other := pair[0], pair[1]
		eventually(t, browserWait, 300*time.Millisecond, self.Name+" lists "+other.Name, func() (bool, string) {
			st, res := self.status(t)
			return res.Code == 0 && st.hasPeer(other.NodeID), res.String()
		})
	}
}

// record reads GET /api/registrations/{aor} from p: the status, the record
// (200) and the body.
func record(t *testing.T, p *peer, aor string) (int, registration, string) {
	t.Helper()
	code, body := get(t, p.URL+"/api/registrations/"+url.PathEscape(aor))
	var reg registration
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &reg); err != nil {
			t.Fatalf("GET /api/registrations/%s: 200 but not a record: %v: %s", aor, err, body)
		}
	}
	return code, reg, string(body)
}

// testConfig checks GET /api/config against the contract.
func (s *softphoneEnv) testConfig(t *testing.T) {
	code, body := get(t, s.p1.URL+"/api/config")
	if code != http.StatusOK {
		t.Fatalf("GET /api/config = %d %s", code, body)
	}
	var cfg struct {
		Overlay      string            `json:"overlay"`
		Node         string            `json:"node"`
		DeviceKey    string            `json:"deviceKey"`
		ICEServers   []json.RawMessage `json:"iceServers"`
		ICEGatherMs  *int              `json:"iceGatherMs"`
		EmbedOrigins []string          `json:"embedOrigins"`
		PublicProxy  *bool             `json:"publicProxy"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("GET /api/config: not JSON: %v: %s", err, body)
	}
	if cfg.Overlay != overlayDomain || cfg.Node != s.p1.NodeID {
		t.Errorf("/api/config overlay %q node %q; want %q and %q", cfg.Overlay, cfg.Node, overlayDomain, s.p1.NodeID)
	}
	if k, err := base64.RawURLEncoding.DecodeString(cfg.DeviceKey); err != nil || len(k) != 65 || k[0] != 4 {
		t.Errorf("/api/config deviceKey %q: want base64url without padding of a 65-byte uncompressed P-256 point (err %v)", cfg.DeviceKey, err)
	}
	if cfg.ICEServers == nil || cfg.ICEGatherMs == nil || cfg.PublicProxy == nil {
		t.Errorf("/api/config lacks iceServers, iceGatherMs or publicProxy: %s", body)
	}
	if !slices.Contains(cfg.EmbedOrigins, s.allowedOrigin) {
		t.Errorf("/api/config embedOrigins %q: want %s (peer 1's --embed-origins)", cfg.EmbedOrigins, s.allowedOrigin)
	}
}

// testRegister: A accepts the name the page proposes, B types one; both
// register, and the overlay holds B's record with a live binding.
func (s *softphoneEnv) testRegister(t *testing.T) {
	st := s.a.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
		return st.Name != "" && !slices.Contains(st.Missing, "#join")
	})
	s.aName = st.Name
	t.Logf("A: the page proposed the name %q", s.aName)
	s.a.click(t, "#join")

	// Type once the page has proposed its name, or the proposal lands on
	// what we typed.
	s.b.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
		return st.Name != "" && !slices.Contains(st.Missing, "#join")
	})
	s.b.typeInto(t, "#name", s.bName)
	s.b.click(t, "#join")

	for _, p := range []struct {
		tb   *tab
		name string
	}{{s.a, s.aName}, {s.b, s.bName}} {
		st := p.tb.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" })
		if want := s.aor(p.name); st.AOR != want {
			t.Errorf("%s: #aor = %q, want %q", p.tb.name, st.AOR, want)
		}
		if st.ErrVisible {
			t.Errorf("%s: #error visible while registered: code %q text %q", p.tb.name, st.ErrCode, st.ErrText)
		}
	}

	// B's record is in the overlay, found through the other peer.
	eventually(t, browserWait, 300*time.Millisecond, "peer 1 finds B's live binding", func() (bool, string) {
		code, reg, body := record(t, s.p1, s.aor(s.bName))
		if code == http.StatusOK && len(reg.Bindings) > 0 && reg.Owner != "" {
			s.bOwner = reg.Owner
			return true, ""
		}
		return false, fmt.Sprintf("%d %s", code, body)
	})
	// The owner is the browser's key, not the peer's device key.
	for _, p := range []*peer{s.p1, s.p2} {
		if k := deviceKey(t, p); k == s.bOwner {
			t.Errorf("B's record is owned by %s's device key %s: want the browser's own key", p.Name, k)
		}
	}
	if code, reg, body := record(t, s.p2, s.aor(s.aName)); code != http.StatusOK || len(reg.Bindings) == 0 {
		t.Errorf("peer 2: A's record: %d %s; want 200 with a live binding", code, body)
	} else if reg.Owner == s.bOwner {
		t.Errorf("A's and B's records have the same owner %s: each browser should own its name with its own key", reg.Owner)
	}
}

// deviceKey is the deviceKey of p's /api/config.
func deviceKey(t *testing.T, p *peer) string {
	t.Helper()
	code, body := get(t, p.URL+"/api/config")
	var cfg struct {
		DeviceKey string `json:"deviceKey"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &cfg) != nil {
		t.Fatalf("%s: GET /api/config = %d %s", p.Name, code, body)
	}
	return cfg.DeviceKey
}

// testCall: A calls B by bare name; B answers; audio flows both ways; DTMF
// from A reaches B; hold and resume; A hangs up.
func (s *softphoneEnv) testCall(t *testing.T) {
	a, b := s.a, s.b
	a.typeInto(t, "#dial", s.bName)
	a.click(t, "#call")
	st := b.waitCall(t, "incoming")
	if !strings.Contains(st.PeerName, s.aName) {
		t.Errorf("B: #peer-name = %q while A (%s) calls", st.PeerName, s.aName)
	}
	a.waitCall(t, "ringing")
	b.click(t, "#answer")
	a.waitCall(t, "connected")
	b.waitCall(t, "connected")
	if st := a.state(t); !strings.Contains(st.PeerName, s.bName) {
		t.Errorf("A: #peer-name = %q in a call with %s", st.PeerName, s.bName)
	}

	// Audio both ways: the inbound packet count grows and the level is
	// above zero on both sides.
	for _, tb := range []*tab{a, b} {
		first := tb.waitFor(t, "#quality data-packets-received > 0", func(st phoneState) bool { return num(st.Packets) > 0 })
		tb.waitFor(t, fmt.Sprintf("#quality data-packets-received to grow past %s and data-audio-level > 0", first.Packets), func(st phoneState) bool {
			return num(st.Packets) > num(first.Packets) && num(st.Level) > 0
		})
		st := tb.state(t)
		t.Logf("%s: inbound audio: packets %s level %s rtt %s loss %s jitter %s", tb.name, st.Packets, st.Level, st.RTT, st.Loss, st.Jitter)
	}

	// DTMF: 1 2 3 # from A's dial pad show in B's #dtmf-received.
	for _, d := range []string{"1", "2", "3", "#"} {
		a.click(t, fmt.Sprintf(`[data-digit=%q]`, d))
	}
	b.waitFor(t, `#dtmf-received "123#"`, func(st phoneState) bool { return st.DTMF == "123#" })

	// Hold: A holds, B sees remote-held; A resumes, both connected.
	a.click(t, "#hold")
	if st := a.waitCall(t, "held"); st.Hold != "true" {
		t.Errorf("A: #hold aria-pressed = %q while held, want true", st.Hold)
	}
	s.checkRemoteHeld(t, b)
	a.click(t, "#hold")
	if st := a.waitCall(t, "connected"); st.Hold != "false" {
		t.Errorf("A: #hold aria-pressed = %q after resuming, want false", st.Hold)
	}
	b.waitCall(t, "connected")
	before := b.state(t)
	b.waitFor(t, "inbound packets flow again after the resume", func(st phoneState) bool {
		return num(st.Packets) > num(before.Packets)
	})

	// Hang up: both back to idle; the call is in A's history.
	a.click(t, "#hangup")
	for _, tb := range []*tab{a, b} {
		tb.waitCall(t, "idle")
	}
	if st := a.state(t); st.History < 1 {
		t.Errorf("A: #history has %d entries after a call, want at least 1", st.History)
	}
}

// testCalleeHangsUp: A calls B, B answers and hangs up: A's call ends too.
func (s *softphoneEnv) testCalleeHangsUp(t *testing.T) {
	a, b := s.a, s.b
	t.Cleanup(func() { hangUpAll(a, b) })
	a.typeInto(t, "#dial", s.bName)
	a.click(t, "#call")
	b.waitCall(t, "incoming")
	b.click(t, "#answer")
	a.waitCall(t, "connected")
	b.waitCall(t, "connected")
	b.click(t, "#hangup")
	b.waitCall(t, "ended", "idle")
	a.waitCall(t, "ended", "idle")
}

// hangUpAll ends whatever call the phones are in (cleanup after a failed
// step, so the next step starts idle) and waits up to browserWait for it.
func hangUpAll(tabs ...*tab) {
	deadline := time.Now().Add(browserWait)
	for _, tb := range tabs {
		for time.Now().Before(deadline) {
			st, err := evalErr[string](tb, `(() => {
			  const s = document.querySelector('#call-state');
			  const st = s ? s.getAttribute('data-state') : 'idle';
			  if (st === 'idle' || st === 'ended') return 'done';
			  const b = document.querySelector(st === 'incoming' ? '#reject' : '#hangup');
			  if (b) b.click();
			  return st;
			})()`)
			if err != nil || st == "done" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// checkRemoteHeld waits for B's remote-held; without it, B's media must at
// least stop (the contract has the state, so its absence is reported).
func (s *softphoneEnv) checkRemoteHeld(t *testing.T, b *tab) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	var st phoneState
	for time.Now().Before(deadline) {
		st = b.state(t)
		if st.Call == "remote-held" {
			return
		}
		time.Sleep(browserPoll)
	}
	p0 := num(b.state(t).Packets)
	time.Sleep(2500 * time.Millisecond)
	p1 := num(b.state(t).Packets)
	if p1 == p0 {
		t.Logf("FINDING: B's #call-state is %q, not remote-held, while A holds; its inbound media did stop (%v packets)", st.Call, p0)
		return
	}
	t.Errorf("B: while A holds, #call-state is %q (want remote-held) and inbound packets still grow (%v → %v): %s", st.Call, p0, p1, st)
}

// num parses a data attribute as a number; missing or garbage is NaN, which
// compares false.
func num(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// testNameTaken: a third browser on peer 1 cannot register B's name while B
// holds it, and B's record keeps its owner.
func (s *softphoneEnv) testNameTaken(t *testing.T) {
	bc := newBrowser(t, "C")
	c := bc.open(t, "C", s.p1.URL+"/")
	c.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
		return st.Name != "" && !slices.Contains(st.Missing, "#join")
	})
	c.typeInto(t, "#name", s.bName)
	clicked := time.Now()
	c.click(t, "#join")
	st := c.waitFor(t, "#reg-state failed with a visible #error[data-code=name-taken]", func(st phoneState) bool {
		return st.Reg == "failed" && st.ErrCode == "name-taken" && st.ErrVisible
	})
	t.Logf("C: %q %s after the click; state changes %q", strings.Join(strings.Fields(st.ErrText), " "),
		time.Since(clicked).Round(time.Millisecond), st.Transitions)

	code, reg, body := record(t, s.p1, s.aor(s.bName))
	if code != http.StatusOK || reg.Owner != s.bOwner || len(reg.Bindings) == 0 {
		t.Errorf("B's record after C's attempt: %d %s; want owner %s unchanged, with B's live binding", code, body, s.bOwner)
	}
	if st := s.b.state(t); st.Reg != "registered" {
		t.Errorf("B: #reg-state %q after C's attempt, want registered", st.Reg)
	}
}

// widgetEvents reads the p2psip events the host page recorded, as event
// names (the message's event field, wherever widget.js put it).
const widgetEventsJS = `(window.p2psipEvents || []).map(d =>
  d == null ? 'null' : typeof d === 'string' ? d :
  d.event || (d.detail && d.detail.event) || d.type || JSON.stringify(d))`

// testWidget: a host page on an allowed origin embeds the phone with
// widget.js; a click in the iframe calls B, B answers, and the host page gets
// the p2psip events. A host page on another origin gets no working phone.
func (s *softphoneEnv) testWidget(t *testing.T) {
	// What the peer serves for the widget.
	if code, body := get(t, s.p1.URL+"/widget.js"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("GET /widget.js = %d (%d bytes)", code, len(body))
	}
	embed := s.p1.URL + "/embed?mode=button&call=" + url.QueryEscape(s.aor(s.bName)) + "&origin=" + url.QueryEscape(s.allowedOrigin)
	resp, err := httpClient().Get(embed)
	if err != nil {
		t.Fatalf("GET %s: %v", embed, err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != http.StatusOK ||
		!strings.Contains(csp, "frame-ancestors 'self' "+s.allowedOrigin) {
		t.Errorf("GET /embed = %d with Content-Security-Policy %q; want 200 and frame-ancestors 'self' %s", resp.StatusCode, csp, s.allowedOrigin)
	}
	// /sip: the allowed origin may open it, another may not.
	for origin, want := range map[string]int{s.allowedOrigin: http.StatusSwitchingProtocols, s.blockedOrigin: http.StatusForbidden} {
		if got := wsHandshake(t, s.p1.URL+"/sip", origin); got != want {
			t.Errorf("WebSocket /sip with Origin %s: %d, want %d", origin, got, want)
		}
	}

	bw := newBrowser(t, "W")
	hostURL := s.allowedOrigin + "/?call=" + url.QueryEscape(s.aor(s.bName))
	h := bw.open(t, "host", hostURL)
	frame := s.widgetFrame(t, bw, h)
	s.clickWidgetButton(t, frame)

	b := s.b
	b.waitCall(t, "incoming")
	b.click(t, "#answer")
	b.waitCall(t, "connected")
	waitEvents(t, h, "connected")
	// Audio both ways between the widget and B.
	for _, tb := range []*tab{b, frame} {
		tb.waitFor(t, "inbound audio packets in the widget call", func(st phoneState) bool { return num(st.Packets) > 0 })
	}
	// The widget hangs up (a hang-up by the callee is testCalleeHangsUp).
	frame.click(t, "#hangup")
	frame.waitCall(t, "ended", "idle")
	b.waitCall(t, "ended", "idle")
	evs := waitEvents(t, h, "ended")
	t.Logf("host page events: %q", evs)
	for _, want := range []string{"registered", "calling", "ringing", "connected", "ended"} {
		if !slices.Contains(evs, want) {
			t.Errorf("host page events %q: no %q", evs, want)
		}
	}
	frame.close()
	h.close()

	// The same host page on a refused origin: the iframe shows no phone.
	blocked := bw.open(t, "host-blocked", s.blockedOrigin+"/?call="+url.QueryEscape(s.aor(s.bName)))
	eventually(t, browserWait, 200*time.Millisecond, "widget.js adds an iframe on the refused origin", func() (bool, string) {
		return evalIn[bool](t, blocked, `!!document.querySelector('iframe')`), evalIn[string](t, blocked, `document.body.innerHTML`)
	})
	time.Sleep(3 * time.Second) // give it time to load, were it allowed
	if ft := findFrameTarget(t, bw, s.p1.URL+"/embed"); ft == "" {
		t.Logf("refused iframe: no frame target for %s/embed", s.p1.URL)
	} else {
		fctx, cancel := chromedp.NewContext(bw.ctx, chromedp.WithTargetID(ft), chromedp.WithDetachOnCancel())
		got, err := chromedp.Run(fctx, chromedp.Evaluate[string](`location.href + ' | buttons=' + document.querySelectorAll('button').length + ' | ' + document.body.innerText.slice(0, 200)`))
		cancel()
		if err != nil {
			t.Logf("reading the refused iframe: %v", err)
		} else if strings.HasPrefix(got, s.p1.URL) && !strings.Contains(got, "buttons=0") {
			t.Errorf("the iframe on refused origin %s loaded the phone: %s", s.blockedOrigin, got)
		} else {
			t.Logf("refused iframe: %s", got)
		}
	}
	if evs := evalIn[[]string](t, blocked, widgetEventsJS); len(evs) > 0 {
		t.Errorf("the host page on refused origin %s got p2psip events %q", s.blockedOrigin, evs)
	}
}

// widgetFrame waits for the widget's iframe (a target of its own: another
// site) and attaches to it.
func (s *softphoneEnv) widgetFrame(t *testing.T, bw *browser, host *tab) *tab {
	t.Helper()
	var id target.ID
	eventually(t, browserWait, 200*time.Millisecond, "the widget's iframe loads "+s.p1.URL+"/embed", func() (bool, string) {
		id = findFrameTarget(t, bw, s.p1.URL+"/embed")
		if id != "" {
			return true, ""
		}
		st, _ := evalErr[string](host, `document.documentElement.outerHTML`)
		return false, "host page: " + abbrev(st, 600)
	})
	ctx, cancel := chromedp.NewContext(bw.ctx, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel())
	ft := &tab{b: bw, name: "widget-iframe", ctx: ctx, cancel: cancel}
	t.Cleanup(ft.close)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("attaching to the widget's iframe: %v", err)
	}
	ft.collectConsole()
	return ft
}

// clickWidgetButton clicks the widget's call button: #call, else the first
// button (docs/softphone.md names no selector for the button mode).
func (s *softphoneEnv) clickWidgetButton(t *testing.T, frame *tab) {
	t.Helper()
	var sel string
	eventually(t, browserWait, 200*time.Millisecond, "a visible call button in the widget", func() (bool, string) {
		got, err := evalErr[string](frame, `(() => {
		  const vis = e => e && !e.disabled && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
		  if (vis(document.querySelector('#call'))) return '#call';
		  const b = [...document.querySelectorAll('button')].find(vis);
		  return b ? 'button' : '';
		})()`)
		if err != nil {
			return false, err.Error()
		}
		sel = got
		if got != "" {
			return true, ""
		}
		body, _ := evalErr[string](frame, `location.href + ' ' + document.body.innerHTML`)
		return false, abbrev(body, 600)
	})
	if sel == "button" {
		t.Logf("FINDING: the widget (mode=button) has no #call; clicking its first visible button")
		sel = "button"
	}
	frame.click(t, sel)
}

// waitEvents waits until the host page recorded the event, and returns all.
func waitEvents(t *testing.T, host *tab, want string) []string {
	t.Helper()
	var evs []string
	eventually(t, browserWait, 200*time.Millisecond, "the host page receives the p2psip event "+want, func() (bool, string) {
		evs = evalIn[[]string](t, host, widgetEventsJS)
		return slices.Contains(evs, want), fmt.Sprintf("events so far: %q", evs)
	})
	return evs
}

// wsHandshake opens a WebSocket (subprotocol sip) with the given Origin and
// returns the HTTP status of the handshake.
func wsHandshake(t *testing.T, rawURL, origin string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "sip")
	req.Header.Set("Origin", origin)
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatalf("WebSocket handshake to %s with Origin %s: %v", rawURL, origin, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// testTiming makes 20 calls A→B (B answers as soon as it rings) and reports
// click→ringing and click→media from the page's performance marks.
func (s *softphoneEnv) testTiming(t *testing.T) {
	const calls = 20
	a, b := s.a, s.b
	shots := os.Getenv("P2PSIP_SCREENSHOTS") == "1"
	shotDir := filepath.Join(moduleRoot, "docs", "screenshots")
	if shots {
		if err := os.MkdirAll(shotDir, 0o755); err != nil {
			t.Fatal(err)
		}
		a.screenshot(t, filepath.Join(shotDir, "softphone-registered-desktop.png"), 1280, 800, false)
		a.screenshot(t, filepath.Join(shotDir, "softphone-registered-phone.png"), 375, 667, true)
	}

	evalIn[bool](t, b, `window.__e2e.autoAnswer = true`)
	defer evalErr[bool](b, `window.__e2e.autoAnswer = false`) //nolint:errcheck // best effort
	a.typeInto(t, "#dial", s.bName)
	var ringing, media []time.Duration
	for i := 0; i < calls; i++ {
		a.click(t, "#call")
		a.waitCall(t, "connected")
		b.waitCall(t, "connected")
		a.waitFor(t, "performance marks call-click and call-media", func(phoneState) bool {
			m := evalIn[perfMarks](t, a, perfMarksJS)
			return m.Click >= 0 && m.Media >= 0
		})
		m := evalIn[perfMarks](t, a, perfMarksJS)
		if m.Ringing >= 0 {
			ringing = append(ringing, ms(m.Ringing-m.Click))
		}
		media = append(media, ms(m.Media-m.Click))
		if shots && i == 0 {
			a.waitFor(t, "inbound audio level > 0", func(st phoneState) bool { return num(st.Level) > 0 })
			a.screenshot(t, filepath.Join(shotDir, "softphone-in-call-desktop.png"), 1280, 800, false)
			a.screenshot(t, filepath.Join(shotDir, "softphone-in-call-phone.png"), 375, 667, true)
		}
		a.click(t, "#hangup")
		// The page shows "ended" for a few seconds; a call may start from it.
		a.waitCall(t, "ended", "idle")
		b.waitCall(t, "ended", "idle")
	}
	if len(ringing) < calls {
		t.Errorf("performance mark call-ringing missing in %d of %d calls", calls-len(ringing), calls)
	}
	line := fmt.Sprintf("softphone timing: click→ringing p50=%s p95=%s; click→media p50=%s p95=%s (%d calls)",
		pct(ringing, 50), pct(ringing, 95), pct(media, 50), pct(media, 95), calls)
	t.Log(line)
	t.Logf("click→media samples: %v", media)
	if out := os.Getenv("P2PSIP_BENCH_OUT"); out != "" {
		if !filepath.IsAbs(out) {
			out = filepath.Join(moduleRoot, out) // relative to the repository, not e2e/
		}
		content := line + "\nclick→ringing samples: " + fmt.Sprint(ringing) + "\nclick→media samples: " + fmt.Sprint(media) + "\n"
		if err := os.WriteFile(out, []byte(content), 0o644); err != nil {
			t.Errorf("P2PSIP_BENCH_OUT: %v", err)
		}
	}
	if p50 := percentile(media, 50); p50 > time.Second {
		t.Errorf("click→media p50 = %s: over 1 s (the target is 300 ms)", p50)
	}
}

// perfMarks holds the startTime of the page's last call marks, -1 if absent.
type perfMarks struct {
	Click   float64 `json:"click"`
	Ringing float64 `json:"ringing"`
	Media   float64 `json:"media"`
}

const perfMarksJS = `(() => {
  const g = n => { const e = performance.getEntriesByName(n); return e.length ? e[e.length - 1].startTime : -1; };
  return {click: g('call-click'), ringing: g('call-ringing'), media: g('call-media')};
})()`

func ms(f float64) time.Duration {
	return time.Duration(f * float64(time.Millisecond)).Round(time.Millisecond)
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(float64(p)/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "n/a"
	}
	return percentile(ds, p).String()
}

// testRestart restarts peer 2 (same data dir and ports): B's page registers
// again by itself, A calls B again; then closing B's tab frees B's name.
func (s *softphoneEnv) testRestart(t *testing.T) {
	old := s.p2
	httpsAddr := strings.TrimSuffix(strings.TrimPrefix(old.URL, "https://"), "/")
	args := []string{"--https", httpsAddr, "--sip", old.sipAddr(t, "udp"), "--sips", old.sipAddr(t, "tls"), "--join", s.p1.URL + "/"}
	before := s.b.state(t).Changes
	if code, _, timedOut := old.stop(t); code != 0 || timedOut {
		t.Errorf("peer 2: SIGTERM gave exit %d (timed out %v)", code, timedOut)
	}
	s.b.waitFor(t, `B shows its peer unreachable (#reg-state not registered, #error[data-code=unreachable] visible)`, func(st phoneState) bool {
		return st.Reg != "registered" && st.ErrCode == "unreachable" && st.ErrVisible
	})
	// The new peer lives as long as this subtest: the steps that need it
	// are its subtests.
	s.p2 = startPeerOpts(t, peerOpts{name: "peer2-restarted", dataDir: old.DataDir, args: args})
	if s.p2.URL != old.URL || s.p2.NodeID != old.NodeID {
		t.Errorf("restarted peer 2 at %s as %s; want %s as %s", s.p2.URL, s.p2.NodeID, old.URL, old.NodeID)
	}
	waitJoined(t, s.p1, s.p2)

	t.Run("reregister", func(t *testing.T) {
		st := s.b.waitFor(t, "B registered again without a click, #error hidden", func(st phoneState) bool { return st.Reg == "registered" && !st.ErrVisible })
		since := st.Changes - before
		t.Logf("B: state changes since the restart: %q", st.Transitions[max(len(st.Transitions)-since, 0):])
		eventually(t, browserWait, 300*time.Millisecond, "peer 1 finds B's live binding again", func() (bool, string) {
			code, reg, body := record(t, s.p1, s.aor(s.bName))
			return code == http.StatusOK && len(reg.Bindings) > 0 && reg.Owner == s.bOwner, fmt.Sprintf("%d %s (owner before: %s)", code, body, s.bOwner)
		})
	})
	t.Run("call-again", func(t *testing.T) {
		a, b := s.a, s.b
		a.typeInto(t, "#dial", s.bName)
		a.click(t, "#call")
		b.waitCall(t, "incoming", "connected") // auto-answer may still be on
		if b.state(t).Call == "incoming" {
			b.click(t, "#answer")
		}
		a.waitCall(t, "connected")
		b.waitCall(t, "connected")
		a.waitFor(t, "inbound audio on A", func(st phoneState) bool { return num(st.Packets) > 0 })
		a.click(t, "#hangup")
		a.waitCall(t, "idle")
		b.waitCall(t, "idle")
	})
	t.Run("close-tab", func(t *testing.T) {
		aor := s.aor(s.bName)
		if code, reg, body := record(t, s.p1, aor); code != http.StatusOK || len(reg.Bindings) == 0 {
			t.Fatalf("before closing B's tab: %d %s; want B's live binding", code, body)
		}
		closed := time.Now()
		s.b.close()
		eventually(t, browserWait, 100*time.Millisecond, "B's binding gone from the overlay after its tab closed", func() (bool, string) {
			code, reg, body := record(t, s.p1, aor)
			return code == http.StatusNotFound || (code == http.StatusOK && len(reg.Bindings) == 0), fmt.Sprintf("%d %s", code, body)
		})
		t.Logf("B's binding gone %s after its tab closed", time.Since(closed).Round(time.Millisecond))
		res := s.p1.cli(t, "lookup", aor, "--peer", s.p1.URL, "--json")
		var reg registration
		if res.Code == 0 && json.Unmarshal([]byte(res.Stdout), &reg) == nil && len(reg.Bindings) > 0 {
			t.Errorf("p2psip lookup %s still lists live bindings after B's tab closed:\n%s", aor, res)
		}
	})
	t.Run("reopen", func(t *testing.T) {
		// The same browser (the same IndexedDB key) opens the phone again:
		// it is no first visit, so B's name registers again with no click,
		// under the same owner.
		b := s.bb.open(t, "B-again", s.p2.URL+"/")
		st := b.waitFor(t, "B's name registered again on reopening, with no click", func(st phoneState) bool { return st.Reg == "registered" })
		if want := s.aor(s.bName); st.AOR != want {
			t.Errorf("reopened B: #aor = %q, want %q", st.AOR, want)
		}
		eventually(t, browserWait, 300*time.Millisecond, "peer 1 finds B's live binding under the same owner", func() (bool, string) {
			code, reg, body := record(t, s.p1, s.aor(s.bName))
			return code == http.StatusOK && len(reg.Bindings) > 0 && reg.Owner == s.bOwner, fmt.Sprintf("%d %s (owner before: %s)", code, body, s.bOwner)
		})
	})
}
