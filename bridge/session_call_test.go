package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The session tests below run whole calls: an in-process pion "browser"
// and a UDP "phone" on loopback, the bridge between them.

var loopLeg = Leg{IP: netip.MustParseAddr("127.0.0.1")}

// rtpSource numbers one sender's packets: 20 ms of G.711 each.
type rtpSource struct {
	ssrc uint32
	seq  uint16
	ts   uint32
}

func (s *rtpSource) next(pt uint8, payload []byte) *rtp.Packet {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc},
		Payload: payload}
	s.seq++
	s.ts += 160
	return p
}

// event is one RFC 4733 event of 4 start packets and 3 end packets, all at
// the source's current timestamp; the first has the marker bit.
func (s *rtpSource) event(pt, ev uint8) []*rtp.Packet {
	var ps []*rtp.Packet
	for n := range 7 {
		d := uint16(160 * min(n+1, 5))
		p := []byte{ev, 10, byte(d >> 8), byte(d)}
		if n >= 4 {
			p[1] |= 0x80
		}
		ps = append(ps, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: n == 0, SequenceNumber: s.seq,
			Timestamp: s.ts, SSRC: s.ssrc}, Payload: p})
		s.seq++
	}
	s.ts += 5 * 160
	return ps
}

// ramp is a payload of the bytes 0, 1, 2, …: every G.711 code once.
func ramp() []byte {
	p := make([]byte, 160)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

// call is one bridged call between a fake browser and a fake phone.
type call struct {
	t  *testing.T
	b  *Bridge
	s  *Session
	fb *fakeBrowser
	lt *localTrack // the browser's audio: any payload type, as Chromium's DTMF sender
	ph *fakePhone
	to netip.AddrPort // where the phone sends: the bridge's plain leg

	mu    sync.Mutex // web and phone, for senders on other goroutines
	web   rtpSource
	phone rtpSource

	toBrowser, toPhone []byte // the last descriptions the bridge wrote
}

func newCall(t *testing.T, b *Bridge, fb *fakeBrowser, ph *fakePhone) *call {
	c := &call{t: t, b: b, fb: fb, ph: ph, lt: &localTrack{},
		web: rtpSource{ssrc: 0xb0b, seq: 1000, ts: 5000}, phone: rtpSource{ssrc: 0xf0f, seq: 7, ts: 99}}
	t.Cleanup(func() {
		if c.s != nil {
			c.s.Close()
		}
	})
	return c
}

// browserCalls sets up a call from the browser; answer is the phone's.
func browserCalls(t *testing.T, b *Bridge, fb *fakeBrowser, ph *fakePhone, answer []byte, ev Events) *call {
	t.Helper()
	c := newCall(t, b, fb, ph)
	if _, err := fb.pc.AddTrack(c.lt); err != nil {
		t.Fatal(err)
	}
	s, plainOffer, err := b.OfferFromWebRTC(context.Background(), fb.local(t, true), loopLeg, ev)
	if err != nil {
		t.Fatal(err)
	}
	c.s, c.toPhone, c.to = s, plainOffer, bridgeAddr(t, plainOffer)
	ans, err := s.AnswerFromPlain(answer)
	if err != nil {
		t.Fatalf("AnswerFromPlain: %v", err)
	}
	c.toBrowser = ans
	if err := fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, fb.pc)
	return c
}

// phoneCalls sets up a call from the phone with its offer.
func phoneCalls(t *testing.T, b *Bridge, fb *fakeBrowser, ph *fakePhone, offer []byte, ev Events) *call {
	t.Helper()
	c := newCall(t, b, fb, ph)
	s, webOffer, err := b.OfferFromPlain(context.Background(), offer, loopLeg, ev)
	if err != nil {
		t.Fatal(err)
	}
	c.s, c.toBrowser = s, webOffer
	if err := fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(webOffer)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fb.pc.AddTrack(c.lt); err != nil {
		t.Fatal(err)
	}
	plainAns, err := s.AnswerFromWebRTC(fb.local(t, false))
	if err != nil {
		t.Fatal(err)
	}
	c.toPhone, c.to = plainAns, bridgeAddr(t, plainAns)
	waitConnected(t, fb.pc)
	return c
}

// browserReoffer runs a re-offer from the browser; dir, when set, is
// written into the browser's description (a page holding the call: pion
// has no setDirection). It returns the plain offer.
func (c *call) browserReoffer(dir string) []byte {
	c.t.Helper()
	offer := c.fb.local(c.t, true)
	if dir != "" {
		offer = bytes.ReplaceAll(offer, []byte("a=sendrecv"), []byte("a="+dir))
	}
	out, err := c.s.OfferFromWebRTC(offer)
	if err != nil {
		c.t.Fatalf("OfferFromWebRTC: %v", err)
	}
	c.toPhone = out
	return out
}

// phoneAnswers completes a browser's round with the phone's answer and
// gives the browser the bridge's.
func (c *call) phoneAnswers(answer []byte) []byte {
	c.t.Helper()
	ans, err := c.s.AnswerFromPlain(answer)
	if err != nil {
		c.t.Fatalf("AnswerFromPlain: %v", err)
	}
	if err := c.fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)}); err != nil {
		c.t.Fatal(err)
	}
	c.toBrowser = ans
	return ans
}

// phoneReoffers runs a re-INVITE from the phone through the browser and
// returns the bridge's offer to the browser and answer to the phone.
func (c *call) phoneReoffers(offer []byte) (webOffer, plainAnswer []byte) {
	c.t.Helper()
	webOffer, err := c.s.OfferFromPlain(offer)
	if err != nil {
		c.t.Fatalf("OfferFromPlain: %v", err)
	}
	if err := c.fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(webOffer)}); err != nil {
		c.t.Fatal(err)
	}
	answer := c.fb.local(c.t, false)
	// pion answers a re-offer with the transceiver's own direction;
	// a browser answers a sendonly offer recvonly (JSEP §5.3.1).
	if wd, err := readWebRTC(webOffer); err == nil && wd.dir != sendrecv {
		answer = bytes.ReplaceAll(answer, []byte("a=sendrecv"), []byte("a="+dirOf(wd.dir.recvs(), wd.dir.sends()).String()))
	}
	plainAnswer, err = c.s.AnswerFromWebRTC(answer)
	if err != nil {
		c.t.Fatalf("AnswerFromWebRTC: %v", err)
	}
	c.toBrowser, c.toPhone = webOffer, plainAnswer
	return webOffer, plainAnswer
}

// browserWrite sends one packet from the browser, waiting for its track to
// be bound.
func (c *call) browserWrite(p *rtp.Packet) {
	deadline := time.Now().Add(5 * time.Second)
	for !c.lt.write(&p.Header, p.Payload) {
		if time.Now().After(deadline) {
			c.t.Error("the browser's track never bound")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// browserSends sends n audio packets of payload type pt from the browser.
func (c *call) browserSends(n int, pt uint8) {
	for range n {
		c.mu.Lock()
		p := c.web.next(pt, ramp())
		c.mu.Unlock()
		c.browserWrite(p)
		time.Sleep(2 * time.Millisecond)
	}
}

// phoneSends sends n audio packets of payload type pt from the phone.
func (c *call) phoneSends(n int, pt uint8) {
	for range n {
		c.mu.Lock()
		p := c.phone.next(pt, ramp())
		c.mu.Unlock()
		c.ph.send(c.t, c.to, p)
		time.Sleep(2 * time.Millisecond)
	}
}

// reaches checks that n packets sent make it (most of them: loopback UDP).
func (c *call) reaches(what string, got func() int, send func(n int)) {
	c.t.Helper()
	before := got()
	send(20)
	waitFor(c.t, what, func() bool { return got() >= before+15 })
	// The last few may still be on their way (the bridge forwards on its
	// own goroutines): a count taken after this must not see them arrive
	// later, as if sent somewhere they should no longer go.
	last := got()
	waitFor(c.t, what+" to settle", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := got()
		settled := n == last
		last = n
		return settled
	})
}

// blocked checks that nothing sent arrives.
func (c *call) blocked(what string, got func() int, send func(n int)) {
	c.t.Helper()
	before := got()
	send(20)
	time.Sleep(400 * time.Millisecond)
	if n := got() - before; n != 0 {
		c.t.Fatalf("%s: %d packets arrived", what, n)
	}
}

func (c *call) browserGot() int { return len(c.fb.received()) }
func (c *call) phoneGot() int   { return len(c.ph.received()) }

func (c *call) toBrowserFlows(pt uint8) {
	c.t.Helper()
	c.reaches("the phone's audio at the browser", c.browserGot, func(n int) { c.phoneSends(n, pt) })
}

func (c *call) toPhoneFlows(pt uint8) {
	c.t.Helper()
	c.reaches("the browser's audio at the phone", c.phoneGot, func(n int) { c.browserSends(n, pt) })
}

// phoneSDP is a phone's description at ip:port.
func phoneSDP(ip string, port, version int, fmts, dir string) []byte {
	s := fmt.Sprintf("v=0\r\no=phone 1 %d IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP %s\r\n",
		version, ip, port, fmts)
	if strings.Contains(" "+fmts+" ", " 101 ") {
		s += "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
	}
	return []byte(s + "a=" + dir + "\r\n")
}

func plainDir(t *testing.T, sdp []byte) direction {
	t.Helper()
	fe, err := readPlain(sdp)
	if err != nil {
		t.Fatalf("%v\n%s", err, sdp)
	}
	return fe.dir
}

func webDesc(t *testing.T, sdp []byte) *webrtcDesc {
	t.Helper()
	wd, err := readWebRTC(sdp)
	if err != nil {
		t.Fatalf("%v\n%s", err, sdp)
	}
	return wd
}

// checkContinuous: one SSRC, each sequence number one after the last.
func checkContinuous(t *testing.T, who string, ps []*rtp.Packet) {
	t.Helper()
	for i := 1; i < len(ps); i++ {
		if ps[i].SSRC != ps[0].SSRC || ps[i].SequenceNumber != ps[i-1].SequenceNumber+1 {
			t.Fatalf("%s: packet %d: SSRC %#x seq %d after SSRC %#x seq %d", who, i, ps[i].SSRC, ps[i].SequenceNumber,
				ps[0].SSRC, ps[i-1].SequenceNumber)
		}
	}
}

func TestHoldFromBrowser(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
	c.toBrowserFlows(0)
	c.toPhoneFlows(0)

	// The page holds: it offers sendonly, the phone answers recvonly.
	if d := plainDir(t, c.browserReoffer("sendonly")); d != sendonly {
		t.Fatalf("plain offer for the browser's hold says %v\n%s", d, c.toPhone)
	}
	if d := webDesc(t, c.phoneAnswers(ph.sdp("pcmu+te", "recvonly"))).dir; d != recvonly {
		t.Fatalf("WebRTC answer to the hold says %v\n%s", d, c.toBrowser)
	}
	c.blocked("the phone's audio toward the holding browser", c.browserGot, func(n int) { c.phoneSends(n, 0) })
	c.toPhoneFlows(0) // music on hold

	// The page resumes.
	if d := plainDir(t, c.browserReoffer("")); d != sendrecv {
		t.Fatalf("plain offer for the resume says %v", d)
	}
	if d := webDesc(t, c.phoneAnswers(ph.sdp("pcmu+te", "sendrecv"))).dir; d != sendrecv {
		t.Fatalf("WebRTC answer to the resume says %v", d)
	}
	c.toBrowserFlows(0)
	got := c.fb.received()
	for i := 1; i < len(got); i++ {
		if got[i].SSRC != got[0].SSRC || int16(got[i].SequenceNumber-got[i-1].SequenceNumber) <= 0 {
			t.Fatalf("the browser's stream across the hold is not one stream at %d: %+v after %+v", i, got[i].Header, got[i-1].Header)
		}
	}
}

func TestHoldFromPhone(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := phoneCalls(t, b, newFakeBrowser(t), ph, phoneSDP("127.0.0.1", ph.port(), 1, "0 101", "sendrecv"), Events{})
	c.toPhoneFlows(0)
	c.toBrowserFlows(0)

	// The phone holds the RFC 2543 way and the RFC 3264 way at once.
	webOffer, plainAns := c.phoneReoffers(phoneSDP("0.0.0.0", ph.port(), 2, "0 101", "sendonly"))
	if d := webDesc(t, webOffer).dir; d != sendonly {
		t.Fatalf("WebRTC offer for the phone's hold says %v\n%s", d, webOffer)
	}
	if d := plainDir(t, plainAns); d != recvonly {
		t.Fatalf("plain answer to the hold says %v\n%s", d, plainAns)
	}
	c.blocked("the browser's audio toward the holding phone", c.phoneGot, func(n int) { c.browserSends(n, 0) })
	c.toBrowserFlows(0) // music on hold

	webOffer, plainAns = c.phoneReoffers(phoneSDP("127.0.0.1", ph.port(), 3, "0 101", "sendrecv"))
	if d := webDesc(t, webOffer).dir; d != sendrecv {
		t.Fatalf("WebRTC offer for the resume says %v", d)
	}
	if d := plainDir(t, plainAns); d != sendrecv {
		t.Fatalf("plain answer to the resume says %v", d)
	}
	c.toPhoneFlows(0)
	c.toBrowserFlows(0)
}

func TestReinviteMovesPhone(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := phoneCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
	c.toPhoneFlows(0)
	c.toBrowserFlows(0) // the bridge latches onto the phone's address

	// The phone moves to another port (another media server, a new
	// network) and says so in a re-INVITE.
	moved := newFakePhone(t)
	c.phoneReoffers(phoneSDP("127.0.0.1", moved.port(), 2, "0 101", "sendrecv"))
	old := c.phoneGot()
	c.ph = moved
	c.toPhoneFlows(0)
	if n := len(ph.received()) - old; n != 0 {
		t.Fatalf("%d packets still went to the old address", n)
	}
	c.toBrowserFlows(0)
}

// A 183 with early media from one address, then the 200 from another (a
// media server, then the phone): the media follows the 200.
func TestAnswerAfterEarlyMediaMovesPhone(t *testing.T) {
	b := newTestBridge(t)
	early := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), early, early.sdp("pcmu+te", "sendrecv"), Events{})
	c.toPhoneFlows(0)
	ph := newFakePhone(t)
	ans, err := c.s.AnswerFromPlain(ph.sdp("pcmu+te", "sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ans, c.toBrowser) {
		t.Fatal("the browser's answer changed with the 200")
	}
	old := len(early.received())
	c.ph = ph
	c.toPhoneFlows(0)
	if n := len(early.received()) - old; n != 0 {
		t.Fatalf("%d packets still went to the early media address", n)
	}
}

// The browser has PCMU only, the phone answers PCMA only (RFC 3264 §6.1
// says it should not; some do): each payload byte goes through the
// tables.
func TestLawConversion(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	fb := newFakeBrowserWith(t, browserPCMU, browserTE)
	c := browserCalls(t, b, fb, ph, ph.sdp("pcma+te", "sendrecv"), Events{})
	if !strings.Contains(string(c.toPhone), "m=audio "+fmt.Sprint(c.to.Port())+" RTP/AVP 0 101\r\n") {
		t.Fatalf("plain offer should carry the browser's PCMU only:\n%s", c.toPhone)
	}
	if wd := webDesc(t, c.toBrowser); len(wd.codecs) != 1 || wd.codecs[0] != pcmu0 {
		t.Fatalf("WebRTC answer should carry PCMU, the browser's law:\n%s", c.toBrowser)
	}
	c.toPhoneFlows(0)
	c.toBrowserFlows(8)
	want := ramp()
	convertLaw(want, pcmu, pcma)
	for _, p := range c.ph.received() {
		if p.PayloadType != 8 || !bytes.Equal(p.Payload, want) {
			t.Fatalf("phone got PT %d payload % x…, want PT 8 % x…", p.PayloadType, p.Payload[:8], want[:8])
		}
	}
	want = ramp()
	convertLaw(want, pcma, pcmu)
	for _, p := range fb.received() {
		if p.PayloadType != 0 || !bytes.Equal(p.Payload, want) {
			t.Fatalf("browser got PT %d payload % x…, want PT 0 % x…", p.PayloadType, p.Payload[:8], want[:8])
		}
	}
}

func TestSameLawIsNotConverted(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcma+te", "sendrecv"), Events{})
	if wd := webDesc(t, c.toBrowser); len(wd.codecs) != 1 || wd.codecs[0] != pcma8 {
		t.Fatalf("WebRTC answer should carry PCMA, the phone's law:\n%s", c.toBrowser)
	}
	c.toPhoneFlows(8)
	for _, p := range ph.received() {
		if p.PayloadType != 8 || !bytes.Equal(p.Payload, ramp()) {
			t.Fatalf("phone got PT %d payload % x…", p.PayloadType, p.Payload[:8])
		}
	}
}

func TestDTMFBrowserToPhone(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
	// The answer keeps the browser's payload type for telephone-event
	// (RFC 3264 §6.1): the browser sends events under the answer's.
	te := webDesc(t, c.toBrowser).te
	if te != int(browserTE.PayloadType) {
		t.Fatalf("WebRTC answer has telephone-event at %d, the browser offered %d:\n%s", te, browserTE.PayloadType, c.toBrowser)
	}
	c.browserSends(5, 0)
	ev := c.web.event(uint8(te), 5)
	for _, p := range ev {
		c.browserWrite(p)
		time.Sleep(2 * time.Millisecond)
	}
	c.browserSends(5, 0)
	waitFor(t, "the phone to get the audio and the event", func() bool { return c.phoneGot() >= 17 })
	got := ph.received()
	var events []*rtp.Packet
	for _, p := range got {
		switch p.PayloadType {
		case 101:
			events = append(events, p)
		case 0:
		default:
			t.Fatalf("phone got PT %d", p.PayloadType)
		}
	}
	if len(events) != len(ev) {
		t.Fatalf("phone got %d event packets, want %d", len(events), len(ev))
	}
	for i, p := range events {
		if !bytes.Equal(p.Payload, ev[i].Payload) || p.Marker != ev[i].Marker || p.Timestamp != events[0].Timestamp {
			t.Fatalf("event packet %d: marker %v ts %d payload % x, sent marker %v payload % x", i, p.Marker, p.Timestamp, p.Payload,
				ev[i].Marker, ev[i].Payload)
		}
	}
	checkContinuous(t, "phone", got)
}

// A phone without telephone-event: the browser still gets telephone-event
// in its answer (or it could not send DTMF at all), and each digit it sends
// reaches the SIP side once, for a SIP INFO.
func TestDTMFToPhoneWithoutTelephoneEvent(t *testing.T) {
	type digit struct {
		d   byte
		dur time.Duration
	}
	digits := make(chan digit, 8)
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu", "sendrecv"),
		Events{OnBrowserDigit: func(d byte, dur time.Duration) { digits <- digit{d, dur} }})
	te := webDesc(t, c.toBrowser).te
	if te != int(browserTE.PayloadType) {
		t.Fatalf("WebRTC answer has telephone-event at %d, want the browser's %d:\n%s", te, browserTE.PayloadType, c.toBrowser)
	}
	c.browserSends(5, 0)
	for _, d := range []uint8{1, 11} {
		for _, p := range c.web.event(uint8(te), d) {
			c.browserWrite(p)
			time.Sleep(2 * time.Millisecond)
		}
		c.browserSends(5, 0)
	}
	for _, want := range "1#" {
		select {
		case d := <-digits:
			if d.d != byte(want) || d.dur != 100*time.Millisecond {
				t.Fatalf("digit %q for %s, want %q for 100ms", d.d, d.dur, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("digit %q was not reported", want)
		}
	}
	select {
	case d := <-digits:
		t.Fatalf("digit %q reported again", d.d)
	case <-time.After(300 * time.Millisecond):
	}
	waitFor(t, "the phone to get the audio", func() bool { return c.phoneGot() >= 15 })
	got := ph.received()
	for _, p := range got {
		if p.PayloadType != 0 {
			t.Fatalf("phone without telephone-event got PT %d", p.PayloadType)
		}
	}
	checkContinuous(t, "phone", got)
}

func TestDTMFPhoneToBrowserKeepsStream(t *testing.T) {
	digits := make(chan byte, 8)
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := phoneCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"),
		Events{OnPhoneDigit: func(d byte, _ time.Duration) { digits <- d }})
	c.phoneSends(5, 0)
	for _, p := range c.phone.event(101, 9) {
		ph.send(t, c.to, p)
		time.Sleep(2 * time.Millisecond)
	}
	c.phoneSends(5, 0)
	select {
	case d := <-digits:
		if d != '9' {
			t.Fatalf("digit %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the phone's digit was not reported")
	}
	waitFor(t, "the browser to get the audio", func() bool { return c.browserGot() >= 10 })
	checkContinuous(t, "browser", c.fb.received())
}

func TestMediaTimeout(t *testing.T) {
	ended := make(chan string, 2)
	b := newTestBridgeWith(t, Config{MediaTimeout: 2 * time.Second})
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu", "sendrecv"), Events{OnEnd: func(r string) { ended <- r }})
	// The browser talks on; the phone talks for a second, then goes
	// silent (unplugged, gone from the network).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c.mu.Lock()
			p := c.web.next(0, ramp())
			c.mu.Unlock()
			c.lt.write(&p.Header, p.Payload)
		}
	}()
	for range 50 {
		c.phoneSends(1, 0)
		time.Sleep(18 * time.Millisecond)
	}
	silent := time.Now()
	select {
	case r := <-ended:
		if r != "media_timeout" {
			t.Fatalf("ended with %q", r)
		}
		if d := time.Since(silent); d > 4*time.Second || d < 1900*time.Millisecond {
			t.Fatalf("ended %s after the phone went silent, timeout 2s", d)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("no media timeout")
	}
	select {
	case <-c.s.Done():
	default:
		t.Fatal("OnEnd before the session ended")
	}
	if b.Active() != 0 {
		t.Fatalf("%d sessions active", b.Active())
	}
	select {
	case r := <-ended:
		t.Fatalf("OnEnd called again with %q", r)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestNoMediaTimeoutWhileHeld(t *testing.T) {
	ended := make(chan string, 2)
	b := newTestBridgeWith(t, Config{MediaTimeout: 2 * time.Second})
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu", "sendrecv"), Events{OnEnd: func(r string) { ended <- r }})
	c.browserReoffer("sendonly")
	c.phoneAnswers(ph.sdp("pcmu", "recvonly"))
	// Nobody sends during the hold (a page on hold mutes its microphone).
	select {
	case r := <-ended:
		t.Fatalf("the held call ended: %s", r)
	case <-time.After(4 * time.Second):
	}
	// Resumed and silent: the timeout applies again.
	c.browserReoffer("")
	c.phoneAnswers(ph.sdp("pcmu", "sendrecv"))
	select {
	case r := <-ended:
		if r != "media_timeout" {
			t.Fatalf("ended with %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no media timeout after the resume")
	}
}

// offerOnly starts a session for a fresh browser's offer and returns it
// with its plain RTP port.
func offerOnly(t *testing.T, b *Bridge, ev Events) (*Session, int) {
	t.Helper()
	fb := newFakeBrowser(t)
	fb.addTrack(t)
	s, plainOffer, err := b.OfferFromWebRTC(context.Background(), fb.local(t, true), loopLeg, ev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, int(bridgeAddr(t, plainOffer).Port())
}

func TestPortQuarantineAcrossSessions(t *testing.T) {
	b := newTestBridge(t)
	s1, p1 := offerOnly(t, b, Events{})
	s1.Close()
	b.ports.mu.Lock()
	_, resting := b.ports.resting[p1]
	b.ports.next = p1 // the next search starts at the released port
	b.ports.mu.Unlock()
	if !resting {
		t.Fatalf("port %d of the closed session is not resting", p1)
	}
	_, p2 := offerOnly(t, b, Events{})
	if p2 == p1 {
		t.Fatalf("port %d handed to a new session within its quarantine", p1)
	}
}

func TestCloseIsIdempotentAndFreesThePort(t *testing.T) {
	ended := make(chan string, 1)
	b := newTestBridge(t)
	s, port := offerOnly(t, b, Events{OnEnd: func(r string) { ended <- r }})
	if b.Active() != 1 {
		t.Fatalf("%d active", b.Active())
	}
	s.Close()
	s.Close()
	select {
	case <-s.Done():
	default:
		t.Fatal("Done is open after Close")
	}
	if b.Active() != 0 {
		t.Fatalf("%d active after Close", b.Active())
	}
	b.ports.mu.Lock()
	inUse := b.ports.inUse[port]
	b.ports.mu.Unlock()
	if inUse {
		t.Fatal("the port is still in use")
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))))
	if err != nil {
		t.Fatalf("the port's socket is still open: %v", err)
	}
	_ = c.Close()
	if _, err := s.OfferFromWebRTC(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("an offer after Close: %v", err)
	}
	if _, err := s.OfferFromPlain(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("an offer after Close: %v", err)
	}
	select {
	case r := <-ended:
		t.Fatalf("Close called OnEnd(%q)", r)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestBridgeCloseEndsSessions(t *testing.T) {
	b := newTestBridge(t)
	s1, _ := offerOnly(t, b, Events{})
	s2, _ := offerOnly(t, b, Events{})
	if b.Active() != 2 {
		t.Fatalf("%d active", b.Active())
	}
	b.Close()
	for _, s := range []*Session{s1, s2} {
		select {
		case <-s.Done():
		default:
			t.Fatal("a session outlived its bridge")
		}
	}
	if b.Active() != 0 {
		t.Fatalf("%d active", b.Active())
	}
}

// A re-offer the phone refuses (a 488) leaves the call as it was, and the
// next round can start.
func TestCancelAndOutOfOrder(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
	if _, err := c.s.AnswerFromWebRTC(c.toBrowser); !errors.Is(err, ErrState) {
		t.Fatalf("an answer with no offer: %v", err)
	}
	// The page re-offers (its last offer again, holding); pion cannot
	// roll back a local offer, so the fake browser's state stays as it is.
	hold := bytes.ReplaceAll([]byte(c.fb.pc.LocalDescription().SDP), []byte("a=sendrecv"), []byte("a=sendonly"))
	if _, err := c.s.OfferFromWebRTC(hold); err != nil {
		t.Fatal(err)
	}
	if _, err := c.s.OfferFromPlain(ph.sdp("pcmu", "sendrecv")); !errors.Is(err, ErrState) {
		t.Fatalf("an offer while one is pending: %v", err)
	}
	if _, err := c.s.OfferFromWebRTC(hold); !errors.Is(err, ErrState) {
		t.Fatalf("a second offer while one is pending: %v", err)
	}
	c.s.Cancel()
	c.toPhoneFlows(0)
	c.toBrowserFlows(0)
	if d := plainDir(t, c.browserReoffer("")); d != sendrecv {
		t.Fatalf("the round after the refused one: %v", d)
	}
	c.phoneAnswers(ph.sdp("pcmu+te", "sendrecv"))
	c.toBrowserFlows(0)
}

// The bridge ends a call on its own only through Events.OnEnd; a phone's
// bad answer is an error for the SIP side, not the end.
func TestBadAnswers(t *testing.T) {
	b := newTestBridge(t)
	fb := newFakeBrowser(t)
	fb.addTrack(t)
	s, _, err := b.OfferFromWebRTC(context.Background(), fb.local(t, true), loopLeg, Events{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ph := newFakePhone(t)
	for _, c := range []struct {
		sdp []byte
		err error
	}{
		{phoneSDP("127.0.0.1", ph.port(), 1, "18", "sendrecv"), ErrNoCommonCodec},
		{testSDP(t, "sdes-srtp-offer.sdp"), ErrNotPlain},
		{[]byte("nonsense"), ErrBadSDP},
	} {
		if _, err := s.AnswerFromPlain(c.sdp); !errors.Is(err, c.err) {
			t.Errorf("answer %q: %v, want %v", c.sdp[:min(len(c.sdp), 40)], err, c.err)
		}
	}
	if _, err := s.AnswerFromPlain(ph.sdp("pcmu", "sendrecv")); err != nil {
		t.Fatalf("a good answer after bad ones: %v", err)
	}
	if _, _, err := b.OfferFromWebRTC(context.Background(), ph.sdp("pcmu", "sendrecv"), loopLeg, Events{}); !errors.Is(err, ErrNotWebRTC) {
		t.Fatalf("a plain offer as the browser's: %v", err)
	}
	if _, _, err := b.OfferFromPlain(context.Background(), testSDP(t, "chrome-offer.sdp"), loopLeg, Events{}); !errors.Is(err, ErrNotPlain) {
		t.Fatalf("a WebRTC offer as the phone's: %v", err)
	}
	if b.Active() != 1 {
		t.Fatalf("%d active: a refused offer left a session", b.Active())
	}
}

// The same for a call from a phone without telephone-event: the bridge
// offers the browser telephone-event all the same.
func TestDTMFToCallingPhoneWithoutTelephoneEvent(t *testing.T) {
	digits := make(chan byte, 8)
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := phoneCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu", "sendrecv"),
		Events{OnBrowserDigit: func(d byte, _ time.Duration) { digits <- d }})
	if strings.Contains(string(c.toPhone), "telephone-event") {
		t.Fatalf("plain answer offers the phone telephone-event it does not have:\n%s", c.toPhone)
	}
	te := webDesc(t, c.toBrowser).te
	if te < 0 {
		t.Fatalf("WebRTC offer without telephone-event:\n%s", c.toBrowser)
	}
	// The browser sends under the payload type of its own answer.
	ans, err := readWebRTC([]byte(c.fb.pc.LocalDescription().SDP))
	if err != nil || ans.te < 0 {
		t.Fatalf("the browser's answer has no telephone-event: %v", err)
	}
	c.browserSends(3, 0)
	for _, p := range c.web.event(uint8(ans.te), 12) {
		c.browserWrite(p)
		time.Sleep(2 * time.Millisecond)
	}
	c.browserSends(3, 0)
	select {
	case d := <-digits:
		if d != 'A' {
			t.Fatalf("digit %q, want A", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the browser's digit was not reported")
	}
	waitFor(t, "the phone to get the audio", func() bool { return c.phoneGot() >= 6 })
	checkContinuous(t, "phone", ph.received())
}

// The browser refuses a phone's re-INVITE (a hold, with c=0.0.0.0): the
// call goes on as it was, media both ways, and the next re-INVITE works.
func TestRefusedPhoneReinvite(t *testing.T) {
	for _, fromBrowser := range []bool{true, false} {
		name := "call from the phone"
		if fromBrowser {
			name = "call from the browser"
		}
		t.Run(name, func(t *testing.T) {
			b := newTestBridge(t)
			ph := newFakePhone(t)
			var c *call
			if fromBrowser {
				c = browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
			} else {
				c = phoneCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
			}
			c.toPhoneFlows(0)
			if _, err := c.s.OfferFromPlain(phoneSDP("0.0.0.0", ph.port(), 2, "0 101", "sendonly")); err != nil {
				t.Fatal(err)
			}
			c.s.Cancel() // the browser answered 488; it never saw the offer
			c.toPhoneFlows(0)
			c.toBrowserFlows(0)
			webOffer, plainAns := c.phoneReoffers(phoneSDP("0.0.0.0", ph.port(), 3, "0 101", "sendonly"))
			if webDesc(t, webOffer).dir != sendonly || plainDir(t, plainAns) != recvonly {
				t.Fatalf("the hold after the refused one:\n%s\n%s", webOffer, plainAns)
			}
			c.phoneReoffers(phoneSDP("127.0.0.1", ph.port(), 4, "0 101", "sendrecv"))
			c.toPhoneFlows(0)
			c.toBrowserFlows(0)
		})
	}
}
