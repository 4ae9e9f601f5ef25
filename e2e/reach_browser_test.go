//go:build e2e

package e2e

// Issue 10, "a browser on the LAN registers and is called from the public
// side": the 443-only topology of reach_harness_test.go, with a Chromium
// running inside the LAN's namespace (ip netns exec, through a wrapper
// script as chromedp's ExecPath: the DevTools pipe is inherited across it).

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	rbName     = "alice2"                // the page's overlay name
	rbAOR      = rbName + "@" + rOverlay // alice2@overlay.example
	rbPublic   = "alice"                 // alice@atlanta.example: Kamailio's alias of the page
	rbPassword = "alicepw"               // kamailio.cfg's password for alice
	rbCarol    = "carol@" + rPublic      // the public caller
	rbLimit    = time.Second             // the page leaves ringing this soon after the CANCEL
	rbCallWait = 20 * time.Second        // sipp -timeout of one call
	rbHTTPS    = 8443                    // L's HTTPS port (startLANPeer)
	rbRing     = "uac_webrtc_cancel.xml" // carol cancels 2 s after 180
	rbReject   = "uac_webrtc_reject.xml" // carol expects 486
	rbAnswer   = "uac_webrtc_answer.xml" // carol expects 200, ACK, BYE
	rbSippTime = "2006-01-02 15:04:05.000000"
)

// TestReachBrowserOnLAN: on the city Wi-Fi that passes only HTTPS, a
// browser on the LAN opens its peer L's softphone and registers
// alice2@overlay.example. Kamailio (atlanta.example) holds
// alice@atlanta.example → sip:alice2@overlay.example, so a public phone,
// carol, calling alice@atlanta.example goes Kamailio → DNS overlay.example
// → P → DHT → stream to L → WebSocket → the page. Carol's calls: a
// WebRTC-shaped offer she cancels while the page rings (the page
// leaves ringing within 1 s of the CANCEL); one the page rejects (486 at
// carol); one the page answers (200, ACK and carol's BYE through the whole
// record-routed path). No SIP packet goes from the LAN to port 5060.
func TestReachBrowserOnLAN(t *testing.T) {
	start := time.Now()
	r := newRnet(t)
	chromium := requireTool(t, "chromium", "chromium")
	r.addPub()
	s := r.addSite(0, httpsOnly)
	pub := startPubServices(t, r)
	P := startPublicPeer(t, r, "P", rPubP, "")
	L := startLANPeer(t, r, "L", s.lan, s.peerIP, rOverlay, "https://"+rPubP+":443/", false)
	base := r.checkSite(s, rPubP)
	waitPeers(t, L, rJoinWait, P)
	waitPeers(t, P, 10*time.Second, L)
	r.checkMasquerade(s, rPubP)
	t.Logf("topology up, L joined P: %s", time.Since(start).Round(time.Millisecond))

	// Kamailio's alias: alice@atlanta.example reaches the page's overlay
	// name (the public registrar forwards to overlay.example, as in the
	// draft's §3.4; kamailio.cfg relays nothing for other domains itself).
	aliasPhone := newPhone(r, "pub", rbPublic, rPublic, rPubCar, 5085)
	reg := aliasPhone.env.runSipp(t, pxSippOpts{name: "register alice@" + rPublic + " → " + rbAOR, scenario: "register_public.xml",
		ip: rPubCar, port: 5085, remote: pxAddr(rPubKam, 5060), csv: rbPublic + ";" + rPublic,
		keys: map[string]string{"contact": rbAOR}, au: rbPublic, ap: rbPassword})
	if reg.Code != 0 {
		t.Fatalf("topology: registering alice@%s → sip:%s at Kamailio failed:\n%s", rPublic, rbAOR, reg)
	}
	if ok, out := pub.locationHas(t, "sip:"+rbAOR); !ok {
		t.Fatalf("topology: Kamailio's location has no alice → sip:%s:\n%s", rbAOR, out)
	}

	// The browser, inside the LAN's namespace.
	wrapper := filepath.Join(t.TempDir(), "chromium-in-lan")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", r.ip, r.name(s.lan), chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bStart := time.Now()
	b := newBrowser(t, "lan", chromedp.ExecPath(wrapper))
	started := time.Since(bStart)
	pageURL := fmt.Sprintf("https://%s:%d/", s.peerIP, rbHTTPS)
	a := b.open(t, "A", pageURL)
	t.Logf("Chromium started in %s in %s and opened %s in %s", r.name(s.lan), started.Round(time.Millisecond), pageURL, (time.Since(bStart) - started).Round(time.Millisecond))
	if out, err := r.in(s.lan, "ss", "-Htnp", "state", "established", "dst", fmt.Sprintf("%s:%d", s.peerIP, rbHTTPS)); err == nil {
		if !strings.Contains(out, "chrom") {
			t.Errorf("no Chromium connection to %s:%d inside %s: the browser does not run in the LAN's namespace?\n%s", s.peerIP, rbHTTPS, s.lan, out)
		}
	} else {
		t.Logf("ss in %s: %v\n%s", s.lan, err, out)
	}

	if !t.Run("register", func(t *testing.T) {
		regStart := time.Now()
		a.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
			return st.Name != "" && !slices.Contains(st.Missing, "#join")
		})
		a.typeInto(t, "#name", rbName)
		a.click(t, "#join")
		st := a.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" || st.Reg == "failed" })
		if st.Reg != "registered" {
			t.Fatalf("the page on the LAN failed to register %s at L: %s", rbAOR, st)
		}
		if !strings.Contains(st.AOR, rbAOR) {
			t.Errorf("#aor = %q, want %s", st.AOR, rbAOR)
		}
		t.Logf("the page registered %s at L in %s", st.AOR, time.Since(regStart).Round(time.Millisecond))
		// The public side's peer must find the page's binding in the DHT.
		eventually(t, 20*time.Second, 500*time.Millisecond, "P finds sip:"+rbAOR+" in the overlay", func() (bool, string) {
			rec, res, found := lookupAOR(t, P, "sip:"+rbAOR)
			return found && len(rec.Bindings) > 0, res.String()
		})
		t.Logf("P finds the page's binding %s after the click", time.Since(regStart).Round(time.Millisecond))
	}) {
		t.Fatal("the page did not register: the calls need it")
	}

	c := &rbCaller{t: t, r: r, pub: pub, peers: []*peer{P, L}, a: a}

	// A plain RTP/AVP offer is bridged by L now: TestBridgeHTTPSOnlyLAN
	// (bridge_lan_test.go) calls the page from a real phone.

	t.Run("cancel while ringing", func(t *testing.T) {
		a.waitCall(t, "idle", "ended")
		var rangAt phoneState
		var mark int
		res, rang := c.call(t, rbRing, 5091, func(st phoneState) {
			rangAt = st
			mark = evalIn[int](t, a, `window.__e2e.transitions.length`)
		})
		if !rang {
			t.Fatalf("the page never rang for carol's call (state incoming)\n%s", c.explain(res))
		}
		t.Logf("the page rang %s after carol's INVITE: #peer-name %q", res.rang.Round(time.Millisecond), rangAt.PeerName)
		if !strings.Contains(strings.ToLower(rangAt.PeerName), "carol") {
			t.Errorf("#peer-name = %q while ringing, want the caller (Carol / %s)", rangAt.PeerName, rbCarol)
		}
		if res.res.Code != 0 {
			t.Errorf("carol's CANCEL did not end the call as it should (200 for the CANCEL, 487 for the INVITE): %q\n%s", rbFinal(res.res), c.explain(res))
		}
		st := a.waitFor(t, "the page leaves the ringing state after carol's CANCEL", func(st phoneState) bool { return st.Call != "incoming" })
		if st.Call != "ended" && st.Call != "idle" {
			t.Errorf("#call-state went from incoming to %q after carol cancelled; want ended or idle: %s", st.Call, st)
		}
		sent, ok := rbSentAt(res.res.Msgs, "CANCEL ")
		left := evalIn[callLeft](t, a, fmt.Sprintf(`({origin: performance.timeOrigin, transitions: window.__e2e.transitions.slice(%d)})`, mark))
		leftAt, ok2 := firstCallChange(left)
		if !ok || !ok2 {
			t.Fatalf("cannot time the CANCEL: carol's CANCEL sent at %v (%v), the page's transitions %q", sent, ok, left.Transitions)
		}
		d := time.UnixMicro(int64(leftAt * 1000)).Sub(sent).Round(time.Millisecond)
		t.Logf("the page left ringing %s after carol sent CANCEL (sipp's trace and the page's clock, one host); transitions %q", d, left.Transitions)
		if d < 0 {
			t.Errorf("the page left the ringing state %s before carol sent her CANCEL: something else ended the call\n%s", -d, c.explain(res))
		} else if d >= rbLimit {
			t.Errorf("the page left the ringing state %s after carol's CANCEL; want under %s (the CANCEL through Kamailio → P → L was late or lost)\n%s", d, rbLimit, c.explain(res))
		}
		if cancels := pxAllReceived(res.res.Msgs, "SIP/2.0 487"); len(cancels) == 0 {
			t.Errorf("carol got no 487 Request Terminated for her cancelled INVITE")
		}
	})

	t.Run("reject", func(t *testing.T) {
		a.waitCall(t, "idle", "ended")
		res, rang := c.call(t, rbReject, 5092, func(phoneState) { a.click(t, "#reject") })
		final := rbFinal(res.res)
		t.Logf("rejected: the page rang after %s, carol got %q after %s", res.rang.Round(time.Millisecond), final, res.took.Round(time.Millisecond))
		if !rang {
			t.Fatalf("the page never rang for carol's call\n%s", c.explain(res))
		}
		if res.res.Code != 0 || !strings.HasPrefix(final, "SIP/2.0 486") {
			t.Fatalf("carol got %q after the page's #reject, want 486 Busy Here\n%s", final, c.explain(res))
		}
		a.waitCall(t, "idle", "ended")
	})

	t.Run("answer and carol hangs up", func(t *testing.T) {
		a.waitCall(t, "idle", "ended")
		var answered time.Time
		res, rang := c.call(t, rbAnswer, 5093, func(phoneState) {
			answered = time.Now()
			a.click(t, "#answer")
		})
		if !rang {
			t.Fatalf("the page never rang for carol's call\n%s", c.explain(res))
		}
		final := rbFinal(res.res)
		t.Logf("answered: the page rang after %s; carol got %q", res.rang.Round(time.Millisecond), final)
		if res.res.Code != 0 {
			t.Fatalf("carol's answered call did not complete (200, ACK, her BYE answered 200): final %q\n%s", final, c.explain(res))
		}
		ok := pxFirstReceived(res.res.Msgs, "SIP/2.0 200")
		if sent, okAt := rbSentAt(res.res.Msgs, "ACK "); okAt && !answered.IsZero() {
			t.Logf("carol's ACK %s after the click on #answer", sent.Sub(answered).Round(time.Millisecond))
		}
		if parts := strings.SplitN(ok, "\r\n\r\n", 2); len(parts) < 2 || !strings.Contains(parts[1], "a=fingerprint") {
			t.Errorf("carol's 200 carries no WebRTC answer:\n%s", ok)
		}
		// Record-routed by Kamailio and P (L's own entries name it by node
		// id, or by its LAN address only behind its overlay-facing one).
		rrs := pxHeaders(ok, "Record-Route", "")
		t.Logf("the 200's Record-Route set: %q", rrs)
		if !pxHasRR(rrs, rPubP) || !slices.ContainsFunc(rrs, func(v string) bool { return strings.Contains(v, rPubKam) }) {
			t.Errorf("carol's 200 lacks the Record-Route of Kamailio (%s) or P (%s, p2pd=): %q", rPubKam, rPubP, rrs)
		}
		checkNoPrivateHop(t, ok, s.peerIP, true)
		st := a.waitCall(t, "ended", "idle")
		t.Logf("the page's transitions: %q", st.Transitions)
		if !slices.ContainsFunc(st.Transitions, func(tr string) bool { return strings.HasPrefix(tr, "call-state=connected@") }) {
			t.Errorf("the page never showed connected: %s", st)
		}
	})

	t.Run("no SIP from the LAN to port 5060", func(t *testing.T) {
		if n := r.counter(s, "sip5060") - base; n > 0 {
			t.Errorf("%d packets went from the LAN to port 5060 on the public side (all dropped by the router): the hop L → P must run over the overlay's own connection", n)
		}
	})
	t.Logf("TestReachBrowserOnLAN took %s", time.Since(start).Round(time.Millisecond))
}

// rbCaller runs carol's calls to alice@atlanta.example and watches the page.
type rbCaller struct {
	t     *testing.T
	r     *rnet
	pub   *pubSide
	peers []*peer
	a     *tab
}

// rbCall is one finished call.
type rbCall struct {
	res        pxSippResult
	rang, took time.Duration // the page rang / carol's sipp ended, after the start
	logs       []string
}

// call runs carol's scenario and polls the page while it runs: onRing runs
// once, when the page first shows incoming. It reports whether it rang.
func (c *rbCaller) call(t *testing.T, scenario string, port int, onRing func(phoneState)) (rbCall, bool) {
	t.Helper()
	before := make([]string, len(c.peers))
	for i, p := range c.peers {
		before[i] = p.stderr.String()
	}
	start := time.Now()
	e := &pxEnv{ns: c.r.wrap("pub")}
	uac := e.startSipp(t, pxSippOpts{name: "carol: " + strings.TrimSuffix(scenario, ".xml"), scenario: reachScenario(scenario),
		ip: rPubCar, port: port, remote: pxAddr(rPubKam, 5060), service: rbPublic, timeout: rbCallWait,
		keys: map[string]string{"callee_domain": rPublic, "from_aor": rbCarol}})
	var out rbCall
	rang := false
	for uac.running() {
		st, err := evalErr[phoneState](c.a, phoneStateJS)
		if err == nil && st.Call == "incoming" && !rang {
			rang = true
			out.rang = time.Since(start)
			if onRing != nil {
				onRing(st)
			}
		}
		time.Sleep(browserPoll)
	}
	out.res = uac.wait()
	out.took = time.Since(start)
	if out.res.Code != 0 || !rang {
		for i, p := range c.peers {
			out.logs = append(out.logs, p.Name+" logged during the call:\n"+logSince(p, before[i]))
		}
	}
	return out, rang
}

// explain is what a failed call leaves to read: carol's messages, the
// peers' notable log lines, what Kamailio got, the page's state.
func (c *rbCaller) explain(res rbCall) string {
	var b strings.Builder
	fmt.Fprintf(&b, "path: carol → Kamailio (alice@%s → sip:%s) → DNS %s → P → DHT → stream → L → WebSocket → the page", rPublic, rbAOR, rOverlay)
	for _, l := range res.logs {
		fmt.Fprintf(&b, "\n=== %s", l)
	}
	fmt.Fprintf(&b, "\n=== %s", c.pub.kamSummary())
	if st, err := evalErr[phoneState](c.a, phoneStateJS); err == nil {
		fmt.Fprintf(&b, "\n=== the page: %s", st)
	}
	fmt.Fprintf(&b, "\n=== carol:\n%s", res.res)
	return b.String()
}

// rbFinal is the first final response (≥ 200) carol received for her
// INVITE, its start line ("" if none).
func rbFinal(r pxSippResult) string {
	for _, m := range pxAllReceived(r.Msgs, "SIP/2.0 ") {
		f := strings.Fields(m)
		if len(f) > 1 && f[1] >= "200" && !slices.ContainsFunc(pxHeaders(m, "CSeq", ""), func(v string) bool { return strings.Contains(v, "CANCEL") }) {
			line, _, _ := strings.Cut(m, "\n")
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// rbSentAt is the time sipp's -trace_msg log stamps on the first message
// sent whose start line begins with prefix (local time, microseconds).
func rbSentAt(log, prefix string) (time.Time, bool) {
	for _, block := range strings.Split("\n"+log, "\n----------------------------------------------- ") {
		stamp, rest, ok := strings.Cut(block, "\n")
		if !ok {
			continue
		}
		head, body, ok := strings.Cut(rest, "\n")
		if !ok || !strings.Contains(head, "message sent") || !strings.HasPrefix(strings.TrimLeft(body, "\r\n"), prefix) {
			continue
		}
		at, err := time.ParseInLocation(rbSippTime, strings.TrimSpace(stamp), time.Local)
		if err != nil {
			return time.Time{}, false
		}
		return at, true
	}
	return time.Time{}, false
}
