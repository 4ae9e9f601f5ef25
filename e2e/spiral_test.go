//go:build e2e

package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// The spiral of issue 10 §4: two phones registered at ONE proxy peer P
// (P is their home peer and the overlay's proxy) call each other by their
// public addresses. The call's route passes P twice, P → Kamailio → P, and
// so does every request inside the dialog: RFC 3261 §16.3 step 4 calls
// that a spiral, not a loop, and a 482 Loop Detected on the second pass
// broke hold and hang-up. See proxy_test.go for the namespace (dnsmasq,
// Kamailio, the peers P and H, sipp).

// spiralPhone is a sipp phone registered at P as <overlay>@overlay.example,
// with the public account <user>@atlanta.example at Kamailio whose contact
// is its overlay AOR.
type spiralPhone struct {
	user, overlay, password string
	ip                      string
	port                    int
}

func (ph spiralPhone) overlayAOR() string { return ph.overlay + "@" + pxOverlay }

// registerAtProxy registers the phone's overlay AOR at P, then its public
// AOR at Kamailio through P (the digest answered by the phone), both from
// the phone's ip:port: P knows its devices by their flows.
func (e *pxEnv) registerAtProxy(t *testing.T, ph spiralPhone) {
	t.Helper()
	r := e.runSipp(t, pxSippOpts{name: "register " + ph.overlayAOR() + " at P", scenario: "register.xml",
		ip: ph.ip, port: ph.port, remote: pxAddr(pxProxyIP, pxSIPPort), csv: ph.overlay + ";" + pxOverlay})
	if r.Code != 0 {
		t.Fatalf("registering %s at P from %s:%d failed:\n%s", ph.overlayAOR(), ph.ip, ph.port, r)
	}
	r = e.runSipp(t, pxSippOpts{name: "register " + ph.user + "@" + pxPublic + " via P", scenario: "register_public.xml",
		ip: ph.ip, port: ph.port, remote: pxAddr(pxProxyIP, pxSIPPort), csv: ph.user + ";" + pxPublic,
		keys: map[string]string{"contact": ph.overlayAOR()}, au: ph.user, ap: ph.password})
	if r.Code != 0 {
		t.Fatalf("public REGISTER of %s@%s via P failed:\n%s", ph.user, pxPublic, r)
	}
}

// TestProxySpiral: alice1 and bob1 are registered at the proxy peer P, and
// Kamailio has alice@ and bob@atlanta.example → their overlay AORs. One
// calls the other's public AOR: P relays to Kamailio, whose location and
// DNS (overlay.example → P) send the call back to P, which delivers it to
// the callee. INFO and a hold re-INVITE each way, then BYE (from the
// caller in one call, from the callee in the other) must all get their
// 200: none may be taken for a loop.
func TestProxySpiral(t *testing.T) {
	e := pxSetup(t)
	alice := spiralPhone{user: "alice", overlay: "alice1", password: "alicepw", ip: pxUAIP, port: 5070}
	bob := spiralPhone{user: "bob", overlay: "bob1", password: "bobpw", ip: "127.0.0.21", port: 5071}
	e.registerAtProxy(t, alice)
	e.registerAtProxy(t, bob)
	out, err := e.kamcmd(t, "ul.dump")
	if err != nil || !strings.Contains(out, "sip:"+alice.overlayAOR()) || !strings.Contains(out, "sip:"+bob.overlayAOR()) {
		t.Fatalf("Kamailio's location lacks sip:%s or sip:%s (%v):\n%s", alice.overlayAOR(), bob.overlayAOR(), err, out)
	}

	t.Run("alice-calls-bob/bye-from-caller", func(t *testing.T) { e.spiralCall(t, alice, bob, "caller") })
	t.Run("bob-calls-alice/bye-from-callee", func(t *testing.T) { e.spiralCall(t, bob, alice, "callee") })
}

// spiralCall runs uac_spiral.xml at caller against uas_spiral.xml at
// callee, the BYE sent by byeBy (caller or callee), and checks that the
// call and its in-dialog requests took the spiral P → Kamailio → P.
func (e *pxEnv) spiralCall(t *testing.T, caller, callee spiralPhone, byeBy string) {
	start := time.Now()
	keys := map[string]string{"bye_by": byeBy}
	uas := e.startSipp(t, pxSippOpts{name: "UAS " + callee.overlay, scenario: "uas_spiral.xml",
		ip: callee.ip, port: callee.port, keys: keys, timeout: 40 * time.Second})
	e.waitListening(t, "udp", pxAddr(callee.ip, callee.port), uas.running)

	uac := e.runSipp(t, pxSippOpts{name: caller.overlay + " calls " + callee.user + "@" + pxPublic, scenario: "uac_spiral.xml",
		ip: caller.ip, port: caller.port, remote: pxAddr(pxProxyIP, pxSIPPort), service: callee.user,
		keys:    map[string]string{"bye_by": byeBy, "callee_domain": pxPublic, "from_aor": caller.overlayAOR()},
		timeout: 30 * time.Second})
	if uac.Code != 0 {
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
	}
	ur := uas.wait()
	took := time.Since(start).Round(time.Millisecond)
	if uac.Code != 0 {
		t.Errorf("%s → %s@%s (BYE from the %s): the caller's scenario failed:\n%s", caller.overlay, callee.user, pxPublic, byeBy, uac)
	}
	if ur.Code != 0 {
		t.Errorf("%s → %s@%s (BYE from the %s): the callee's scenario failed:\n%s", caller.overlay, callee.user, pxPublic, byeBy, ur)
	}
	for who, r := range map[string]pxSippResult{"caller": uac, "callee": ur} {
		for _, m := range pxMessages(r.Msgs) {
			if m.received && strings.HasPrefix(m.text, "SIP/2.0 482") {
				t.Errorf("the %s got 482 Loop Detected: the spiral through P was taken for a loop:\n%s", who, m.text)
			}
		}
	}
	if t.Failed() {
		t.Logf("Kamailio saw (in-dialog requests):\n%s", strings.Join(append(append(e.kamRequests("INFO "), e.kamRequests("BYE ")...), e.kamRequests("ACK ")...), "\n\n"))
		return
	}

	// The callee's INVITE crossed P twice and Kamailio once: P's
	// Record-Route twice, Kamailio's once.
	inv := pxFirstReceived(ur.Msgs, "INVITE ")
	rrs := pxHeaders(inv, "Record-Route", "")
	nP, nKam := 0, 0
	for _, rr := range rrs {
		if strings.Contains(rr, "sip:"+pxProxyIP+":") && strings.Contains(rr, "p2pd=") {
			nP++
		}
		if strings.Contains(rr, pxKamIP) {
			nKam++
		}
	}
	if nP < 2 || nKam < 1 {
		t.Errorf("the callee's INVITE should carry P's Record-Route twice and Kamailio's once (a spiral), has %d and %d: %q\n%s", nP, nKam, rrs, inv)
	}

	// Every in-dialog request went through Kamailio, so passed P twice.
	callID := strings.Join(pxHeaders(inv, "Call-ID", "i"), "")
	for _, c := range []struct {
		start string
		want  int
	}{
		{"INFO ", 2},   // one each way
		{"INVITE ", 3}, // the call, and a hold each way
		{"BYE ", 1},
	} {
		n := 0
		for _, req := range e.kamRequests(c.start) {
			if callID != "" && strings.Contains(req, callID) {
				n++
			}
		}
		if n < c.want {
			t.Errorf("Kamailio saw %d %srequests of call %s, want %d: the in-dialog requests did not take the spiral", n, c.start, callID, c.want)
		}
	}
	// The holds reached the other phone with their direction attribute.
	for who, r := range map[string]pxSippResult{"caller": uac, "callee": ur} {
		invs := pxAllReceived(r.Msgs, "INVITE ")
		if len(invs) == 0 || !strings.Contains(invs[len(invs)-1], "a=sendonly") {
			t.Errorf("the %s got no hold re-INVITE with a=sendonly (%d INVITEs)", who, len(invs))
		}
	}
	t.Logf("%s → %s@%s → %s, INFO and hold each way, BYE from the %s: %s; the callee's Record-Route: %q",
		caller.overlayAOR(), callee.user, pxPublic, callee.overlayAOR(), byeBy, took, rrs)
}
