package sip

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// lateCall is bob's phone calling alice's browser with an INVITE without
// SDP: alice's 200 carries a WebRTC offer.
func (e *bridgeEnv) lateCall(t *testing.T, callID string) (ok *sip.Response, routes []string) {
	t.Helper()
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		if req.Method == sip.INVITE && len(req.Body()) == 0 {
			return []*sip.Response{reply(req, 180, nil), reply(req, 200, webrtcSDP("alice-offer"))}
		}
		return nil
	})
	rs := e.handle(bob.request(t, sip.INVITE, "sip:alice@"+testDomain, "alice", "", callID, 1, nil, nil))
	ok = last(t, rs)
	if ok.StatusCode != 200 {
		t.Fatalf("late call: responses %v", codes(rs))
	}
	for _, h := range ok.GetHeaders("Record-Route") {
		routes = append(routes, h.Value())
	}
	slices.Reverse(routes) // bob is the UAC (RFC 3261 §12.1.2)
	return ok, routes
}

// TestBridgedLateOffer: a phone's INVITE without SDP to a browser: the
// browser's offer in the 2xx becomes a plain one, and the phone's answer
// in the ACK a WebRTC one; a retransmitted ACK gets the same answer.
func TestBridgedLateOffer(t *testing.T) {
	e := newBridgeEnv(t)
	ok, routes := e.lateCall(t, "late-1")
	if fw := e.down.Requests(); len(fw) != 1 || len(fw[0].Body()) != 0 {
		t.Fatalf("forwarded %v", fw)
	}
	if !bytes.Equal(ok.Body(), plainSDP("bridge-offer")) {
		t.Fatalf("the 200 to the phone carries:\n%s", ok.Body())
	}
	contentLengthOK(t, "200", ok)
	if calls := e.br.Calls(); !slices.Equal(calls, []string{"FromWebRTC"}) || !bytes.Equal(e.br.offers[0], webrtcSDP("alice-offer")) {
		t.Fatalf("bridge calls %v", calls)
	}
	if e.br.places[0] != (Placement{}) {
		t.Fatalf("placement %+v for a phone behind another proxy", e.br.places[0])
	}
	s := e.br.session(t)
	if e.dialogs.get("late-1") == nil {
		t.Fatal("the dialog was not recorded")
	}
	for range 2 { // the ACK, then a retransmission of it
		e.stateless = nil
		e.handle(bob.request(t, sip.ACK, aliceContact, "alice", calleeTag, "late-1", 1, routes, plainSDP("bob-answer")))
		if len(e.stateless) != 1 || !bytes.Equal(e.stateless[0].Body(), webrtcSDP("bridge-answer")) {
			t.Fatalf("the ACK forwarded as %v", e.stateless)
		}
		contentLengthOK(t, "ACK", e.stateless[0])
	}
	calls, closed, _ := s.state()
	if !slices.Equal(calls, []string{"AnswerFromPlain"}) || !bytes.Equal(s.inputs[0], plainSDP("bob-answer")) || closed != 0 {
		t.Fatalf("session calls %v (inputs %q), closed %d", calls, s.inputs, closed)
	}
	// The phone's digits reach the browser: the browser is the callee.
	n := len(e.down.Requests())
	s.ev.OnPhoneDigit('5', 0)
	if info := e.down.wait(t, n, sip.INFO, 1)[0]; info.Recipient.String() != aliceContact {
		t.Fatalf("the phone's digit went to %s", info.Recipient.String())
	}
}

// TestBridgedLateOfferNoAnswer: an ACK without the answer it owes (or one
// the bridge refuses) is forwarded, and the peer ends the call.
func TestBridgedLateOfferNoAnswer(t *testing.T) {
	shortenByeAfter2xx(t, 50*time.Millisecond)
	e := newBridgeEnv(t)
	_, routes := e.lateCall(t, "late-2")
	e.stateless = nil
	n := len(e.down.Requests())
	e.handle(bob.request(t, sip.ACK, aliceContact, "alice", calleeTag, "late-2", 1, routes, nil))
	if len(e.stateless) != 1 {
		t.Fatalf("the ACK forwarded as %v", e.stateless)
	}
	e.down.wait(t, n, sip.BYE, 2)
	if _, closed, _ := e.br.session(t).state(); closed == 0 {
		t.Fatal("the session was not closed")
	}
}

// TestBridgedLateOfferFails: a 2xx whose offer the bridge cannot take
// reaches the phone (the dialog exists), and the peer then ends the call.
func TestBridgedLateOfferFails(t *testing.T) {
	shortenByeAfter2xx(t, 50*time.Millisecond)
	e := newBridgeEnv(t)
	e.br.err = ErrBadRequest
	n := len(e.down.Requests())
	e.lateCall(t, "late-3")
	byes := e.down.wait(t, n+1, sip.BYE, 2)
	for _, b := range byes {
		if r := b.GetHeader("Reason"); r == nil || !bytes.Contains([]byte(r.Value()), []byte("offer cannot be bridged")) {
			t.Errorf("BYE Reason %v", r)
		}
	}
}

// TestBridgedLateReoffer: a re-INVITE without SDP from the phone: the
// browser's offer in the 2xx and the phone's answer in the ACK are
// translated; the other way round with the roles swapped.
func TestBridgedLateReoffer(t *testing.T) {
	e := newBridgeEnv(t)
	c := e.dial(t, "late-4")
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		if req.Method == sip.INVITE && len(req.Body()) == 0 {
			if req.Recipient.String() == aliceContact {
				return []*sip.Response{reply(req, 200, webrtcSDP("alice-reoffer"))}
			}
			return []*sip.Response{reply(req, 200, plainSDP("bob-reoffer"))}
		}
		return nil
	})
	res := last(t, e.handle(c.fromBob(t, sip.INVITE, 7, nil)))
	if res.StatusCode != 200 || !bytes.Equal(res.Body(), plainSDP("bridge-reoffer")) {
		t.Fatalf("bob's re-INVITE answered %s:\n%s", res.StartLine(), res.Body())
	}
	e.stateless = nil
	e.handle(c.fromBob(t, sip.ACK, 7, plainSDP("bob-answer")))
	if len(e.stateless) != 1 || !bytes.Equal(e.stateless[0].Body(), webrtcSDP("bridge-answer")) {
		t.Fatalf("bob's ACK forwarded as %v", e.stateless)
	}

	res = last(t, e.handle(c.fromAlice(t, sip.INVITE, 2, nil)))
	if res.StatusCode != 200 || !bytes.Equal(res.Body(), webrtcSDP("bridge-reoffer")) {
		t.Fatalf("alice's re-INVITE answered %s:\n%s", res.StartLine(), res.Body())
	}
	e.stateless = nil
	e.handle(c.fromAlice(t, sip.ACK, 2, webrtcSDP("alice-answer")))
	if len(e.stateless) != 1 || !bytes.Equal(e.stateless[0].Body(), plainSDP("bridge-answer")) {
		t.Fatalf("alice's ACK forwarded as %v", e.stateless)
	}
	calls, _, _ := c.sess.state()
	if want := []string{"AnswerFromPlain", "OfferFromWebRTC", "AnswerFromPlain", "OfferFromPlain", "AnswerFromWebRTC"}; !slices.Equal(calls, want) {
		t.Fatalf("session calls %v, want %v", calls, want)
	}
}

// shortenByeAfter2xx makes the peer end a call it cannot bridge after d.
func shortenByeAfter2xx(t *testing.T, d time.Duration) {
	old := byeAfter2xx
	byeAfter2xx = d
	t.Cleanup(func() { byeAfter2xx = old })
}
