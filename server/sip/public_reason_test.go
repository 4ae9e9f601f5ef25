package sip

import (
	"context"
	"strings"
	"testing"
)

// TestPublicTargetsReason: a request for another domain from a source no
// device registered from gets a 403 that says so, not the 503 "no proxy"
// meant for an overlay without a proxy peer. relayRegister keeps turning
// only the real "no proxy" into its 403.
func TestPublicTargetsReason(t *testing.T) {
	ts := newTestService(t, nil)
	var proxies []string
	ts.cfg.FindProxy = func(context.Context) ([]string, error) { return proxies, nil }
	proxies = []string{otherPeer}
	if c := codes(ts.handle(parse(t, register("alice", "<sip:alice@127.0.0.1:5099>")...))); c[len(c)-1] != 200 {
		t.Fatalf("register: %v", c)
	}
	call := func(source string) []string {
		req := parse(t, invite("sip:carol@atlanta.example", "Max-Forwards: 70")...)
		req.SetSource(source)
		res := last(t, ts.handle(req))
		return []string{res.StartLine(), res.Reason}
	}
	// From the registered flow: handed to the proxy.
	if got := call("127.0.0.1:5099"); !strings.Contains(got[0], " 200 ") {
		t.Fatalf("registered device: %v", got)
	}
	if n := len(ts.forwarded.Requests()); n != 1 {
		t.Fatalf("%d requests forwarded, want 1", n)
	}
	// From another port of the same host: not the device's flow.
	got := call("127.0.0.1:6000")
	if !strings.Contains(got[0], " 403 ") || got[1] != notRegisteredReason {
		t.Fatalf("unregistered source: %v, want 403 %q", got, notRegisteredReason)
	}
	// No proxy in the overlay: still 503, for the registered device.
	proxies = nil
	if got := call("127.0.0.1:5099"); !strings.Contains(got[0], " 503 ") || got[1] != noProxyReason {
		t.Fatalf("no proxy: %v", got)
	}
	if n := len(ts.forwarded.Requests()); n != 1 {
		t.Fatalf("%d requests forwarded, want 1", n)
	}

	// A public REGISTER (relayRegister) from an unregistered source hears
	// why; with no proxy it hears the registrar's 403.
	pubReg := func(source string) (int, string) {
		req := parse(t, "REGISTER sip:atlanta.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-pr"+source,
			"Max-Forwards: 70", "From: <sip:alice@atlanta.example>;tag=1", "To: <sip:alice@atlanta.example>",
			"Call-ID: pubreg-"+source, "CSeq: 1 REGISTER", "Contact: <sip:alice@127.0.0.1:6000>", "Content-Length: 0")
		req.SetSource(source)
		res := last(t, ts.handle(req))
		return res.StatusCode, res.Reason
	}
	proxies = []string{otherPeer}
	if code, reason := pubReg("127.0.0.1:6000"); code != 403 || reason != notRegisteredReason {
		t.Fatalf("public REGISTER from an unregistered source: %d %s", code, reason)
	}
	proxies = nil
	if code, reason := pubReg("127.0.0.1:5099"); code != 403 || !strings.Contains(reason, "no P2P SIP proxy to relay it") {
		t.Fatalf("public REGISTER with no proxy: %d %s", code, reason)
	}
}
