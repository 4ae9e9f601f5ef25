//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The softphone's optional public SIP account, end to end: the page in
// Chromium registers alice@atlanta.example at Kamailio through its home
// peer H and the overlay's proxy peer P, with the overlay alias
// <name>-pub@overlay.example as Contact; a public caller reaches the page
// through Kamailio → DNS → P → H; the page calls a public user through H → P
// → Kamailio. Kamailio, dnsmasq, P, H, sipp and Chromium all run in the
// browser suite's namespace (lo + a private veth pair), with the addresses
// of proxy_test.go.

const (
	bpName     = "alice"                      // the page's overlay name
	bpAlias    = "sip:alice-pub@" + pxOverlay // the alias the page registers as Contact
	bpPassword = "alicepw"                    // kamailio.cfg's password for alice
	bpBadPw    = "not-alices-password"
	bpPublic   = "alice@" + pxPublic
	// bpProxyWait bounds how long H may take to find the proxy for its
	// /api/config (the answer is cached 30 s either way).
	bpProxyWait = 75 * time.Second
)

// waitPublicProxy waits until h's /api/config says a proxy is known: the
// page offers calls to other domains and the public account only then.
func waitPublicProxy(t *testing.T, h *peer) {
	t.Helper()
	eventually(t, bpProxyWait, time.Second, h.Name+"'s /api/config says publicProxy", func() (bool, string) {
		code, body := get(t, h.URL+"/api/config")
		var cfg struct {
			PublicProxy bool `json:"publicProxy"`
		}
		return code == http.StatusOK && json.Unmarshal(body, &cfg) == nil && cfg.PublicProxy, fmt.Sprintf("%d %s", code, body)
	})
}

// pubState is what the page shows of its public account.
type pubState struct {
	State      string `json:"state"`
	StateText  string `json:"stateText"`
	Err        string `json:"err"`
	ErrVisible bool   `json:"errVisible"`
	Disabled   bool   `json:"disabled"`
	Account    string `json:"account"`
	AccountTxt string `json:"accountText"`
	CallState  string `json:"callState"`
	PeerName   string `json:"peerName"`
}

const pubStateJS = `(() => {
  const q = s => document.querySelector(s);
  const e = q('#pub-error'), ca = q('#call-account');
  return {
    state: q('#pub-state').getAttribute('data-state') || '', stateText: q('#pub-state').textContent.trim(),
    err: e ? e.textContent.trim() : '', errVisible: !!e && !e.hidden && e.getClientRects().length > 0,
    disabled: q('#pub-register').disabled,
    account: ca ? (ca.getAttribute('data-account') || '') : '', accountText: ca && !ca.hidden ? ca.textContent.trim() : '',
    callState: q('#call-state').getAttribute('data-state') || '', peerName: q('#peer-name').textContent.trim(),
  };
})()`

func (s pubState) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (tb *tab) waitPub(t *testing.T, what string, cond func(pubState) bool) pubState {
	t.Helper()
	deadline := time.Now().Add(browserWait)
	var last pubState
	for {
		st, err := evalErr[pubState](tb, pubStateJS)
		if err == nil {
			if cond(st) {
				return st
			}
			last = st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: not within %s; last: %s (read error %v)", tb.name, what, browserWait, last, err)
		}
		time.Sleep(browserPoll)
	}
}

// TestBrowserPublicAccount: see the comment at the top of this file.
func TestBrowserPublicAccount(t *testing.T) {
	if os.Getenv(browserInNetnsEnv) != "1" {
		pxRequireTools(t)
		runBrowserSuiteInNetns(t, "TestBrowserPublicAccount", func(ns string) { pxWriteResolvConf(t, ns) })
		return
	}
	e := pxSetupHere(t)

	// The page offers the public account only when H knows a proxy.
	waitPublicProxy(t, e.H)

	b := newBrowser(t, "A")
	a := b.open(t, "A", e.H.URL+"/")
	a.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
		return st.Name != "" && !slices.Contains(st.Missing, "#join")
	})
	a.typeInto(t, "#name", bpName)
	a.click(t, "#join")
	a.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" })
	a.click(t, "#public > summary") // open the panel
	a.waitPub(t, "the public account form is enabled", func(st pubState) bool { return !st.Disabled })

	steps := []struct {
		name string
		run  func(*testing.T, *pxEnv, *tab)
	}{
		{"wrong-password", bpWrongPassword},
		{"register", bpRegister},
		{"inbound-call", bpInboundCall},
		{"inbound-plain-rtp", bpInboundPlainRTP},
		{"outbound-call", bpOutboundCall},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, e, a) }) && s.name == "register" {
			t.Fatal("the public account did not register: the call steps need it")
		}
	}
	if t.Failed() {
		t.Logf("Kamailio saw (tail):\n%s", pxTail(e.kamLog(), 20000))
	}
}

// bpSubmit fills the public account form and submits it.
func bpSubmit(t *testing.T, a *tab, password string) {
	t.Helper()
	a.typeInto(t, "#pub-uri", bpPublic)
	a.typeInto(t, "#pub-password", password)
	a.click(t, "#pub-register")
}

// bpWrongPassword: Kamailio challenges, the page answers with the wrong
// password, Kamailio challenges again: the page shows a clear error and
// stops. The password itself goes nowhere.
func bpWrongPassword(t *testing.T, e *pxEnv, a *tab) {
	before := len(e.kamRequests("REGISTER "))
	bpSubmit(t, a, bpBadPw)
	st := a.waitPub(t, "#pub-state failed with a visible #pub-error", func(st pubState) bool {
		return st.State == "failed" && st.ErrVisible
	})
	t.Logf("wrong password: #pub-state %q, #pub-error %q", st.StateText, st.Err)
	if !strings.Contains(strings.ToLower(st.Err), "password") {
		t.Errorf("#pub-error %q does not say the user name or password is wrong", st.Err)
	}
	regs := e.kamRequests("REGISTER ")[before:]
	if len(regs) < 2 {
		t.Errorf("Kamailio got %d REGISTERs for the wrong password: want the first and the answer to its challenge", len(regs))
	}
	bpCheckCredentials(t, e, regs, bpBadPw)
	// The page stopped: no further REGISTER a while later.
	time.Sleep(2 * time.Second)
	if n := len(e.kamRequests("REGISTER ")); n != before+len(regs) {
		t.Errorf("the page kept registering after the wrong password: %d REGISTERs at Kamailio, %d when it failed", n-before, len(regs))
	}
}

// bpRegister: the right password: Kamailio's location has the alias, the
// overlay has the alias's binding on H.
func bpRegister(t *testing.T, e *pxEnv, a *tab) {
	before := len(e.kamRequests("REGISTER "))
	start := time.Now()
	bpSubmit(t, a, bpPassword)
	a.waitPub(t, "#pub-state registered, #pub-error hidden", func(st pubState) bool {
		return st.State == "registered" && !st.ErrVisible
	})
	t.Logf("public account registered %s after the click", time.Since(start).Round(time.Millisecond))

	out, err := e.kamcmd(t, "ul.dump")
	if err != nil {
		t.Fatalf("kamcmd ul.dump: %v\n%s", err, out)
	}
	if !strings.Contains(out, "AoR: alice") || !strings.Contains(out, bpAlias) {
		t.Errorf("Kamailio's location has no alice → %s:\n%s", bpAlias, out)
	}
	regs := e.kamRequests("REGISTER ")[before:]
	if len(regs) < 2 {
		t.Fatalf("Kamailio got %d REGISTERs: want the first and the answer to its 401", len(regs))
	}
	bpCheckCredentials(t, e, regs, bpPassword)
	for _, req := range regs {
		if !pxFromProxySocket(req) {
			t.Errorf("the REGISTER did not come from the proxy's SIP socket %s:\n%s", pxAddr(pxProxyIP, pxSIPPort), req)
		}
		if low := strings.ToLower(req); strings.Contains(low, strings.ToLower(ownerHeaderName)) || strings.Contains(low, "p-p2psip-sender") {
			t.Errorf("the REGISTER Kamailio got carries an overlay header:\n%s", req)
		}
		if cs := pxHeaders(strings.SplitN(req, "\n", 2)[1], "Contact", "m"); len(cs) != 1 || !strings.Contains(cs[0], bpAlias) {
			t.Errorf("the REGISTER Kamailio got has Contact %q, want <%s>:\n%s", cs, bpAlias, req)
		}
	}
	code, reg, body := record(t, e.H, bpAlias)
	if code != http.StatusOK || len(reg.Bindings) == 0 {
		t.Errorf("H: the alias %s has no live binding in the overlay: %d %s", bpAlias, code, body)
	}
}

const ownerHeaderName = "P-P2PSIP-Owner"

// bpCheckCredentials: the REGISTERs after the challenge carry a digest
// response, and the password appears in nothing Kamailio received nor in
// anything the peers logged.
func bpCheckCredentials(t *testing.T, e *pxEnv, regs []string, password string) {
	t.Helper()
	digest := regexp.MustCompile(`(?mi)^Authorization:\s*Digest\s.*username="alice".*response="[0-9a-f]{32}"`)
	n := 0
	for _, req := range regs {
		if digest.MatchString(req) {
			n++
		}
	}
	if n == 0 {
		t.Errorf("no REGISTER at Kamailio carries an Authorization: Digest with a response:\n%s", strings.Join(regs, "\n\n"))
	}
	if strings.Contains(e.kamLog(), password) {
		t.Errorf("the password %q appears in what Kamailio received", password)
	}
	for _, p := range []*peer{e.P, e.H} {
		if strings.Contains(p.stdout.String(), password) || strings.Contains(p.stderr.String(), password) {
			t.Errorf("the password %q appears in %s's log", password, p.Name)
		}
	}
}

// bpInboundCall: a public caller calls alice@atlanta.example at Kamailio:
// Kamailio → overlay.example (DNS) → P → the alias in the overlay → H → the
// page's public UA, which rings; answering gives the caller 200, the caller
// hangs up after a moment.
func bpInboundCall(t *testing.T, e *pxEnv, a *tab) {
	uac := e.startSipp(t, pxSippOpts{name: "public caller", scenario: "uac_webrtc.xml", ip: pxCallerIP, port: 5090,
		remote: pxAddr(pxKamIP, 5060), service: "alice", timeout: 40 * time.Second})
	st := a.waitCall(t, "incoming")
	ps := a.waitPub(t, "the page shows which account is called", func(ps pubState) bool { return ps.Account != "" })
	t.Logf("incoming: #peer-name %q, #call-account %q (%s)", st.PeerName, ps.AccountTxt, ps.Account)
	if !strings.Contains(st.PeerName, "Public Caller") {
		t.Errorf("#peer-name = %q, want the caller's display name", st.PeerName)
	}
	if ps.Account != "public" || !strings.Contains(ps.AccountTxt, bpPublic) {
		t.Errorf("#call-account = %q (data-account %q): want the public account %s", ps.AccountTxt, ps.Account, bpPublic)
	}
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	a.waitCall(t, "ended", "idle") // the caller's BYE
	r := uac.wait()
	if r.Code != 0 {
		t.Fatalf("the public caller's call did not complete:\n%s", r)
	}
	ok := pxFirstReceived(r.Msgs, "SIP/2.0 200")
	rrs := pxHeaders(ok, "Record-Route", "")
	if !pxHasRR(rrs, pxProxyIP) || !pxHasRR(rrs, pxHomeIP) {
		t.Errorf("the caller's 200 lacks the Record-Route of P or H (p2pd=): %q\n%s", rrs, ok)
	}
	if b := strings.SplitN(ok, "\r\n\r\n", 2); len(b) < 2 || !strings.Contains(b[1], "a=fingerprint") {
		t.Errorf("the caller's 200 has no WebRTC answer:\n%s", ok)
	}
	a.waitCall(t, "idle")
}

// bpInboundPlainRTP: what a real public caller offers (plain RTP/AVP, no
// ICE, no DTLS) reaches the page through H's media bridge: the page rings
// with a WebRTC offer, answers, and the caller's 200 carries a plain
// RTP/AVP answer (no fingerprint) with an address of H's; the caller's BYE
// ends the call and the account stays registered.
func bpInboundPlainRTP(t *testing.T, e *pxEnv, a *tab) {
	uac := e.startSipp(t, pxSippOpts{name: "public caller (plain RTP)", scenario: "uac_rr.xml", ip: pxCallerIP, port: 5091,
		remote: pxAddr(pxKamIP, 5060), service: "alice", timeout: 40 * time.Second,
		// Without a pause sipp hangs up 50 ms after its ACK: the page is
		// connected for less than one poll and the wait below misses it.
		hold: 3 * time.Second})
	a.waitCall(t, "incoming")
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	a.waitCall(t, "ended", "idle") // the caller's BYE
	r := uac.wait()
	if r.Code != 0 {
		t.Fatalf("the plain RTP caller's call did not complete:\n%s", r)
	}
	ok := pxFirstReceived(r.Msgs, "SIP/2.0 200")
	body := ""
	if b := strings.SplitN(ok, "\r\n\r\n", 2); len(b) == 2 {
		body = b[1]
	}
	t.Logf("the plain caller's answer:\n%s", body)
	if !strings.Contains(body, "RTP/AVP 0") || strings.Contains(body, "a=fingerprint") || strings.Contains(body, "a=ice-ufrag") {
		t.Errorf("the caller's 200 does not carry a plain RTP/AVP PCMU answer from the bridge:\n%s", ok)
	}
	a.waitCall(t, "idle")
	if ps := evalIn[pubState](t, a, pubStateJS); ps.State != "registered" {
		t.Errorf("#pub-state %q after the bridged call, want registered", ps.State)
	}
}

// bpOutboundCall: bob registers at Kamailio; the page calls
// bob@atlanta.example as its public account: H → P → Kamailio → bob, who
// answers; the page hangs up.
func bpOutboundCall(t *testing.T, e *pxEnv, a *tab) {
	reg := e.runSipp(t, pxSippOpts{name: "register bob at Kamailio", scenario: "register.xml", ip: pxBobIP, port: 5080,
		remote: pxAddr(pxKamIP, 5060), csv: "bob;" + pxPublic, au: "bob", ap: "bobpw"})
	if reg.Code != 0 {
		t.Fatalf("bob's REGISTER at Kamailio failed:\n%s", reg)
	}
	// bob is an ordinary phone (plain RTP/AVP): H bridges the page's call.
	uas := e.startSipp(t, pxSippOpts{name: "UAS bob", scenario: "uas_rr.xml", ip: pxBobIP, port: 5080, timeout: 40 * time.Second})
	e.waitListening(t, "udp", pxAddr(pxBobIP, 5080), uas.running)

	if !evalIn[bool](t, a, `(() => { const s = document.querySelector('#from');
	  if (!s || ![...s.options].some(o => o.value === 'public')) return false;
	  s.value = 'public'; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`) {
		t.Fatalf("no 'public' choice in #from while the public account is registered")
	}
	a.typeInto(t, "#dial", "bob@"+pxPublic)
	a.click(t, "#call")
	st := a.waitCall(t, "connected")
	ps := evalIn[pubState](t, a, pubStateJS)
	t.Logf("outbound: #peer-name %q, #call-account %q (%s)", st.PeerName, ps.AccountTxt, ps.Account)
	if ps.Account != "public" {
		t.Errorf("#call-account data-account %q in a call as the public account", ps.Account)
	}
	a.click(t, "#hangup")
	a.waitCall(t, "ended", "idle")
	ur := uas.wait()
	if ur.Code != 0 {
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
		t.Fatalf("bob's UAS did not complete the call:\n%s", ur)
	}
	inv := pxFirstReceived(ur.Msgs, "INVITE ")
	t.Logf("bob got:\n%s", inv)
	if from := pxHeaders(inv, "From", "f"); len(from) == 0 || !strings.Contains(from[0], "sip:"+bpPublic) {
		t.Errorf("bob's INVITE is From %q, want the public account %s", from, bpPublic)
	}
	rrs := pxHeaders(inv, "Record-Route", "")
	if !pxHasRR(rrs, pxProxyIP) || !pxHasRR(rrs, pxHomeIP) {
		t.Errorf("bob's INVITE lacks the Record-Route of P or H (p2pd=): %q", rrs)
	}
	for _, h := range []string{"p-p2psip-sender", strings.ToLower(ownerHeaderName)} {
		if strings.Contains(strings.ToLower(inv), h) {
			t.Errorf("bob's INVITE carries %s:\n%s", h, inv)
		}
	}
}
