package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2psip/p2psip/bench/bridge/ng"
	"github.com/pion/webrtc/v4"
)

// call is one bridged call: a pion browser and an echoing phone socket.
type call struct {
	idx   int
	id    string
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	ssrc  uint32 // the browser's
	phone *net.UDPConn
	bconn *browserConn // the browser's ICE socket

	closed  atomic.Bool
	counter atomic.Uint32 // the last packet sent; written by the send loop only

	// The measuring window is the packets with counters in [winLo,
	// winHi); the phone and the browser count those they get.
	winLo, winHi             atomic.Uint32
	winPhoneRx, winBrowserRx atomic.Uint64

	sentAt [ring]stamp // browser's sendmsg
	up     [ring]stamp // phone socket's kernel receive time − sentAt
	echoAt [ring]stamp // phone's sendmsg of the echo
}

// The ng commands, the same for rtpengine and ngd (ngd ignores the
// flags). The browser offers; the offer toward the phone is plain RTP/AVP
// without ICE, and the phone's answer goes back to the browser as
// UDP/TLS/RTP/SAVPF with ICE and rtcp-mux (rtpengine terminates ICE and
// DTLS-SRTP itself).
func offerCmd(c *call, sdp string) map[string]any {
	return map[string]any{"command": "offer", "call-id": c.id, "from-tag": "b" + c.id, "sdp": sdp,
		"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": []any{"demux"},
		"replace": []any{"origin", "session-connection"}}
}

func answerCmd(c *call, sdp string) map[string]any {
	return map[string]any{"command": "answer", "call-id": c.id, "from-tag": "b" + c.id, "to-tag": "p" + c.id, "sdp": sdp,
		"ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF", "rtcp-mux": []any{"require"},
		"replace": []any{"origin", "session-connection"}}
}

func deleteCmd(c *call) map[string]any {
	return map[string]any{"command": "delete", "call-id": c.id, "from-tag": "b" + c.id}
}

// plainDest reads the RTP address and rtcp-mux out of a plain offer.
func plainDest(sdp string) (netip.AddrPort, bool, error) {
	var ip netip.Addr
	port := -1
	mux := false
	sc := bufio.NewScanner(strings.NewReader(sdp))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "c=IN IP4 "):
			a, err := netip.ParseAddr(strings.Fields(l[len("c=IN IP4 "):])[0])
			if err == nil {
				ip = a
			}
		case strings.HasPrefix(l, "m=audio ") && port < 0:
			f := strings.Fields(l)
			if len(f) >= 3 {
				port, _ = strconv.Atoi(f[1])
			}
		case l == "a=rtcp-mux":
			mux = true
		}
	}
	if !ip.IsValid() || port <= 0 {
		return netip.AddrPort{}, false, fmt.Errorf("no c=IN IP4 or m=audio in the plain offer:\n%s", sdp)
	}
	return netip.AddrPortFrom(ip, uint16(port)), mux, nil
}

// phoneSDP is the phone's answer: PCMU only, RTCP to the same port (the
// echo ignores it).
func phoneSDP(c *call, mux bool) string {
	a := c.phone.LocalAddr().(*net.UDPAddr).AddrPort()
	s := fmt.Sprintf("v=0\r\no=phone %d 1 IN IP4 %s\r\ns=phone\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=rtcp:%d\r\n",
		c.idx+1, a.Addr(), a.Addr(), a.Port(), a.Port())
	if mux {
		s += "a=rtcp-mux\r\n"
	}
	return s + "a=sendrecv\r\n"
}

// chromeLike puts the default candidate into the offer's c= and m= lines,
// as Chromium's description does once gathering is complete; pion writes
// c=IN IP4 0.0.0.0 and port 9, which rtpengine reads as a zero address
// (hold: it would offer the phone a sendonly stream at 0.0.0.0).
func chromeLike(sdp string, cand netip.AddrPort) string {
	sdp = strings.ReplaceAll(sdp, "c=IN IP4 0.0.0.0\r\n", "c=IN IP4 "+cand.Addr().String()+"\r\n")
	return strings.Replace(sdp, "m=audio 9 ", "m=audio "+strconv.Itoa(int(cand.Port()))+" ", 1)
}

// setup places one call; on success it is live (sending).
func (lg *loadgen) setup(ctx context.Context, c *call) (err error) {
	ctx, cancel := context.WithTimeout(ctx, lg.setupTimeout)
	defer cancel()
	defer func() {
		if err != nil {
			lg.teardown(c, true)
		}
	}()
	api, bc, err := lg.browserAPI()
	if err != nil {
		return err
	}
	c.bconn = bc
	pc, err := api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{lg.cert}})
	if err != nil {
		return err
	}
	c.pc = pc
	c.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "bench")
	if err != nil {
		return err
	}
	sender, err := pc.AddTrack(c.track)
	if err != nil {
		return err
	}
	go func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go lg.readBrowser(c, tr) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-g:
	case <-ctx.Done():
		return fmt.Errorf("gathering: %w", ctx.Err())
	}
	if enc := sender.GetParameters().Encodings; len(enc) > 0 {
		c.ssrc = uint32(enc[0].SSRC)
		bc.tx.Store(c)
	}
	webOffer := chromeLike(pc.LocalDescription().SDP, bc.LocalAddr().(*net.UDPAddr).AddrPort())
	resp, err := lg.ng.Do(ctx, offerCmd(c, webOffer))
	if err != nil {
		return err
	}
	plainOffer := ng.Str(resp, "sdp")
	_, mux, err := plainDest(plainOffer)
	if err != nil {
		return err
	}
	c.phone, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lg.phoneIP, 0)))
	if err != nil {
		return err
	}
	if err := enableTimestamps(c.phone); err != nil {
		return err
	}
	go lg.runPhone(c)
	answer := phoneSDP(c, mux)
	resp, err = lg.ng.Do(ctx, answerCmd(c, answer))
	if err != nil {
		return err
	}
	webAnswer := ng.Str(resp, "sdp")
	if lg.dumpSDP.CompareAndSwap(true, false) {
		lg.logf("SDP of call %s:\n== browser offer\n%s\n== plain offer (to the phone)\n%s\n== phone answer\n%s\n== WebRTC answer (to the browser)\n%s",
			c.id, webOffer, plainOffer, answer, webAnswer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: webAnswer}); err != nil {
		return fmt.Errorf("the daemon's answer: %w", err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		return fmt.Errorf("ICE/DTLS (state %s): %w", pc.ConnectionState(), ctx.Err())
	}
	return nil
}

// teardown ends a call on both sides.
func (lg *loadgen) teardown(c *call, bye bool) {
	if c.closed.Swap(true) {
		return
	}
	if bye {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = lg.ng.Do(ctx, deleteCmd(c))
		cancel()
	}
	if c.pc != nil {
		_ = c.pc.Close()
	}
	if c.phone != nil {
		_ = c.phone.Close()
	}
	if c.bconn != nil {
		_ = c.bconn.mux.Close() // pc.Close leaves the mux (and its socket) open
	}
}
