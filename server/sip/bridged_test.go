package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/p2psip/p2psip/bridge"
	"github.com/p2psip/p2psip/overlay"
)

// The tests here drive the media bridging of bridged.go through the
// service with real sipgo messages and a fake MediaBridge: which branches
// bridge, the SDP swaps, the failures, the dialog the peer records, the
// CSeq shifting around the requests it sends itself, and how it ends a
// call.

// sdp is a description the fake bridge classifies by its profile, as
// package bridge does: UDP/TLS/RTP/SAVPF is a browser's, RTP/AVP a
// phone's. name goes into s= so a test can tell who wrote it.
func sdp(profile, name string) []byte {
	return []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=" + name + "\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 " + profile + " 0 8\r\n")
}

func webrtcSDP(name string) []byte { return sdp("UDP/TLS/RTP/SAVPF", name) }
func plainSDP(name string) []byte  { return sdp("RTP/AVP", name) }

// fakeBridge is a MediaBridge that records its calls and hands out canned
// descriptions.
type fakeBridge struct {
	mu        sync.Mutex
	err       error // FromWebRTC and FromPlain fail with it
	answerErr error // the sessions' translations fail with it
	calls     []string
	offers    [][]byte
	places    []Placement
	sessions  []*fakeSession
}

func (b *fakeBridge) start(name string, offer []byte, p Placement, ev MediaEvents, out []byte) (MediaSession, []byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, name)
	b.offers = append(b.offers, offer)
	b.places = append(b.places, p)
	if b.err != nil {
		return nil, nil, b.err
	}
	s := &fakeSession{ev: ev, err: b.answerErr}
	b.sessions = append(b.sessions, s)
	return s, out, nil
}

func (b *fakeBridge) FromWebRTC(_ context.Context, offer []byte, p Placement, ev MediaEvents) (MediaSession, []byte, error) {
	return b.start("FromWebRTC", offer, p, ev, plainSDP("bridge-offer"))
}

func (b *fakeBridge) FromPlain(_ context.Context, offer []byte, p Placement, ev MediaEvents) (MediaSession, []byte, error) {
	return b.start("FromPlain", offer, p, ev, webrtcSDP("bridge-offer"))
}

func (b *fakeBridge) Classify(d []byte) MediaKind {
	switch {
	case bytes.Contains(d, []byte("RTP/SAVPF")):
		return MediaWebRTC
	case bytes.Contains(d, []byte("RTP/AVP")):
		return MediaPlain
	}
	return MediaOther
}

func (b *fakeBridge) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// session is the one session a test started.
func (b *fakeBridge) session(t *testing.T) *fakeSession {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sessions) != 1 {
		t.Fatalf("%d media sessions, want 1 (calls %v)", len(b.sessions), b.calls)
	}
	return b.sessions[0]
}

// fakeSession is a MediaSession that records what it is asked.
type fakeSession struct {
	ev MediaEvents

	mu        sync.Mutex
	err       error
	calls     []string
	inputs    [][]byte
	closed    int
	cancelled int
}

func (s *fakeSession) do(name string, in, out []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, name)
	s.inputs = append(s.inputs, in)
	if s.err != nil {
		return nil, s.err
	}
	return out, nil
}

func (s *fakeSession) OfferFromWebRTC(o []byte) ([]byte, error) {
	return s.do("OfferFromWebRTC", o, plainSDP("bridge-reoffer"))
}

func (s *fakeSession) AnswerFromPlain(a []byte) ([]byte, error) {
	return s.do("AnswerFromPlain", a, webrtcSDP("bridge-answer"))
}

func (s *fakeSession) OfferFromPlain(o []byte) ([]byte, error) {
	return s.do("OfferFromPlain", o, webrtcSDP("bridge-reoffer"))
}

func (s *fakeSession) AnswerFromWebRTC(a []byte) ([]byte, error) {
	return s.do("AnswerFromWebRTC", a, plainSDP("bridge-answer"))
}

func (s *fakeSession) Cancel() { s.mu.Lock(); s.cancelled++; s.mu.Unlock() }
func (s *fakeSession) Close()  { s.mu.Lock(); s.closed++; s.mu.Unlock() }

func (s *fakeSession) setErr(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }

func (s *fakeSession) state() (calls []string, closed, cancelled int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls), s.closed, s.cancelled
}

// downstream stands for every next hop: it keeps what the peer sends and
// answers it as script says (by default 200, with an SDP answer of the
// offer's kind for an INVITE).
type downstream struct {
	mu     sync.Mutex
	reqs   []*sip.Request
	script func(req *sip.Request) []*sip.Response
}

func (d *downstream) on(req *sip.Request, w *siptest.ClientTxResponder) {
	d.mu.Lock()
	d.reqs = append(d.reqs, req.Clone())
	script := d.script
	d.mu.Unlock()
	var rs []*sip.Response
	if script != nil {
		rs = script(req)
	}
	if rs == nil {
		rs = []*sip.Response{reply(req, 200, answerTo(req.Body()))}
	}
	for _, r := range rs {
		w.Receive(r)
	}
}

func (d *downstream) setScript(f func(req *sip.Request) []*sip.Response) {
	d.mu.Lock()
	d.script = f
	d.mu.Unlock()
}

func (d *downstream) Requests() []*sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reqs)
}

// since returns the requests after the first n.
func (d *downstream) since(n int) []*sip.Request {
	return d.Requests()[n:]
}

// wait returns the requests of method after the first n, once there are
// want of them.
func (d *downstream) wait(t *testing.T, n int, method sip.RequestMethod, want int) []*sip.Request {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var got []*sip.Request
		for _, r := range d.since(n) {
			if r.Method == method {
				got = append(got, r)
			}
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("%d %s requests sent, want %d", len(got), method, want)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answerTo is a callee's answer to offer: of the same kind, nil for none.
func answerTo(offer []byte) []byte {
	switch {
	case len(offer) == 0:
		return nil
	case bytes.Contains(offer, []byte("RTP/SAVPF")):
		return webrtcSDP("callee-answer")
	}
	return plainSDP("callee-answer")
}

// The far end of the calls to bob: a binding of another peer's, reached
// along its Path through farProxy, which record-routes.
const (
	aliceContact = "sip:k3v9@df7jal23ls0d.invalid;transport=ws"
	aliceSource  = "192.0.2.50:40000"
	bobContact   = "sip:bob@192.0.2.9:5090"
	farProxy     = "sip:127.0.0.8:5060;transport=tcp;lr"
	calleeTag    = "bobtag"
)

// reply is a next hop's response to req: a UAS's, with its tag and
// Contact on an INVITE, and farProxy's Record-Route on the dialog-creating
// INVITE it carried.
func reply(req *sip.Request, code int, body []byte) *sip.Response {
	reason := map[int]string{180: "Ringing", 183: "Session Progress", 200: "OK", 486: "Busy Here", 491: "Request Pending"}[code]
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if req.IsInvite() && code > 100 {
		if !req.To().Params.Has("tag") {
			res.To().Params.Add("tag", calleeTag) // in place of sipgo's random one
		}
		if code < 300 {
			res.AppendHeader(&sip.ContactHeader{Address: *req.Recipient.Clone()})
			if r := req.Route(); r != nil && r.Address.Host == "127.0.0.8" && !req.To().Params.Has("tag") {
				var u sip.Uri
				_ = sip.ParseUri(farProxy, &u)
				res.PrependHeader(&sip.RecordRouteHeader{Address: u})
			}
		}
	}
	if body != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
		res.SetBody(body)
	}
	return res
}

// bridgeEnv is a test service with a fake bridge, a scripted next hop,
// alice's browser on a WebSocket flow here and bob's phone at another
// peer.
type bridgeEnv struct {
	*testService
	br   *fakeBridge
	down *downstream
}

func newBridgeEnv(t *testing.T) *bridgeEnv {
	t.Helper()
	ts := newTestService(t, nil)
	ts.ports["ws"] = 8443
	e := &bridgeEnv{testService: ts, br: &fakeBridge{}, down: &downstream{}}
	ts.cfg.Bridge = e.br
	ts.client.TxRequester = &siptest.ClientTxRequesterResponder{OnRequest: e.down.on}
	e.addLocal(t, "alice", "tab", aliceContact, aliceSource, "WS")
	ts.loc.addRemote("sip:bob@"+testDomain, bobContact, "<"+farProxy+">")
	return e
}

// addLocal registers a device at this peer: its flow and its binding.
func (e *bridgeEnv) addLocal(t *testing.T, user, instance, contact, source, transport string) {
	t.Helper()
	aor := "sip:" + user + "@" + testDomain
	exp := time.Now().Add(time.Hour)
	if err := e.flows.put(&flow{aor: aor, instance: instance, contact: contact, source: source, transport: transport, expires: exp}); err != nil {
		t.Fatal(err)
	}
	e.loc.mu.Lock()
	defer e.loc.mu.Unlock()
	reg := e.loc.regs[aor]
	if reg == nil {
		reg = &overlay.Registration{AOR: aor}
		e.loc.regs[aor] = reg
	}
	reg.Bindings = append(reg.Bindings, overlay.Binding{Instance: instance, Node: e.loc.id, Contact: contact, Expires: exp.Unix()})
}

// party sends requests: its identity and where they come from.
type party struct {
	user, tag, contact string
	source, transport  string
	vias               []string
}

var (
	alice = party{"alice", "alicetag", aliceContact, aliceSource, "WS",
		[]string{"SIP/2.0/WS df7jal23ls0d.invalid"}}
	// carol's phone is registered here over UDP.
	carol = party{"carol", "caroltag", "sip:carol@192.0.2.60:5062", "192.0.2.60:5062", "UDP",
		[]string{"SIP/2.0/UDP 192.0.2.60:5062;rport"}}
	// bob's phone reaches this peer through farProxy.
	bob = party{"bob", calleeTag, bobContact, "127.0.0.8:5060", "TCP",
		[]string{"SIP/2.0/TCP 127.0.0.8:5060", "SIP/2.0/UDP 192.0.2.9:5090"}}
)

// request builds a request from p: toTag "" makes it dialog-creating.
func (p party) request(t *testing.T, method sip.RequestMethod, ruri, to, toTag, callID string, cseq uint32, routes []string, body []byte) *sip.Request {
	t.Helper()
	var lines []string
	lines = append(lines, fmt.Sprintf("%s %s SIP/2.0", method, ruri))
	for i, v := range p.vias {
		lines = append(lines, fmt.Sprintf("Via: %s;branch=z9hG4bK-%s-%d-%s-%d", v, callID, cseq, method, i))
	}
	toHdr := "To: <sip:" + to + "@" + testDomain + ">"
	if strings.Contains(to, "@") {
		toHdr = "To: <sip:" + to + ">"
	}
	if toTag != "" {
		toHdr += ";tag=" + toTag
	}
	lines = append(lines, "Max-Forwards: 70",
		"From: <sip:"+p.user+"@"+testDomain+">;tag="+p.tag,
		toHdr,
		"Call-ID: "+callID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		"Contact: <"+p.contact+">")
	for _, r := range routes {
		lines = append(lines, "Route: "+r)
	}
	if body != nil {
		lines = append(lines, "Content-Type: application/sdp")
	}
	lines = append(lines, "Content-Length: 0")
	req := parse(t, lines...)
	if body != nil {
		req.SetBody(body)
	}
	req.SetSource(p.source)
	req.SetTransport(p.transport)
	return req
}

// call is an established call from alice's browser to bob's phone.
type call struct {
	e      *bridgeEnv
	callID string
	d      *bridgedDialog
	sess   *fakeSession
	rr     []string // the Record-Routes of the 200 alice got, top first
}

func (e *bridgeEnv) dial(t *testing.T, callID string) *call {
	t.Helper()
	rs := e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", callID, 1, nil, webrtcSDP("alice-offer")))
	ok := last(t, rs)
	if ok.StatusCode != 200 {
		t.Fatalf("call: responses %v", codes(rs))
	}
	c := &call{e: e, callID: callID, d: e.dialogs.get(callID), sess: e.br.session(t)}
	if c.d == nil {
		t.Fatal("the bridged dialog was not recorded")
	}
	for _, h := range ok.GetHeaders("Record-Route") {
		c.rr = append(c.rr, h.Value())
	}
	// farProxy's, then this peer's toward bob (TCP) and toward alice (WS).
	if len(c.rr) != 3 {
		t.Fatalf("Record-Route of the 200: %v", c.rr)
	}
	return c
}

// fromAlice is an in-dialog request of alice's, along her route set (the
// Record-Routes reversed).
func (c *call) fromAlice(t *testing.T, method sip.RequestMethod, cseq uint32, body []byte) *sip.Request {
	routes := slices.Clone(c.rr)
	slices.Reverse(routes)
	return alice.request(t, method, bobContact, "bob", calleeTag, c.callID, cseq, routes, body)
}

// fromBob is an in-dialog request of bob's as it reaches this peer:
// farProxy took its own Route off.
func (c *call) fromBob(t *testing.T, method sip.RequestMethod, cseq uint32, body []byte) *sip.Request {
	return bob.request(t, method, aliceContact, "alice", alice.tag, c.callID, cseq, c.rr[1:], body)
}

func cseqOf(t *testing.T, m interface{ CSeq() *sip.CSeqHeader }) string {
	t.Helper()
	cs := m.CSeq()
	if cs == nil {
		t.Fatal("no CSeq")
	}
	return cs.Value()
}

// TestBridgedBranches: which branches of a dialog-creating INVITE the
// peer bridges, with which call to the bridge, and where it places the
// plain leg.
func TestBridgedBranches(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, e *bridgeEnv)
		from  party
		via2  bool // the request came through another hop first
		ruri  string
		offer []byte
		call  string // the bridge's method, "" for no bridging
		place Placement
	}{
		{name: "browser to another peer's phone", from: alice, ruri: "sip:bob@" + testDomain,
			offer: webrtcSDP("alice-offer"), call: "FromWebRTC"},
		{name: "browser to a public domain", from: alice, ruri: "sip:dave@pstn.example",
			setup: func(t *testing.T, e *bridgeEnv) {
				e.cfg.FindProxy = func(context.Context) ([]string, error) { return []string{otherPeer}, nil }
			},
			offer: webrtcSDP("alice-offer"), call: "FromWebRTC"},
		{name: "browser to a phone registered here", from: alice, ruri: "sip:carol@" + testDomain,
			setup: func(t *testing.T, e *bridgeEnv) {
				e.addLocal(t, "carol", "desk", carol.contact, carol.source, "UDP")
			},
			offer: webrtcSDP("alice-offer"), call: "FromWebRTC",
			place: Placement{Local: true, DeviceIP: netip.MustParseAddr("192.0.2.60")}},
		{name: "browser to another peer's browser", from: alice, ruri: "sip:erin@" + testDomain,
			setup: func(t *testing.T, e *bridgeEnv) {
				e.loc.addRemote("sip:erin@"+testDomain, "sip:h7s2@q9x1.invalid;transport=ws", "<"+farProxy+">")
			},
			offer: webrtcSDP("alice-offer")},
		{name: "browser to a browser here", from: alice, ruri: "sip:erin@" + testDomain,
			setup: func(t *testing.T, e *bridgeEnv) {
				e.addLocal(t, "erin", "tab", "sip:h7s2@q9x1.invalid;transport=ws", "192.0.2.51:40001", "WSS")
			},
			offer: webrtcSDP("alice-offer")},
		{name: "phone registered here to a browser here", from: carol, ruri: "sip:alice@" + testDomain,
			setup: func(t *testing.T, e *bridgeEnv) {
				e.addLocal(t, "carol", "desk", carol.contact, carol.source, "UDP")
			},
			offer: plainSDP("carol-offer"), call: "FromPlain",
			place: Placement{Local: true, DeviceIP: netip.MustParseAddr("192.0.2.60")}},
		{name: "another peer's phone to a browser here", from: bob, ruri: "sip:alice@" + testDomain,
			offer: plainSDP("bob-offer"), call: "FromPlain"},
		{name: "WebRTC offer from a phone's side", from: bob, ruri: "sip:alice@" + testDomain,
			offer: webrtcSDP("gateway-offer")},
		{name: "WebRTC offer over UDP to another peer's phone", from: carol, ruri: "sip:bob@" + testDomain,
			offer: webrtcSDP("carol-offer")},
		{name: "browser's offer relayed by another hop", from: alice, via2: true, ruri: "sip:bob@" + testDomain,
			offer: webrtcSDP("alice-offer")},
		{name: "plain offer to another peer's phone", from: carol, ruri: "sip:bob@" + testDomain,
			offer: plainSDP("carol-offer")},
		{name: "no SDP", from: alice, ruri: "sip:bob@" + testDomain},
		{name: "not SDP either kind", from: alice, ruri: "sip:bob@" + testDomain, offer: sdp("RTP/SAVP", "srtp")},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newBridgeEnv(t)
			if c.setup != nil {
				c.setup(t, e)
			}
			from := c.from
			if c.via2 {
				from.vias = append([]string{"SIP/2.0/WS 192.0.2.77:8443"}, from.vias...)
			}
			to := strings.TrimSuffix(strings.TrimPrefix(c.ruri, "sip:"), "@"+testDomain)
			req := from.request(t, sip.INVITE, c.ruri, to, "", "branches-1", 1, nil, c.offer)
			rs := e.handle(req)
			if got := last(t, rs).StatusCode; got != 200 {
				t.Fatalf("responses %v", codes(rs))
			}
			fw := e.down.Requests()
			if len(fw) != 1 || fw[0].Method != sip.INVITE {
				t.Fatalf("%d requests forwarded", len(fw))
			}
			out := fw[0]
			contentLengthOK(t, "forwarded INVITE", out)
			calls := e.br.Calls()
			if c.call == "" {
				if len(calls) != 0 {
					t.Fatalf("bridged: %v", calls)
				}
				if !bytes.Equal(out.Body(), c.offer) {
					t.Fatalf("body changed:\n%s", out.Body())
				}
				if e.dialogs.get("branches-1") != nil {
					t.Fatal("an unbridged dialog was recorded")
				}
				return
			}
			if !slices.Equal(calls, []string{c.call}) {
				t.Fatalf("bridge calls %v, want [%s]", calls, c.call)
			}
			if !bytes.Equal(e.br.offers[0], c.offer) {
				t.Fatalf("the bridge got %q", e.br.offers[0])
			}
			if e.br.places[0] != c.place {
				t.Fatalf("placement %+v, want %+v", e.br.places[0], c.place)
			}
			want := plainSDP("bridge-offer")
			if c.call == "FromPlain" {
				want = webrtcSDP("bridge-offer")
			}
			if !bytes.Equal(out.Body(), want) {
				t.Fatalf("forwarded body:\n%s\nwant the bridge's offer", out.Body())
			}
			if ct := out.ContentType(); ct == nil || ct.Value() != "application/sdp" {
				t.Fatalf("Content-Type %v", ct)
			}
			// The caller's request is not touched: a retransmission or
			// another branch sees the original.
			if !bytes.Equal(req.Body(), c.offer) {
				t.Fatal("the incoming request's body changed")
			}
			if e.dialogs.get("branches-1") == nil {
				t.Fatal("the bridged dialog was not recorded on the 200")
			}
		})
	}
}

// TestBridgedForkKeepsBrowserBranch: a call forked to a browser and a
// phone bridges the phone's branch only; the browser's branch keeps the
// original body and its Content-Length (the branches share headers).
func TestBridgedForkKeepsBrowserBranch(t *testing.T) {
	e := newBridgeEnv(t)
	e.addLocal(t, "frank", "tab", "sip:f00@f1.invalid;transport=ws", "192.0.2.52:40002", "WS")
	e.addLocal(t, "frank", "desk", "sip:frank@192.0.2.61:5060", "192.0.2.61:5060", "UDP")
	offer := webrtcSDP("alice-offer")
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		return []*sip.Response{reply(req, 486, nil)}
	})
	e.handle(alice.request(t, sip.INVITE, "sip:frank@"+testDomain, "frank", "", "fork-1", 1, nil, offer))
	fw := e.down.Requests()
	if len(fw) != 2 {
		t.Fatalf("%d branches", len(fw))
	}
	for _, out := range fw {
		contentLengthOK(t, out.Destination(), out)
		want := offer
		if out.Destination() == "192.0.2.61:5060" {
			want = plainSDP("bridge-offer")
		}
		if !bytes.Equal(out.Body(), want) {
			t.Errorf("branch to %s carries:\n%s", out.Destination(), out.Body())
		}
	}
	if calls := e.br.Calls(); !slices.Equal(calls, []string{"FromWebRTC"}) {
		t.Fatalf("bridge calls %v", calls)
	}
	if _, closed, _ := e.br.session(t).state(); closed != 1 {
		t.Fatalf("the busy branch's session closed %d times", closed)
	}
}

// TestBridgeSetupFailures: a call the bridge cannot take is refused with
// a response that names the cause, and goes nowhere.
func TestBridgeSetupFailures(t *testing.T) {
	for _, c := range []struct {
		err     error
		code    int
		reason  string // in the reason phrase
		warning string // the Warning's start, "" for none
	}{
		{bridge.ErrNoCommonCodec, 488, "no common codec", `305 p2psip "no common codec`},
		{fmt.Errorf("%w: %w", bridge.ErrNoRelay, errors.New("no relay in the overlay")), 503, "Service Unavailable (no overlay relay for the call's audio)", ""},
		{bridge.ErrNoPorts, 503, "(no free RTP port for the call's audio)", ""},
		{bridge.ErrBadSDP, 488, "cannot be bridged", `399 p2psip "bridge: malformed SDP"`},
	} {
		t.Run(c.err.Error(), func(t *testing.T) {
			e := newBridgeEnv(t)
			e.br.err = c.err
			rs := e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "fail-1", 1, nil, webrtcSDP("alice-offer")))
			res := last(t, rs)
			if res.StatusCode != c.code || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("got %d %q, want %d with %q", res.StatusCode, res.Reason, c.code, c.reason)
			}
			w := res.GetHeader("Warning")
			switch {
			case c.warning == "" && w != nil:
				t.Fatalf("Warning: %s", w.Value())
			case c.warning != "" && (w == nil || !strings.HasPrefix(w.Value(), c.warning)):
				t.Fatalf("Warning %v, want %s…", w, c.warning)
			}
			if n := len(e.down.Requests()); n != 0 {
				t.Fatalf("%d requests forwarded", n)
			}
			if e.dialogs.get("fail-1") != nil {
				t.Fatal("a dialog was recorded")
			}
		})
	}
}

// TestBridgedBranchFails: a bridged branch that fails downstream closes
// its session; the caller gets the failure.
func TestBridgedBranchFails(t *testing.T) {
	e := newBridgeEnv(t)
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		return []*sip.Response{reply(req, 180, nil), reply(req, 486, nil)}
	})
	rs := e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "busy-1", 1, nil, webrtcSDP("alice-offer")))
	if got := codes(rs); !slices.Equal(got, []int{100, 180, 486}) {
		t.Fatalf("responses %v", got)
	}
	calls, closed, cancelled := e.br.session(t).state()
	if closed != 1 || cancelled != 0 || len(calls) != 0 {
		t.Fatalf("session: calls %v, closed %d, cancelled %d", calls, closed, cancelled)
	}
	if e.dialogs.get("busy-1") != nil {
		t.Fatal("the failed call's dialog was kept")
	}
}

// TestBridgedAnswers: the answers in a 183 and the 200 are translated the
// way the offer went; a 180 without SDP passes as it is.
func TestBridgedAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		from   party
		ruri   string
		offer  []byte
		answer []byte // the callee's
		call   string // the session's method
		want   []byte // what the caller gets
	}{
		{"browser calls", alice, "sip:bob@" + testDomain, webrtcSDP("alice-offer"), plainSDP("bob-answer"),
			"AnswerFromPlain", webrtcSDP("bridge-answer")},
		{"phone calls", bob, "sip:alice@" + testDomain, plainSDP("bob-offer"), webrtcSDP("alice-answer"),
			"AnswerFromWebRTC", plainSDP("bridge-answer")},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newBridgeEnv(t)
			e.down.setScript(func(req *sip.Request) []*sip.Response {
				return []*sip.Response{reply(req, 180, nil), reply(req, 183, c.answer), reply(req, 200, c.answer)}
			})
			to := strings.TrimSuffix(strings.TrimPrefix(c.ruri, "sip:"), "@"+testDomain)
			rs := e.handle(c.from.request(t, sip.INVITE, c.ruri, to, "", "answer-1", 1, nil, c.offer))
			if got := codes(rs); !slices.Equal(got, []int{100, 180, 183, 200}) {
				t.Fatalf("responses %v", got)
			}
			if len(rs[1].Body()) != 0 {
				t.Fatalf("180 got a body:\n%s", rs[1].Body())
			}
			for _, res := range rs[2:] {
				if !bytes.Equal(res.Body(), c.want) {
					t.Errorf("%d carries:\n%s", res.StatusCode, res.Body())
				}
				contentLengthOK(t, res.Reason, res)
			}
			s := e.br.session(t)
			calls, closed, _ := s.state()
			if !slices.Equal(calls, []string{c.call, c.call}) || closed != 0 {
				t.Fatalf("session calls %v, closed %d", calls, closed)
			}
			if !bytes.Equal(s.inputs[1], c.answer) {
				t.Fatalf("the session got %q", s.inputs[1])
			}
			if e.dialogs.get("answer-1") == nil {
				t.Fatal("the dialog was not recorded")
			}
		})
	}
}

// TestBridgedAnswerFails: an early answer the bridge cannot take goes
// on as plain ringing; a 2xx with one still reaches the caller (the
// dialog exists), and the peer ends the call with a BYE to each side.
func TestBridgedAnswerFails(t *testing.T) {
	shortenByeAfter2xx(t, 100*time.Millisecond)
	e := newBridgeEnv(t)
	e.br.answerErr = errors.New("bridge: the answer has no codec of the offer")
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		if req.Method != sip.INVITE {
			return nil
		}
		return []*sip.Response{reply(req, 183, plainSDP("bob-early")), reply(req, 200, plainSDP("bob-g729"))}
	})
	rs := e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "noanswer-1", 1, nil, webrtcSDP("alice-offer")))
	if got := codes(rs); !slices.Equal(got, []int{100, 183, 200}) {
		t.Fatalf("responses %v", got)
	}
	if len(rs[1].Body()) != 0 || rs[1].ContentType() != nil {
		t.Fatalf("the 183 kept an answer the browser cannot use:\n%s", rs[1])
	}
	contentLengthOK(t, "183", rs[1])
	byes := e.down.wait(t, 1, sip.BYE, 2)
	for _, b := range byes {
		if r := b.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "answered no codec") {
			t.Errorf("BYE to %s: Reason %v", b.Recipient.String(), r)
		}
	}
	if _, closed, _ := e.br.session(t).state(); closed == 0 {
		t.Fatal("the session was not closed")
	}
	if e.dialogs.get("noanswer-1") != nil {
		t.Fatal("the ended dialog was kept")
	}
}

// TestTrackDialogRouteSets: the route sets of the requests the peer sends
// itself are the Record-Routes either side of its own entries (§12.1.2,
// §16.6 step 4: each proxy adds its entry on top), in the order each
// side's requests travel.
func TestTrackDialogRouteSets(t *testing.T) {
	ts := newTestService(t, nil)
	ts.ports["ws"] = 8443
	pStream, err := PeerHost(otherPeer)
	if err != nil {
		t.Fatal(err)
	}
	var (
		kamailio = "sip:198.51.100.5;lr"
		pPublic  = "sip:203.0.113.7:5060;transport=tcp;lr"
		pNode    = "sip:" + pStream + ";lr;p2pd=0123456789abcdef"
	)
	inv := alice.request(t, sip.INVITE, "sip:dave@pstn.example", "dave@pstn.example", "", "rr-1", 7, nil, nil)
	selfStream := ts.peerURI()
	selfStream.UriParams.Add(dialogTokenParam, ts.dialogToken(inv))
	selfWS := ts.recordRouteURI(inv, "ws")
	selfTCP := ts.recordRouteURI(inv, "tcp")
	for _, c := range []struct {
		name               string
		rr                 []string // the 2xx's Record-Routes, top first
		toCallee, toCaller []string
	}{
		{"browser calls out through a proxy peer and kamailio",
			[]string{kamailio, pPublic, pNode, selfStream.String(), selfWS.String()},
			[]string{pNode, pPublic, kamailio}, nil},
		{"a phone calls in to the browser here",
			[]string{selfWS.String(), selfStream.String(), pNode, pPublic, kamailio},
			nil, []string{pNode, pPublic, kamailio}},
		{"this peer between two hops",
			[]string{pPublic, selfTCP.String(), selfWS.String(), kamailio},
			[]string{pPublic}, []string{kamailio}},
		{"no proxy but this peer", []string{selfTCP.String()}, nil, nil},
		{"no Record-Route", nil, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := sip.NewResponseFromRequest(inv, 200, "OK", nil)
			res.To().Params.Add("tag", "dave-tag")
			var contact sip.Uri
			_ = sip.ParseUri("sip:dave@203.0.113.99:5060", &contact)
			res.AppendHeader(&sip.ContactHeader{Address: contact})
			for _, r := range c.rr {
				var u sip.Uri
				if err := sip.ParseUri(r, &u); err != nil {
					t.Fatal(err)
				}
				res.AppendHeader(&sip.RecordRouteHeader{Address: u})
			}
			d := &bridgedDialog{s: ts.Service, sess: &fakeSession{}, callID: "rr-1", callerWeb: true}
			ts.trackDialog(d, inv, res)
			uris := func(us []sip.Uri) []string {
				var out []string
				for _, u := range us {
					out = append(out, u.String())
				}
				return out
			}
			if got := uris(d.routes[fromCaller]); !slices.Equal(got, c.toCallee) {
				t.Errorf("route toward the callee %v, want %v", got, c.toCallee)
			}
			if got := uris(d.routes[fromCallee]); !slices.Equal(got, c.toCaller) {
				t.Errorf("route toward the caller %v, want %v", got, c.toCaller)
			}
			if d.target[fromCaller].String() != contact.String() || d.target[fromCallee].String() != aliceContact {
				t.Errorf("remote targets %s (callee), %s (caller)", d.target[fromCaller].String(), d.target[fromCallee].String())
			}
			if d.callerTag != alice.tag || d.calleeTag != "dave-tag" || d.lastSeq[fromCaller] != 7 || d.lastSeq[fromCallee] != 0 {
				t.Errorf("tags %q %q, CSeqs %v", d.callerTag, d.calleeTag, d.lastSeq)
			}
			if ts.dialogs.get("rr-1") != d {
				t.Error("the dialog was not indexed")
			}
			// A second 2xx (a retransmission) changes nothing.
			res2 := sip.NewResponseFromRequest(inv, 200, "OK", nil)
			res2.To().Params.Add("tag", "other")
			ts.trackDialog(d, inv, res2)
			if d.calleeTag != "dave-tag" {
				t.Error("a second 2xx re-recorded the dialog")
			}
		})
	}
}

// TestBridgedCSeqShift: the requests the peer sends in one side's name
// move that side's later requests up by as many, and their responses
// back; the ACK of a moved re-INVITE moves too. Re-offers go through the
// session the way they travel.
func TestBridgedCSeqShift(t *testing.T) {
	e := newBridgeEnv(t)
	c := e.dial(t, "shift-1")

	// bob's first request sets his CSeq space.
	n := len(e.down.Requests())
	rs := e.handle(c.fromBob(t, sip.INFO, 100, nil))
	fw := e.down.since(n)
	if len(fw) != 1 || cseqOf(t, fw[0]) != "100 INFO" || fw[0].Destination() != aliceSource {
		t.Fatalf("bob's INFO: %v", fw)
	}
	if res := last(t, rs); res.StatusCode != 200 || cseqOf(t, res) != "100 INFO" {
		t.Fatalf("bob's INFO answered %s", res.StartLine())
	}

	// A digit from bob's phone goes to alice as INFO in bob's name.
	n = len(e.down.Requests())
	c.sess.ev.OnPhoneDigit('7', 160*time.Millisecond)
	info := e.down.wait(t, n, sip.INFO, 1)[0]
	if info.Recipient.String() != aliceContact || info.Destination() != aliceSource || info.Route() != nil {
		t.Fatalf("INFO to %s at %s, Route %v", info.Recipient.String(), info.Destination(), info.Route())
	}
	if cseqOf(t, info) != "101 INFO" || fromTag(info) != calleeTag || toTag(info) != alice.tag || callIDOf(info) != "shift-1" {
		t.Fatalf("INFO in bob's name:\n%s", info)
	}
	if ct := info.ContentType(); ct == nil || ct.Value() != "application/dtmf-relay" || string(info.Body()) != "Signal=7\r\nDuration=160\r\n" {
		t.Fatalf("INFO body %q (%v)", info.Body(), ct)
	}
	contentLengthOK(t, "INFO", info)

	// bob's next requests move past it; the responses move back.
	n = len(e.down.Requests())
	rs = e.handle(c.fromBob(t, sip.INVITE, 101, plainSDP("bob-reoffer")))
	fw = e.down.since(n)
	if len(fw) != 1 || cseqOf(t, fw[0]) != "102 INVITE" {
		t.Fatalf("bob's re-INVITE forwarded as %v", fw)
	}
	if !bytes.Equal(fw[0].Body(), webrtcSDP("bridge-reoffer")) {
		t.Fatalf("bob's re-offer forwarded as:\n%s", fw[0].Body())
	}
	contentLengthOK(t, "re-INVITE", fw[0])
	res := last(t, rs)
	if res.StatusCode != 200 || cseqOf(t, res) != "101 INVITE" {
		t.Fatalf("bob's re-INVITE answered %s, CSeq %s", res.StartLine(), cseqOf(t, res))
	}
	if !bytes.Equal(res.Body(), plainSDP("bridge-answer")) {
		t.Fatalf("the answer to bob:\n%s", res.Body())
	}
	if calls, _, _ := c.sess.state(); !slices.Equal(calls, []string{"AnswerFromPlain", "OfferFromPlain", "AnswerFromWebRTC"}) {
		t.Fatalf("session calls %v", calls)
	}
	e.stateless = nil
	e.handle(c.fromBob(t, sip.ACK, 101, nil))
	if len(e.stateless) != 1 || cseqOf(t, e.stateless[0]) != "102 ACK" {
		t.Fatalf("bob's ACK forwarded as %v", e.stateless)
	}

	// alice's side: not moved until the peer speaks for her.
	n = len(e.down.Requests())
	rs = e.handle(c.fromAlice(t, sip.INVITE, 2, webrtcSDP("alice-reoffer")))
	fw = e.down.since(n)
	if len(fw) != 1 || cseqOf(t, fw[0]) != "2 INVITE" || !bytes.Equal(fw[0].Body(), plainSDP("bridge-reoffer")) {
		t.Fatalf("alice's re-INVITE forwarded as %v", fw)
	}
	if res := last(t, rs); res.StatusCode != 200 || !bytes.Equal(res.Body(), webrtcSDP("bridge-answer")) {
		t.Fatalf("alice's re-INVITE answered %s", res)
	}
	if calls, _, _ := c.sess.state(); !slices.Equal(calls[3:], []string{"OfferFromWebRTC", "AnswerFromPlain"}) {
		t.Fatalf("session calls %v", calls)
	}
	e.stateless = nil
	e.handle(c.fromAlice(t, sip.ACK, 2, nil))
	if len(e.stateless) != 1 || cseqOf(t, e.stateless[0]) != "2 ACK" {
		t.Fatalf("alice's ACK forwarded as %v", e.stateless)
	}

	// A digit from alice's browser goes to bob in her name, along the
	// route toward him.
	n = len(e.down.Requests())
	c.sess.ev.OnBrowserDigit('#', 0)
	info = e.down.wait(t, n, sip.INFO, 1)[0]
	if info.Recipient.String() != bobContact || info.Route() == nil || info.Route().Address.String() != farProxy {
		t.Fatalf("INFO to %s, Route %v", info.Recipient.String(), info.Route())
	}
	if cseqOf(t, info) != "3 INFO" || fromTag(info) != alice.tag || toTag(info) != calleeTag || string(info.Body()) != "Signal=#\r\nDuration=100\r\n" {
		t.Fatalf("INFO in alice's name:\n%s", info)
	}
	n = len(e.down.Requests())
	rs = e.handle(c.fromAlice(t, sip.BYE, 3, nil))
	fw = e.down.since(n)
	if len(fw) != 1 || cseqOf(t, fw[0]) != "4 BYE" {
		t.Fatalf("alice's BYE forwarded as %v", fw)
	}
	if res := last(t, rs); res.StatusCode != 200 || cseqOf(t, res) != "3 BYE" {
		t.Fatalf("alice's BYE answered %s", res)
	}
}

// TestBridgedReofferRefused: a re-offer the bridge refuses gets 488 (500
// when the session is gone) and goes nowhere; a re-INVITE refused
// downstream cancels the pending offer but keeps the call.
func TestBridgedReofferRefused(t *testing.T) {
	e := newBridgeEnv(t)
	c := e.dial(t, "reoffer-1")
	for i, err := range []error{errors.New("bridge: no common codec"), fmt.Errorf("bridge: session closed: %w", context.Canceled)} {
		want := 488
		if errors.Is(err, context.Canceled) {
			want = 500
		}
		c.sess.setErr(err)
		n := len(e.down.Requests())
		rs := e.handle(c.fromAlice(t, sip.INVITE, uint32(2+i), webrtcSDP("alice-reoffer")))
		if res := last(t, rs); res.StatusCode != want {
			t.Fatalf("%v: got %s", err, res.StartLine())
		}
		if fw := e.down.since(n); len(fw) != 0 {
			t.Fatalf("a refused re-offer was forwarded: %v", fw)
		}
	}
	c.sess.setErr(nil)
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		if req.Method == sip.INVITE {
			return []*sip.Response{reply(req, 491, nil)}
		}
		return nil
	})
	rs := e.handle(c.fromBob(t, sip.INVITE, 1, plainSDP("bob-reoffer")))
	if res := last(t, rs); res.StatusCode != 491 {
		t.Fatalf("got %s", res.StartLine())
	}
	calls, closed, cancelled := c.sess.state()
	if cancelled != 1 || closed != 0 || calls[len(calls)-1] != "OfferFromPlain" {
		t.Fatalf("session calls %v, cancelled %d, closed %d", calls, cancelled, closed)
	}
	if e.dialogs.get("reoffer-1") != c.d {
		t.Fatal("a refused re-INVITE ended the dialog")
	}
	// A refresh without SDP passes untouched.
	e.down.setScript(nil)
	n := len(e.down.Requests())
	e.handle(c.fromBob(t, sip.UPDATE, 2, nil))
	if fw := e.down.since(n); len(fw) != 1 || len(fw[0].Body()) != 0 {
		t.Fatalf("UPDATE forwarded as %v", fw)
	}
	if calls2, _, _ := c.sess.state(); len(calls2) != len(calls) {
		t.Fatalf("a refresh reached the session: %v", calls2)
	}
}

// TestBridgedEnd: when the media dies the peer sends a BYE to each side,
// built as its UA would (§12.2.1.1): the remote target as Request-URI,
// the route set, the tags, the next CSeq, and a Reason (RFC 3326). It
// does so once.
func TestBridgedEnd(t *testing.T) {
	e := newBridgeEnv(t)
	c := e.dial(t, "end-1")
	n := len(e.down.Requests())
	c.sess.ev.OnEnd("media_timeout")
	c.d.end("ice_failed")
	byes := e.down.wait(t, n, sip.BYE, 2)
	time.Sleep(50 * time.Millisecond)
	if got := e.down.since(n); len(got) != 2 {
		t.Fatalf("%d requests sent, want the 2 BYEs", len(got))
	}
	slices.SortFunc(byes, func(a, b *sip.Request) int { return strings.Compare(a.Recipient.String(), b.Recipient.String()) })
	toBob, toAlice := byes[0], byes[1]
	for _, x := range []struct {
		name              string
		bye               *sip.Request
		ruri, route, dest string
		from, fromTag     string
		to, toTag         string
		cseq              string
	}{
		{"to bob", toBob, bobContact, farProxy, "",
			"sip:alice@" + testDomain, alice.tag, "sip:bob@" + testDomain, calleeTag, "2 BYE"},
		{"to alice", toAlice, aliceContact, "", aliceSource,
			"sip:bob@" + testDomain, calleeTag, "sip:alice@" + testDomain, alice.tag, "1 BYE"},
	} {
		b := x.bye
		if b.Recipient.String() != x.ruri || b.Destination() != x.dest && x.dest != "" {
			t.Errorf("%s: Request-URI %s, destination %s", x.name, b.Recipient.String(), b.Destination())
		}
		var routes []string
		for _, h := range b.GetHeaders("Route") {
			routes = append(routes, h.(*sip.RouteHeader).Address.String())
		}
		if x.route == "" && len(routes) != 0 || x.route != "" && !slices.Equal(routes, []string{x.route}) {
			t.Errorf("%s: Route %v", x.name, routes)
		}
		if b.From().Address.String() != x.from || fromTag(b) != x.fromTag || b.To().Address.String() != x.to || toTag(b) != x.toTag {
			t.Errorf("%s: From %s, To %s", x.name, b.From().Value(), b.To().Value())
		}
		if callIDOf(b) != "end-1" || cseqOf(t, b) != x.cseq {
			t.Errorf("%s: Call-ID %s, CSeq %s", x.name, callIDOf(b), cseqOf(t, b))
		}
		if r := b.GetHeader("Reason"); r == nil || r.Value() != `SIP;cause=200;text="media bridge: media_timeout"` {
			t.Errorf("%s: Reason %v", x.name, r)
		}
		if mf := b.MaxForwards(); mf == nil || mf.Val() == 0 {
			t.Errorf("%s: Max-Forwards %v", x.name, mf)
		}
		contentLengthOK(t, x.name, b)
	}
	if _, closed, _ := c.sess.state(); closed == 0 {
		t.Fatal("the session was not closed")
	}
	if e.dialogs.get("end-1") != nil {
		t.Fatal("the ended dialog was kept")
	}
	// Nothing more in the dead call's name.
	c.sess.ev.OnBrowserDigit('1', 0)
	time.Sleep(20 * time.Millisecond)
	if got := e.down.since(n); len(got) != 2 {
		t.Fatalf("requests after the end: %v", got[2:])
	}
}

// TestBridgedByeCloses: a BYE from either side ends the media and the
// dialog; the peer then sends none of its own.
func TestBridgedByeCloses(t *testing.T) {
	for _, side := range []string{"alice", "bob"} {
		t.Run(side, func(t *testing.T) {
			e := newBridgeEnv(t)
			c := e.dial(t, "bye-1")
			bye := c.fromAlice(t, sip.BYE, 2, nil)
			if side == "bob" {
				bye = c.fromBob(t, sip.BYE, 1, nil)
			}
			n := len(e.down.Requests())
			if res := last(t, e.handle(bye)); res.StatusCode != 200 {
				t.Fatalf("BYE answered %s", res.StartLine())
			}
			if fw := e.down.since(n); len(fw) != 1 || fw[0].Method != sip.BYE {
				t.Fatalf("forwarded %v", fw)
			}
			if _, closed, _ := c.sess.state(); closed != 1 {
				t.Fatalf("session closed %d times", closed)
			}
			if e.dialogs.get("bye-1") != nil {
				t.Fatal("the dialog was kept")
			}
			c.sess.ev.OnEnd("browser_closed")
			time.Sleep(20 * time.Millisecond)
			if fw := e.down.since(n); len(fw) != 1 {
				t.Fatalf("the peer sent BYEs after the call ended: %v", fw[1:])
			}
		})
	}
}

// TestBridgedEndBeforeAnswer: media that dies before the 2xx closes the
// session and sends nothing (there is no dialog to end yet).
func TestBridgedEndBeforeAnswer(t *testing.T) {
	e := newBridgeEnv(t)
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		e.br.mu.Lock()
		ev := e.br.sessions[0].ev
		e.br.mu.Unlock()
		ev.OnEnd("ice_failed")
		return []*sip.Response{reply(req, 486, nil)}
	})
	e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "early-1", 1, nil, webrtcSDP("alice-offer")))
	time.Sleep(20 * time.Millisecond)
	if fw := e.down.Requests(); len(fw) != 1 {
		t.Fatalf("requests sent: %v", fw)
	}
	if _, closed, _ := e.br.session(t).state(); closed == 0 {
		t.Fatal("the session was not closed")
	}
}

// TestBridgedAckAfterOwnRequest: the ACK of a moved re-INVITE moves as
// far as the INVITE did, even when the peer sent a request in the same
// side's name between the 2xx and the ACK (§13.2.2.4: the ACK carries
// its INVITE's CSeq number, or the UAS does not match it to its 2xx and
// ends the call, §13.3.1.4). The ACK of the dialog's first INVITE never
// moves.
func TestBridgedAckAfterOwnRequest(t *testing.T) {
	e := newBridgeEnv(t)
	c := e.dial(t, "ack-1")
	// alice's browser sends a digit before her ACK reaches this peer.
	n := len(e.down.Requests())
	c.sess.ev.OnBrowserDigit('5', 0)
	e.down.wait(t, n, sip.INFO, 1)
	e.stateless = nil
	e.handle(c.fromAlice(t, sip.ACK, 1, nil))
	if len(e.stateless) != 1 || cseqOf(t, e.stateless[0]) != "1 ACK" {
		t.Fatalf("alice's first ACK forwarded as %v", e.stateless)
	}

	e.handle(c.fromBob(t, sip.INFO, 100, nil))
	n = len(e.down.Requests())
	c.sess.ev.OnPhoneDigit('1', 0) // 101 in bob's name
	e.down.wait(t, n, sip.INFO, 1)
	n = len(e.down.Requests())
	e.handle(c.fromBob(t, sip.INVITE, 101, plainSDP("bob-reoffer")))
	if fw := e.down.since(n); len(fw) != 1 || cseqOf(t, fw[0]) != "102 INVITE" {
		t.Fatalf("bob's re-INVITE forwarded as %v", fw)
	}
	n = len(e.down.Requests())
	c.sess.ev.OnPhoneDigit('2', 0) // between the 200 and bob's ACK: 103
	if info := e.down.wait(t, n, sip.INFO, 1)[0]; cseqOf(t, info) != "103 INFO" {
		t.Fatalf("INFO in bob's name: CSeq %s", cseqOf(t, info))
	}
	e.stateless = nil
	e.handle(c.fromBob(t, sip.ACK, 101, nil))
	if len(e.stateless) != 1 || cseqOf(t, e.stateless[0]) != "102 ACK" {
		t.Fatalf("bob's ACK forwarded as %v, want the re-INVITE's 102", e.stateless)
	}
	// His next request moves past both.
	n = len(e.down.Requests())
	e.handle(c.fromBob(t, sip.BYE, 102, nil))
	if fw := e.down.since(n); len(fw) != 1 || cseqOf(t, fw[0]) != "104 BYE" {
		t.Fatalf("bob's BYE forwarded as %v", fw)
	}
}

// TestBridgedEarlyAnswers: an answer in any 18x is translated, not only
// in a 180 or 183: the browser cannot use a plain one, and JsSIP ends the
// call when an early answer fails to apply.
func TestBridgedEarlyAnswers(t *testing.T) {
	for _, code := range []int{180, 181, 182, 183} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			e := newBridgeEnv(t)
			e.down.setScript(func(req *sip.Request) []*sip.Response {
				return []*sip.Response{reply(req, code, plainSDP("bob-early")), reply(req, 200, plainSDP("bob-answer"))}
			})
			rs := e.handle(alice.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "early-sdp", 1, nil, webrtcSDP("alice-offer")))
			if got := codes(rs); !slices.Equal(got, []int{100, code, 200}) {
				t.Fatalf("responses %v", got)
			}
			for _, res := range rs[1:] {
				if !bytes.Equal(res.Body(), webrtcSDP("bridge-answer")) {
					t.Errorf("%d carries:\n%s", res.StatusCode, res.Body())
				}
			}
			if calls, _, _ := e.br.session(t).state(); !slices.Equal(calls, []string{"AnswerFromPlain", "AnswerFromPlain"}) {
				t.Fatalf("session calls %v", calls)
			}
		})
	}
}

// TestBridgedBrowserClosesThenByes: a page that hangs up closes its
// PeerConnection as it sends its BYE, and the DTLS close may reach the
// bridge first: the phone must get the page's BYE alone, not the peer's
// too; a page that sends no BYE (a closed tab) gets the peer's after the
// grace.
func TestBridgedBrowserClosesThenByes(t *testing.T) {
	old := browserByeGrace
	browserByeGrace = 200 * time.Millisecond
	t.Cleanup(func() { browserByeGrace = old })

	e := newBridgeEnv(t)
	c := e.dial(t, "close-1")
	n := len(e.down.Requests())
	c.sess.ev.OnEnd("browser_closed")
	if res := last(t, e.handle(c.fromAlice(t, sip.BYE, 2, nil))); res.StatusCode != 200 {
		t.Fatalf("BYE answered %s", res.StartLine())
	}
	time.Sleep(400 * time.Millisecond)
	if fw := e.down.since(n); len(fw) != 1 || fw[0].Method != sip.BYE {
		t.Fatalf("bob got %d requests after the page hung up, want its one BYE: %v", len(fw), fw)
	}

	e2 := newBridgeEnv(t)
	c2 := e2.dial(t, "close-2")
	n2 := len(e2.down.Requests())
	c2.sess.ev.OnEnd("browser_closed")
	for _, b := range e2.down.wait(t, n2, sip.BYE, 2) { // one to each side
		if r := b.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "browser_closed") {
			t.Errorf("the peer's BYE after a closed tab: Reason %v", r)
		}
	}
}
