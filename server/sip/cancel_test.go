package sip

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// contentLengthOK reports whether m carries exactly one Content-Length
// that matches its body (RFC 3261 §18.3, §20.14).
func contentLengthOK(t *testing.T, name string, m sip.Message) {
	t.Helper()
	var hs []sip.Header
	switch v := m.(type) {
	case *sip.Request:
		hs = v.GetHeaders("Content-Length")
	case *sip.Response:
		hs = v.GetHeaders("Content-Length")
	}
	if len(hs) != 1 {
		t.Errorf("%s: %d Content-Length headers, want 1:\n%s", name, len(hs), m.String())
		return
	}
	cl := m.ContentLength()
	if cl == nil || int(*cl) != len(m.Body()) {
		t.Errorf("%s: Content-Length %v, body %d bytes", name, hs[0].Value(), len(m.Body()))
	}
}

// TestBuiltMessagesCarryContentLength covers every message this package
// builds for sending itself: each must carry Content-Length, or a stream
// receiver cannot frame it.
func TestBuiltMessagesCarryContentLength(t *testing.T) {
	ts := newTestService(t, nil)
	ruri := "sip:callee@127.0.0.1:5070"
	// Incoming requests over UDP may lack Content-Length (§18.3).
	noCL := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "Content-Length") {
				out = append(out, l)
			}
		}
		return out
	}
	inv := parse(t, noCL(invite(ruri, "Max-Forwards: 70"))...)
	var target sip.Uri
	if err := sip.ParseUri(ruri, &target); err != nil {
		t.Fatal(err)
	}
	tg := target2(target)
	fwd := ts.prepare(inv, tg, true, loopHash(inv))

	ack := parse(t, noCL([]string{
		"ACK " + ruri + " SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-ack1",
		"Max-Forwards: 70",
		"From: <sip:caller@" + testDomain + ">;tag=abc",
		"To: <" + ruri + ">;tag=xyz",
		"Call-ID: call-1",
		"CSeq: 1 ACK",
	})...)
	fwdAck := ts.prepare(ack, tg, false, loopHash(ack))

	withBody := parse(t, noCL(invite(ruri, "Max-Forwards: 70", "Content-Type: application/sdp"))...)
	withBody.SetBody([]byte("v=0\r\n"))
	fwdBody := ts.prepare(withBody, tg, true, loopHash(withBody))

	// respond(): a sipgo-built answer (483 for Max-Forwards 0).
	hop := parse(t, noCL(invite(ruri, "Max-Forwards: 0"))...)
	responded := last(t, ts.handle(hop))

	raw, ok := rawAnswer([]byte(strings.Join(noCL(register("alice", "<sip:alice@127.0.0.1:5099>")), "\r\n")+"\r\n\r\n"), 403, "Forbidden", nil)
	if !ok {
		t.Fatal("rawAnswer declined")
	}
	rawRes, err := sip.ParseMessage(raw)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		m    sip.Message
	}{
		{"cancelFor", cancelFor(fwd)},
		{"prepare INVITE without body", fwd},
		{"prepare INVITE with body", fwdBody},
		{"prepare ACK (onAck)", fwdAck},
		{"respond 483", responded},
		{"fork 503 (NewResponseFromRequest)", sip.NewResponseFromRequest(inv, 503, "Service Unavailable (next hop unreachable)", nil)},
		{"fork 408 (NewResponseFromRequest)", sip.NewResponseFromRequest(inv, 408, "Request Timeout", nil)},
		{"fork 500 (NewResponseFromRequest)", sip.NewResponseFromRequest(inv, 500, "Server Internal Error (next hop unavailable)", nil)},
		{"rawAnswer", rawRes},
	} {
		contentLengthOK(t, c.name, c.m)
	}
}

func target2(u sip.Uri) target { return target{ruri: u, dest: "127.0.0.1:5070", transport: "TCP"} }

// TestCancelStreamFraming sends the CANCEL of a forwarded INVITE through
// the stream framings a receiver uses: sipgo's stream parser and this
// package's guardStreamConn header check.
func TestCancelStreamFraming(t *testing.T) {
	ts := newTestService(t, nil)
	ruri := "sip:callee@127.0.0.1:5070"
	inv := parse(t, invite(ruri, "Max-Forwards: 70")...)
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	c := cancelFor(ts.prepare(inv, target2(u), true, loopHash(inv)))
	wire := []byte(c.String())

	// Two CANCELs back to back on one stream: both must come out whole.
	stream := sip.NewParser().NewSIPStream()
	var got []sip.Message
	if err := stream.ParseSIPStream(append(append([]byte{}, wire...), wire...), func(m sip.Message) { got = append(got, m) }); err != nil {
		t.Fatalf("stream parse: %v\n%s", err, wire)
	}
	if len(got) != 2 {
		t.Fatalf("stream parse: %d messages, want 2", len(got))
	}
	if r, ok := got[0].(*sip.Request); !ok || r.Method != sip.CANCEL {
		t.Fatalf("stream parse: got %v", got[0])
	}

	head, _, found := bytes.Cut(wire, []byte("\r\n\r\n"))
	if !found {
		t.Fatal("no end of header")
	}
	if n, ok := contentLength(head); !ok || n != 0 {
		t.Fatalf("contentLength(head) = %d, %v; want 0, true", n, ok)
	}
}
