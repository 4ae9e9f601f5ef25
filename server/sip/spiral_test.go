package sip

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestSpiralNotLoop: two users of this peer in a call through another
// proxy (this peer, Kamailio, this peer again) share one route set: an
// in-dialog BYE passes this peer twice with different remaining Routes.
// That is a spiral (§16.3 step 4): the second pass is forwarded, not
// answered 482. The same request coming back once more is a loop.
func TestSpiralNotLoop(t *testing.T) {
	ts := newTestService(t, nil)
	const kam = "<sip:192.0.2.50:5060;lr>"
	bye := func(routes ...string) *sip.Request {
		lines := []string{"BYE sip:bob@127.0.0.9:5090 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-bye",
			"Max-Forwards: 70", "From: <sip:alice@" + testDomain + ">;tag=abc", "To: <sip:bob@example.com>;tag=xyz",
			"Call-ID: spiral-1", "CSeq: 2 BYE"}
		for _, r := range routes {
			lines = append(lines, "Route: "+r)
		}
		return parse(t, append(lines, "Content-Length: 0")...)
	}
	selfURI := ts.recordRouteURI(bye(), "udp")
	self := "<" + selfURI.String() + ">"

	// First pass: [this peer, Kamailio, this peer] → on to Kamailio.
	if c := codes(ts.handle(bye(self, kam, self))); len(c) == 0 || c[len(c)-1] != 200 {
		t.Fatalf("first pass: %v", c)
	}
	fw := ts.forwarded.Requests()
	if len(fw) != 1 || fw[0].Route() == nil || fw[0].Route().Address.Host != "192.0.2.50" {
		t.Fatalf("first pass forwarded %d, route %v", len(fw), fw)
	}
	// Kamailio removes its Route and adds its Via: the second pass.
	second := fw[0].Clone()
	second.RemoveHeader("Route") // Kamailio's
	second.PrependHeader(hopVia("192.0.2.50", "z9hG4bK-kam1"))
	second.SetSource("192.0.2.50:5060")
	if r := second.Route(); r == nil || !ts.isSelf(r.Address) {
		t.Fatalf("second pass should carry this peer's Route: %s", second)
	}
	if ts.looped(second) {
		t.Fatal("spiral taken for a loop")
	}
	if c := codes(ts.handle(second)); len(c) == 0 || c[len(c)-1] != 200 {
		t.Fatalf("second pass: %v (want 200, not 482)", c)
	}
	fw = ts.forwarded.Requests()
	if len(fw) != 2 || fw[1].Recipient.Host != "127.0.0.9" {
		t.Fatalf("second pass not forwarded to the callee: %d", len(fw))
	}

	// The second pass's copy coming back unchanged is a loop, though this
	// peer removed its own Route from it.
	back := fw[1].Clone()
	back.PrependHeader(hopVia("192.0.2.60", "z9hG4bK-x1"))
	if c := codes(ts.handle(back)); len(c) == 0 || c[len(c)-1] != 482 {
		t.Fatalf("loop after the spiral: %v, want 482", c)
	}
	// And so is the first pass coming back with its route set intact.
	again := fw[0].Clone()
	again.PrependHeader(&sip.RouteHeader{Address: ts.recordRouteURI(bye(), "udp")})
	again.PrependHeader(hopVia("192.0.2.60", "z9hG4bK-x2"))
	if !ts.looped(again) {
		t.Fatal("first pass coming back not taken for a loop")
	}
}

// hopVia is the Via another element at host:5060 puts on top.
func hopVia(host, branch string) *sip.ViaHeader {
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host, Port: 5060, Params: sip.NewParams()}
	v.Params.Add("branch", branch)
	return v
}
