package bridge

import (
	"context"
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

// fakeBrowser is a pion PeerConnection set up like Chromium's audio: Opus,
// PCMU, PCMA, telephone-event/8000 at 126.
type fakeBrowser struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	mu    sync.Mutex
	got   []*rtp.Packet
}

// The browser's audio codecs: Chromium's payload types.
var (
	browserOpus = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}
	browserPCMU = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	browserPCMA = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8}
	browserTE   = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTE, ClockRate: 8000}, PayloadType: 126}
)

func newFakeBrowser(t *testing.T) *fakeBrowser {
	return newFakeBrowserWith(t, browserOpus, browserPCMU, browserPCMA, browserTE)
}

// newFakeBrowserWith is a fake browser with only the given audio codecs.
func newFakeBrowserWith(t *testing.T, codecs ...webrtc.RTPCodecParameters) *fakeBrowser {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	fb := &fakeBrowser{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "closed") {
					return
				}
				continue
			}
			fb.mu.Lock()
			fb.got = append(fb.got, p)
			fb.mu.Unlock()
		}
	})
	return fb
}

func (fb *fakeBrowser) addTrack(t *testing.T) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fb.pc.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	fb.track = tr
}

func (fb *fakeBrowser) local(t *testing.T, offer bool) []byte {
	t.Helper()
	var d webrtc.SessionDescription
	var err error
	if offer {
		d, err = fb.pc.CreateOffer(nil)
	} else {
		d, err = fb.pc.CreateAnswer(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(fb.pc)
	if err := fb.pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-g
	return []byte(fb.pc.LocalDescription().SDP)
}

func (fb *fakeBrowser) received() []*rtp.Packet {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]*rtp.Packet(nil), fb.got...)
}

// fakePhone is a plain RTP endpoint on loopback.
type fakePhone struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []*rtp.Packet
	from netip.AddrPort
}

func newFakePhone(t *testing.T) *fakePhone {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ph := &fakePhone{conn: c}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, a, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if isRTCP(buf[:n]) {
				continue
			}
			var p rtp.Packet
			if p.Unmarshal(append([]byte(nil), buf[:n]...)) == nil {
				ph.mu.Lock()
				ph.got, ph.from = append(ph.got, &p), a
				ph.mu.Unlock()
			}
		}
	}()
	return ph
}

func (ph *fakePhone) port() int { return ph.conn.LocalAddr().(*net.UDPAddr).Port }

func (ph *fakePhone) sdp(codecs string, dir string) []byte {
	fmts := map[string]string{"pcmu": "0", "pcma": "8", "pcmu+te": "0 101", "pcma+te": "8 101", "both+te": "8 0 101"}[codecs]
	s := fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP %s\r\n", ph.port(), fmts)
	if strings.Contains(fmts, "101") {
		s += "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
	}
	return []byte(s + "a=" + dir + "\r\n")
}

func (ph *fakePhone) received() []*rtp.Packet {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return append([]*rtp.Packet(nil), ph.got...)
}

func (ph *fakePhone) send(t *testing.T, to netip.AddrPort, p *rtp.Packet) {
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ph.conn.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func newTestBridge(t *testing.T) *Bridge {
	t.Helper()
	return newTestBridgeWith(t, Config{})
}

// newTestBridgeWith is a test bridge with some of cfg's settings.
func newTestBridgeWith(t *testing.T, cfg Config) *Bridge {
	t.Helper()
	cfg.PortMin, cfg.PortMax, cfg.IncludeLoopback, cfg.ListenIP = 31000, 31999, true, netip.MustParseAddr("127.0.0.1")
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// bridgeAddr reads the RTP address out of a plain description.
func bridgeAddr(t *testing.T, sdp []byte) netip.AddrPort {
	t.Helper()
	fe, err := readPlain(sdp)
	if err != nil {
		t.Fatalf("bridge wrote a bad plain SDP: %v\n%s", err, sdp)
	}
	return fe.rtp
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	// Generous: on a loaded 2-core CI machine under -race, a browser leg
	// once took over 10 s to connect (ICE and DTLS; not traced further).
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	waitFor(t, "the browser leg to connect", func() bool { return pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
}

func TestBrowserCallsPhone(t *testing.T) {
	b := newTestBridge(t)
	fb := newFakeBrowser(t)
	fb.addTrack(t)
	offer := fb.local(t, true)
	digits := make(chan byte, 4)
	s, plainOffer, err := b.OfferFromWebRTC(context.Background(), offer, Leg{IP: netip.MustParseAddr("127.0.0.1")},
		Events{OnPhoneDigit: func(d byte, _ time.Duration) { digits <- d }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plainOffer), "RTP/AVP 0 8 101") || strings.Contains(string(plainOffer), "fingerprint") {
		t.Fatalf("plain offer:\n%s", plainOffer)
	}
	ph := newFakePhone(t)
	ans, err := s.AnswerFromPlain(ph.sdp("pcmu+te", "sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ans), "s=p2psip-bridge") || !strings.Contains(string(ans), "a=fingerprint") {
		t.Fatalf("WebRTC answer:\n%s", ans)
	}
	if err := fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, fb.pc)
	to := bridgeAddr(t, plainOffer)
	// Both directions: 50 packets each way.
	for i := range 50 {
		if err := fb.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(1000 + i), Timestamp: uint32(i * 160), SSRC: 1},
			Payload: make([]byte, 160)}); err != nil {
			t.Fatal(err)
		}
		ph.send(t, to, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(7 + i), Timestamp: uint32(i * 160), SSRC: 99},
			Payload: make([]byte, 160)})
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the phone to hear the browser", func() bool { return len(ph.received()) >= 45 })
	waitFor(t, "the browser to hear the phone", func() bool { return len(fb.received()) >= 45 })
	for _, p := range ph.received() {
		if p.PayloadType != 0 || p.SSRC == 1 || p.Extension {
			t.Fatalf("phone got PT %d SSRC %d ext %v", p.PayloadType, p.SSRC, p.Extension)
		}
	}
	// A digit from the phone becomes an event for SIP INFO.
	for i, end := range []bool{false, true, true, true} {
		pl := []byte{5, 10, 0, byte(160 * (i + 1))}
		if end {
			pl[1] |= 0x80
		}
		ph.send(t, to, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: uint16(100 + i), Timestamp: 8000, SSRC: 99}, Payload: pl})
	}
	select {
	case d := <-digits:
		if d != '5' {
			t.Fatalf("digit %q, want 5", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the phone's digit was not reported")
	}
	select {
	case d := <-digits:
		t.Fatalf("digit %q reported twice", d)
	case <-time.After(200 * time.Millisecond):
	}
	s.Close()
}

// With ICEIPs the browser leg offers a host candidate on those addresses
// only, all on the shared ICE port, and the call connects through it.
func TestICEIPsOnly(t *testing.T) {
	b := newTestBridgeWith(t, Config{ICEIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	ph := newFakePhone(t)
	s, webOffer, err := b.OfferFromPlain(context.Background(), ph.sdp("pcmu+te", "sendrecv"), Leg{IP: netip.MustParseAddr("127.0.0.1")}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cands []string
	for _, l := range strings.Split(string(webOffer), "\n") {
		// pion repeats each candidate for component 2 (RTCP); rtcp-mux
		// makes that one unused.
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(l, "a=candidate:") && f[1] == "1" {
			cands = append(cands, strings.TrimSpace(l))
		}
	}
	want := fmt.Sprintf(" 127.0.0.1 %d typ host", b.ICEPort())
	if len(cands) != 1 || !strings.Contains(cands[0], want) {
		t.Fatalf("candidates %q, want one containing %q", cands, want)
	}
	fb := newFakeBrowser(t)
	if err := fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(webOffer)}); err != nil {
		t.Fatal(err)
	}
	fb.addTrack(t)
	if _, err := s.AnswerFromWebRTC(fb.local(t, false)); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, fb.pc)
}

func TestPhoneCallsBrowser(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	s, webOffer, err := b.OfferFromPlain(context.Background(), ph.sdp("pcma+te", "sendrecv"), Leg{IP: netip.MustParseAddr("127.0.0.1")}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(webOffer), "PCMA") || strings.Contains(string(webOffer), "PCMU") {
		t.Fatalf("WebRTC offer should carry only the phone's law:\n%s", webOffer)
	}
	fb := newFakeBrowser(t)
	if err := fb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(webOffer)}); err != nil {
		t.Fatal(err)
	}
	fb.addTrack2(t, webrtc.MimeTypePCMA)
	ans := fb.local(t, false)
	plainAns, err := s.AnswerFromWebRTC(ans)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plainAns), "RTP/AVP 8 101") {
		t.Fatalf("plain answer:\n%s", plainAns)
	}
	waitConnected(t, fb.pc)
	to := bridgeAddr(t, plainAns)
	for i := range 30 {
		ph.send(t, to, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 5},
			Payload: make([]byte, 160)})
		// The phone changes SSRC and jumps its sequence number half-way.
		if i == 15 {
			for j := range 15 {
				ph.send(t, to, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: uint16(50000 + j), Timestamp: uint32(900000 + j*160), SSRC: 6},
					Payload: make([]byte, 160)})
				time.Sleep(5 * time.Millisecond)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the browser to hear the phone", func() bool { return len(fb.received()) >= 28 })
	got := fb.received()
	for i := 1; i < len(got); i++ {
		if got[i].SequenceNumber != got[i-1].SequenceNumber+1 || got[i].SSRC != got[0].SSRC {
			t.Fatalf("browser stream not continuous at %d: seq %d after %d, SSRC %d vs %d", i, got[i].SequenceNumber, got[i-1].SequenceNumber, got[i].SSRC, got[0].SSRC)
		}
	}
	s.Close()
}

func (fb *fakeBrowser) addTrack2(t *testing.T, mime string) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000}, "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fb.pc.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	fb.track = tr
}
