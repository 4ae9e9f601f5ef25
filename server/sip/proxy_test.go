package sip

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestRequestErrors(t *testing.T) {
	ts := newTestService(t, nil)
	ts.loc.regs["sip:gone@"+testDomain] = nil
	ts.handle(parse(t, register("gone", "<sip:gone@127.0.0.1:5099>")...))
	ts.handle(parse(t, register("gone", "<sip:gone@127.0.0.1:5099>", "Expires: 0")...))
	for name, c := range map[string]struct {
		req  []string
		want int
	}{
		"unknown AOR":     {invite("sip:nobody@" + testDomain), 404},
		"no live binding": {invite("sip:gone@" + testDomain), 480},
		"max-forwards 0":  {invite("sip:nobody@"+testDomain, "Max-Forwards: 0"), 483},
		"other domain":    {invite("sip:x@other.example"), 503},
		"foreign route":   {invite("sip:x@other.example", "Route: <sip:192.0.2.1;lr>"), 403},
		"self, no user":   {invite("sip:127.0.0.1:5060"), 404},
	} {
		t.Run(name, func(t *testing.T) {
			if got := last(t, ts.handle(parse(t, c.req...))).StatusCode; got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
			if n := len(ts.forwarded.Requests()); n != 0 {
				t.Fatalf("%d requests left the peer", n)
			}
		})
	}
	opts := parse(t, "OPTIONS sip:127.0.0.1:5060 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-o",
		"From: <sip:a@b>;tag=1", "To: <sip:127.0.0.1:5060>", "Call-ID: o", "CSeq: 1 OPTIONS", "Content-Length: 0")
	if res := last(t, ts.handle(opts)); res.StatusCode != 200 || res.GetHeader("Allow") == nil {
		t.Fatalf("OPTIONS: %s", res)
	}
	// Another address of this machine is this peer too.
	ts.cfg.Aliases = []string{"192.0.2.77"}
	opts.Recipient.Host = "192.0.2.77"
	if res := last(t, ts.handle(opts)); res.StatusCode != 200 {
		t.Fatalf("OPTIONS to an alias: %s", res)
	}
}

// TestForwardToOtherPeer: a binding hosted by another peer is reached
// along its Path, with this peer's Record-Route and Via.
func TestForwardToOtherPeer(t *testing.T) {
	ts := newTestService(t, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	res := ts.handle(parse(t, invite("sip:bob@"+testDomain, "Max-Forwards: 70")...))
	if c := codes(res); len(c) != 2 || c[0] != 100 || c[1] != 200 {
		t.Fatalf("responses %v", c)
	}
	if v := res[1].Via(); v == nil || v.Host != "127.0.0.1" || v.Port != 5099 {
		t.Fatalf("relayed 200 kept this peer's Via: %s", res[1])
	}
	fw := ts.forwarded.Requests()
	if len(fw) != 1 {
		t.Fatalf("%d requests forwarded", len(fw))
	}
	out := fw[0]
	if out.Recipient.String() != "sip:bob@127.0.0.9:5090" || out.Route().Address.Host != "127.0.0.8" {
		t.Fatalf("forwarded to %s via %v", out.Recipient.String(), out.Route())
	}
	rr := out.RecordRoute()
	if rr == nil || rr.Address.Host != "127.0.0.1" || !rr.Address.UriParams.Has("lr") || !rr.Address.UriParams.Has(dialogTokenParam) {
		t.Fatalf("record-route: %v", rr)
	}
	if out.MaxForwards().Val() != 69 || !strings.HasPrefix(out.Via().Params.GetOr("branch", ""), branchMagic) {
		t.Fatalf("max-forwards %d, via %s", out.MaxForwards().Val(), out.Via())
	}
	// The request coming back unchanged is a loop (§16.3 step 4).
	back := out.Clone()
	back.RemoveHeader("Route")
	back.Recipient = sip.Uri{Scheme: "sip", User: "bob", Host: testDomain}
	if !ts.looped(back) {
		t.Fatal("loop not detected")
	}
}

// TestInDialogNeedsToken: a BYE is relayed along its route set only when
// the Route to this peer carries the token this peer put in its
// Record-Route for that Call-ID.
func TestInDialogNeedsToken(t *testing.T) {
	ts := newTestService(t, nil)
	bye := func(route string) *sip.Request {
		return parse(t, "BYE sip:bob@127.0.0.9:5090 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-bye",
			"From: <sip:caller@"+testDomain+">;tag=abc", "To: <sip:bob@"+testDomain+">;tag=xyz", "Call-ID: call-1",
			"CSeq: 2 BYE", "Route: "+route, "Content-Length: 0")
	}
	good := ts.recordRouteURI(bye("<sip:127.0.0.1:5060;lr>"), "udp")
	if c := codes(ts.handle(bye("<" + good.String() + ">"))); c[len(c)-1] != 200 || len(ts.forwarded.Requests()) != 1 {
		t.Fatalf("with token: %v, %d forwarded", c, len(ts.forwarded.Requests()))
	}
	if c := codes(ts.handle(bye("<sip:127.0.0.1:5060;lr;p2pd=0000000000000000>"))); c[0] != 481 {
		t.Fatalf("forged token: %v", c)
	}
}

// TestDoubleRecordRouteForWebSocket: a browser's INVITE (over the HTTPS
// port's WebSocket) forwarded to another peer over TCP gets two
// Record-Routes (RFC 5658): the far side's in-dialog requests must reach
// this peer's SIP port, since peers cannot open a WebSocket to it, while
// the browser's side keeps the WebSocket entry. Both carry the dialog
// token, and a BYE along both comes back to the browser's flow.
func TestDoubleRecordRouteForWebSocket(t *testing.T) {
	ts := newTestService(t, nil)
	ts.ports["ws"] = 8443
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	req := parse(t, invite("sip:bob@"+testDomain, "Max-Forwards: 70")...)
	req.SetTransport("WS")
	if c := codes(ts.handle(req)); c[len(c)-1] != 200 {
		t.Fatalf("responses %v", c)
	}
	fw := ts.forwarded.Requests()
	rrs := fw[0].GetHeaders("Record-Route")
	if len(rrs) != 2 {
		t.Fatalf("want 2 Record-Routes, got %v", rrs)
	}
	top, bottom := rrs[0].(*sip.RecordRouteHeader).Address, rrs[1].(*sip.RecordRouteHeader).Address
	if tr, _ := top.UriParams.Get("transport"); tr != "tcp" || top.Port != 5060 {
		t.Fatalf("the entry facing the other peer: %s", top.String())
	}
	if tr, _ := bottom.UriParams.Get("transport"); tr != "ws" || bottom.Port != 8443 {
		t.Fatalf("the entry facing the browser: %s", bottom.String())
	}
	// A phone on UDP calling over TCP needs only one: both share the port.
	req = parse(t, invite("sip:bob@"+testDomain, "Max-Forwards: 70")...)
	req.Via().Params.Add("branch", "z9hG4bK-inv2")
	ts.handle(req)
	fw = ts.forwarded.Requests()
	if len(fw) != 2 {
		t.Fatalf("the UDP INVITE was not forwarded: %d requests", len(fw))
	}
	if n := len(fw[1].GetHeaders("Record-Route")); n != 1 {
		t.Fatalf("UDP→TCP: %d Record-Routes", n)
	}
}

// TestDialogTokenNotAnOpenRelay: a token read from this peer's
// Record-Route in one's own dialog cannot carry a new call anywhere: a
// request without a To tag is not in a dialog, and the token binds the
// dialog's Call-ID and caller tag.
func TestDialogTokenNotAnOpenRelay(t *testing.T) {
	ts := newTestService(t, nil)
	mine := parse(t, invite("sip:mallory@"+testDomain)...)
	tok, _ := ts.recordRouteURI(mine, "udp").UriParams.Get(dialogTokenParam)
	route := "Route: <sip:127.0.0.1:5060;lr;" + dialogTokenParam + "=" + tok + ">"
	for name, req := range map[string][]string{
		// A new call to a toll number along the recorded route.
		"no To tag": {"INVITE sip:+19005550100@pstn-gw.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-evil1",
			"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=abc", "To: <sip:+19005550100@pstn-gw.example>",
			"Call-ID: call-1", "CSeq: 1 INVITE", "Contact: <sip:caller@127.0.0.1:5099>", route, "Content-Length: 0"},
		// The token with tags of another dialog.
		"other tags": {"BYE sip:x@pstn-gw.example SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-evil2",
			"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=other", "To: <sip:x@pstn-gw.example>;tag=nope",
			"Call-ID: call-1", "CSeq: 2 BYE", route, "Content-Length: 0"},
	} {
		// Without a valid token the request is an ordinary new one: here
		// no proxy (503) or no dialog (481); nothing leaves the peer.
		if c := codes(ts.handle(parse(t, req...))); c[len(c)-1] < 400 {
			t.Errorf("%s: %v, want a refusal", name, c)
		}
	}
	if n := len(ts.forwarded.Requests()); n != 0 {
		t.Fatalf("%d requests relayed with a borrowed token", n)
	}
}
