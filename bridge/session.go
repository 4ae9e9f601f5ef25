package bridge

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Session is one bridged call. Its offer/answer methods are called by the
// SIP side in the order the SDP travels; media runs on its own goroutines
// from the first answer until Close.
type Session struct {
	b     *Bridge
	ev    Events
	pc    *webrtc.PeerConnection
	track *localTrack
	leg   *plainLeg
	log   *slog.Logger

	sessID uint64
	done   chan struct{}
	ended  sync.Once

	route atomic.Pointer[route] // nil until the first answer

	// The offer/answer state.
	mu        sync.Mutex
	pending   pending     // guarded by mu
	web       *webrtcDesc // guarded by mu; the browser's last description
	far       *farEnd     // guarded by mu; the phone's last description
	farBefore *farEnd     // guarded by mu; far before a pending phone offer (Cancel)
	version   uint64      // guarded by mu; o= version toward the phone
	trackOn   bool        // guarded by mu; the track is on the connection
	answered  bool        // guarded by mu; this round has an answer (a 200 after a 183)
	answerIn  []byte      // guarded by mu; the phone's answer of this round
	answerOut []byte      // guarded by mu; what the browser got for it

	lastPlainRx atomic.Int64 // unix nanos of the last RTP from the phone
	lastWebRx   atomic.Int64 // and from the browser

	toPlain *pipe // browser → phone
	toWeb   *pipe // phone → browser

	webSR lastSR // the browser's newest sender report

	dtlsRole atomic.Int32 // roleClient or roleServer once an answer settled it
	fast     atomic.Pointer[fastWeb]
	fastMu   sync.Mutex    // arming and moving the fast path
	pair     *selectedPair // guarded by fastMu; ICE's selected pair
}

type pending uint8

const (
	pendNone       pending = iota
	pendWebOffer           // the browser offered; the phone's answer is due
	pendPlainOffer         // the phone offered; the browser's answer is due
)

// route is what the media goroutines need of the negotiation, swapped
// whole when an offer/answer round completes.
type route struct {
	plainPT, plainTE int // -1: no telephone-event
	plainLaw         law
	webPT, webTE     int
	webLaw           law
	plainDir, webDir direction // each side's own direction
}

func (r *route) held() bool { return r.plainDir != sendrecv || r.webDir != sendrecv }

// OfferFromWebRTC starts a session for a browser's offer (it calls a
// phone) and returns the plain offer for the phone.
func (b *Bridge) OfferFromWebRTC(ctx context.Context, offer []byte, leg Leg, ev Events) (*Session, []byte, error) {
	if _, err := readWebRTC(offer); err != nil {
		return nil, nil, err
	}
	s, err := b.newSession(ctx, leg, ev)
	if err != nil {
		return nil, nil, err
	}
	out, err := s.OfferFromWebRTC(offer)
	if err != nil {
		s.end("setup_failed", false)
		return nil, nil, err
	}
	return s, out, nil
}

// OfferFromPlain starts a session for a phone's offer (it calls a
// browser) and returns the WebRTC offer for the browser.
func (b *Bridge) OfferFromPlain(ctx context.Context, offer []byte, leg Leg, ev Events) (*Session, []byte, error) {
	if _, err := readPlain(offer); err != nil {
		return nil, nil, err
	}
	s, err := b.newSession(ctx, leg, ev)
	if err != nil {
		return nil, nil, err
	}
	out, err := s.OfferFromPlain(offer)
	if err != nil {
		s.end("setup_failed", false)
		return nil, nil, err
	}
	return s, out, nil
}

func (b *Bridge) newSession(ctx context.Context, leg Leg, ev Events) (*Session, error) {
	start := time.Now()
	pl, err := b.openLeg(ctx, leg)
	if err != nil {
		return nil, err
	}
	certs, err := b.certificate()
	if err != nil {
		pl.close()
		return nil, err
	}
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{ICEServers: b.cfg.ICEServers, Certificates: certs,
		BundlePolicy: webrtc.BundlePolicyMaxBundle, RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire})
	if err != nil {
		pl.close()
		return nil, fmt.Errorf("bridge: %w", err)
	}
	s := &Session{b: b, ev: ev, pc: pc, track: &localTrack{}, leg: pl, done: make(chan struct{}),
		sessID: rand.Uint64() >> 1, log: b.log.With("rtp_leg", pl.addr.String())}
	s.toPlain = newPipe(s, "webrtc", "plain", rand.Uint32())
	s.toWeb = newPipe(s, "plain", "webrtc", 0) // the SSRC is the track's
	now := time.Now().UnixNano()
	s.lastPlainRx.Store(now)
	s.lastWebRx.Store(now)
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go s.readWeb(t) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			s.end("ice_failed", true)
		case webrtc.PeerConnectionStateClosed:
			s.end("browser_closed", true)
		}
	})
	s.hookFast()
	b.add(s)
	go s.readPlain()
	go s.watch()
	b.m.setupDur.Observe(time.Since(start).Seconds())
	return s, nil
}

// OfferFromWebRTC takes a browser's (re-)offer and returns the plain offer
// for the phone.
func (s *Session) OfferFromWebRTC(offer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openRound(); err != nil {
		return nil, err
	}
	wd, err := readWebRTC(offer)
	if err != nil {
		return nil, err
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return nil, fmt.Errorf("%w: the browser's offer: %w", ErrBadSDP, err)
	}
	if !s.trackOn {
		sender, err := s.pc.AddTrack(s.track)
		if err != nil {
			return nil, fmt.Errorf("bridge: adding the audio track: %w", err)
		}
		go s.drainRTCP(sender)
		s.trackOn = true
	}
	s.web, s.pending = wd, pendWebOffer
	po := plainOut{sessID: s.sessID, version: s.nextVersion(), ip: s.leg.addr.Addr(), port: int(s.leg.addr.Port()),
		te: -1, dir: wd.dir}
	for _, c := range wd.codecs {
		po.codecs = append(po.codecs, plainCodec{c.law.staticPT(), c.law})
	}
	if wd.te >= 0 {
		po.te = 101 // RFC 4733 has no static type; 101 is what phones expect
	}
	return po.marshal(), nil
}

// AnswerFromPlain takes the phone's answer (in a 18x or the 2xx) and
// returns the WebRTC answer for the browser. A second answer of the same
// round (the 2xx after a 183) updates the phone's address and returns the
// browser's answer again.
func (s *Session) AnswerFromPlain(answer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != pendWebOffer {
		if s.answered && s.pending == pendNone {
			if !bytes.Equal(answer, s.answerIn) {
				if fe, err := readPlain(answer); err == nil {
					s.applyFar(fe)
				}
			}
			return s.answerOut, nil
		}
		return nil, ErrState
	}
	fe, err := readPlain(answer)
	if err != nil {
		return nil, err
	}
	pc := s.chooseOffered(fe.codecs, s.web.codecs)
	if pc == nil {
		// A phone that answers only a law the browser did not offer
		// (RFC 3264 §6.1 has it reject the stream; some answer anyway):
		// convert, as the doc promises.
		pc = &fe.codecs[0]
	}
	webLaw := pc.law
	webPT := ptOf(s.web.codecs, webLaw)
	if webPT < 0 {
		webLaw, webPT = s.web.codecs[0].law, int(s.web.codecs[0].pt)
	}
	// The answer must use the browser's payload types (RFC 3264 §6.1):
	// its telephone-event is 126 where the phone's is 101. It keeps
	// telephone-event when the phone has none, or the browser could not
	// send digits at all: they leave as SIP INFO (OnBrowserDigit).
	if err := s.preferCodecs([]plainCodec{{uint8(webPT), webLaw}}, s.web.te); err != nil {
		return nil, err
	}
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("bridge: answering the browser: %w", err)
	}
	sdp, err := s.setLocal(ans, fe.dir)
	if err != nil {
		return nil, err
	}
	s.far = fe
	s.setRoute(&route{plainPT: int(pc.pt), plainTE: fe.te, plainLaw: pc.law, webPT: webPT, webTE: s.web.te, webLaw: webLaw,
		plainDir: fe.dir, webDir: s.web.dir})
	if err := s.leg.setFar(fe); err != nil {
		s.log.Warn("bridge: relay permission for the phone failed", "phone", fe.rtp, "err", err)
	}
	s.pending, s.answered, s.answerIn, s.answerOut = pendNone, true, bytes.Clone(answer), sdp
	return sdp, nil
}

// OfferFromPlain takes a phone's (re-)offer and returns the WebRTC offer
// for the browser.
func (s *Session) OfferFromPlain(offer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openRound(); err != nil {
		return nil, err
	}
	fe, err := readPlain(offer)
	if err != nil {
		return nil, err
	}
	if !s.trackOn {
		tr, err := s.pc.AddTransceiverFromTrack(s.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			return nil, fmt.Errorf("bridge: adding the audio track: %w", err)
		}
		go s.drainRTCP(tr.Sender())
		s.trackOn = true
	}
	var laws []plainCodec
	for _, c := range fe.codecs {
		if ptOf(laws, c.law) < 0 {
			laws = append(laws, plainCodec{c.law.staticPT(), c.law})
		}
	}
	// telephone-event toward the browser even when the phone has none:
	// the browser's digits then leave as SIP INFO (OnBrowserDigit).
	if err := s.preferCodecs(laws, 101); err != nil {
		return nil, err
	}
	o, err := s.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("bridge: offering to the browser: %w", err)
	}
	sdp, err := s.setLocal(o, fe.dir)
	if err != nil {
		return nil, err
	}
	// The phone may send at once (early media, or the 2xx's ACK is slow):
	// let its packets through the relay now.
	if err := s.leg.setFar(fe); err != nil {
		s.log.Warn("bridge: relay permission for the phone failed", "phone", fe.rtp, "err", err)
	}
	s.farBefore, s.far, s.pending = s.far, fe, pendPlainOffer
	return sdp, nil
}

// AnswerFromWebRTC takes the browser's answer and returns the plain answer
// for the phone.
func (s *Session) AnswerFromWebRTC(answer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != pendPlainOffer {
		if s.answered && s.pending == pendNone && bytes.Equal(answer, s.answerIn) {
			return s.answerOut, nil
		}
		return nil, ErrState
	}
	wd, err := readWebRTC(answer)
	if err != nil {
		return nil, err
	}
	s.setRole(string(answer), false)
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return nil, fmt.Errorf("%w: the browser's answer: %w", ErrBadSDP, err)
	}
	fe := s.far
	webLaw, webPT := wd.codecs[0].law, int(wd.codecs[0].pt)
	pc := s.chooseOffered([]plainCodec{{uint8(webPT), webLaw}}, fe.codecs)
	plain := fe.codecs[0] // the phone's favourite, converted to if need be
	if pc != nil {
		plain = plainCodec{uint8(ptOf(fe.codecs, webLaw)), webLaw}
	}
	te := -1
	if wd.te >= 0 && fe.te >= 0 {
		te = fe.te
	}
	po := plainOut{sessID: s.sessID, version: s.nextVersion(), ip: s.leg.addr.Addr(), port: int(s.leg.addr.Port()),
		codecs: []plainCodec{plain}, te: te, dir: wd.dir, media: fe.media, mline: fe.mline}
	s.web = wd
	s.setRoute(&route{plainPT: int(plain.pt), plainTE: te, plainLaw: plain.law, webPT: webPT, webTE: wd.te, webLaw: webLaw,
		plainDir: fe.dir, webDir: wd.dir})
	out := po.marshal()
	s.pending, s.answered, s.answerIn, s.answerOut = pendNone, true, bytes.Clone(answer), out
	return out, nil
}

// openRound starts an offer/answer round (RFC 3264 §4: one at a time).
func (s *Session) openRound() error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	if s.pending != pendNone {
		return ErrState
	}
	s.answered, s.answerIn, s.answerOut = false, nil, nil
	return nil
}

// Cancel abandons a round whose offer was refused (a 488 to a
// re-INVITE): the media goes on as before (RFC 3261 §14.1).
func (s *Session) Cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// pion (v4) cannot roll back: its signaling state machine refuses
	// SDPTypeRollback. Finish the round inside pion instead, so that the
	// next one starts from stable; the route stays as it was.
	switch s.pending {
	case pendWebOffer:
		// pion holds the browser's offer: answer it.
		if a, err := s.pc.CreateAnswer(nil); err == nil {
			_ = s.pc.SetLocalDescription(a)
		}
	case pendPlainOffer:
		// pion holds its own offer: answer it with the browser's last
		// description, and send to where the phone was before.
		if rd := s.pc.CurrentRemoteDescription(); rd != nil {
			_ = s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.asAnswer(rd)})
		}
		if s.farBefore != nil {
			s.far = s.farBefore
			if err := s.leg.setFar(s.far); err != nil {
				s.log.Warn("bridge: relay permission for the phone failed", "phone", s.far.rtp, "err", err)
			}
		}
	}
	s.pending = pendNone
}

// asAnswer is the browser's description as an answer: an offer (the
// browser offered last) keeps the DTLS role it took then (RFC 5763 §5)
// instead of actpass.
func (s *Session) asAnswer(d *webrtc.SessionDescription) string {
	if d.Type != webrtc.SDPTypeOffer {
		return d.SDP
	}
	role := "a=setup:active"
	if l := s.pc.CurrentLocalDescription(); l != nil && strings.Contains(l.SDP, "a=setup:active") {
		role = "a=setup:passive"
	}
	return strings.ReplaceAll(d.SDP, "a=setup:actpass", role)
}

func (s *Session) applyFar(fe *farEnd) {
	s.far = fe
	if r := s.route.Load(); r != nil {
		nr := *r
		nr.plainDir = fe.dir
		s.setRoute(&nr)
	}
	if err := s.leg.setFar(fe); err != nil {
		s.log.Warn("bridge: relay permission for the phone failed", "phone", fe.rtp, "err", err)
	}
}

// setRoute publishes a completed round to the media goroutines; the
// inactivity clocks restart with it.
func (s *Session) setRoute(r *route) {
	now := time.Now().UnixNano()
	s.lastPlainRx.Store(now)
	s.lastWebRx.Store(now)
	s.route.Store(r)
}

func (s *Session) nextVersion() uint64 { s.version++; return s.version }

// chooseOffered is the first of answered that offered has, by law.
func (s *Session) chooseOffered(answered, offered []plainCodec) *plainCodec {
	for _, a := range answered {
		for _, o := range offered {
			if a.law == o.law {
				return &a
			}
		}
	}
	return nil
}

func ptOf(cs []plainCodec, l law) int {
	for _, c := range cs {
		if c.law == l {
			return int(c.pt)
		}
	}
	return -1
}

// preferCodecs limits the browser leg to cs and, with tePT ≥ 0,
// telephone-event under that payload type, so pion's SDP carries exactly
// what the phone has.
func (s *Session) preferCodecs(cs []plainCodec, tePT int) error {
	var pcs []webrtc.RTPCodecParameters
	for _, c := range cs {
		mime := webrtc.MimeTypePCMU
		if c.law == pcma {
			mime = webrtc.MimeTypePCMA
		}
		pcs = append(pcs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000},
			PayloadType: webrtc.PayloadType(c.pt)})
	}
	if tePT >= 0 {
		pcs = append(pcs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTE, ClockRate: 8000, SDPFmtpLine: "0-16"},
			PayloadType: webrtc.PayloadType(tePT)})
	}
	for _, tr := range s.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			if err := tr.SetCodecPreferences(pcs); err != nil {
				return fmt.Errorf("bridge: codec preferences: %w", err)
			}
		}
	}
	return nil
}

// setLocal applies a local description, waits (bounded) for ICE
// gathering, and returns the SDP for the browser with the direction the
// phone chose: the bridge mirrors the phone toward the browser (a phone
// that holds with sendonly makes the bridge sendonly toward the browser,
// RFC 3264 §8.4).
func (s *Session) setLocal(d webrtc.SessionDescription, dir direction) ([]byte, error) {
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if d.Type == webrtc.SDPTypeAnswer {
		s.setRole(d.SDP, true)
	}
	if err := s.pc.SetLocalDescription(d); err != nil {
		return nil, fmt.Errorf("bridge: local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(s.b.cfg.GatherTimeout):
		s.log.Warn("bridge: ICE gathering did not finish in time; offering what was gathered", "timeout", s.b.cfg.GatherTimeout)
	}
	return []byte(rewriteWebSDP(s.pc.LocalDescription().SDP, dir)), nil
}

// rewriteWebSDP names the session (the page shows bridged calls as such)
// and sets the audio section's direction.
func rewriteWebSDP(sdp string, dir direction) string {
	lines := strings.Split(sdp, "\r\n")
	inAudio := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "s="):
			lines[i] = "s=p2psip-bridge"
		case strings.HasPrefix(l, "m="):
			inAudio = strings.HasPrefix(l, "m=audio")
		case inAudio && strings.HasPrefix(l, "a="):
			if _, ok := parseDirection(l[2:]); ok {
				lines[i] = "a=" + dir.String()
			}
		}
	}
	return strings.Join(lines, "\r\n")
}

// Close ends the session (a BYE, a CANCEL, a failed setup) and frees its
// ports; Events.OnEnd is not called.
func (s *Session) Close() { s.end("hangup", false) }

func (s *Session) end(reason string, notify bool) {
	s.ended.Do(func() {
		close(s.done)
		s.stopFast()
		_ = s.pc.Close()
		s.leg.close()
		s.b.remove(s)
		s.b.m.calls.WithLabelValues(reason).Inc()
		s.log.Info("bridged call ended", "reason", reason, "to_phone", s.toPlain.sent.Load(), "to_browser", s.toWeb.sent.Load())
		if notify && s.ev.OnEnd != nil {
			go s.ev.OnEnd(reason)
		}
	})
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// watch ends the call when media stops outside hold (RFC 3550 gives no
// number; rtpengine and livekit/sip use 30–60 s), and samples jitter and
// loss for the metrics.
func (s *Session) watch() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	rtcpEvery := int(s.b.cfg.RTCPInterval / time.Second)
	if rtcpEvery < 1 {
		rtcpEvery = 1
	}
	for n := 1; ; n++ {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		r := s.route.Load()
		if r != nil && !r.held() {
			limit := time.Now().Add(-s.b.cfg.MediaTimeout).UnixNano()
			if s.lastPlainRx.Load() < limit || s.lastWebRx.Load() < limit {
				s.end("media_timeout", true)
				return
			}
		}
		if r != nil {
			s.sendWebRTCP(time.Now()) // every second, as pion's report interceptors did
		}
		if n%rtcpEvery == 0 {
			s.toPlain.sample()
			s.toWeb.sample()
			if r != nil {
				s.sendPlainRTCP()
			}
		}
	}
}

// drainRTCP reads the browser's RTCP about the bridge's stream (pion
// delivers it by the SSRCs it names; unread, it would fill a buffer) and
// keeps its sender reports for sendWebRTCP.
func (s *Session) drainRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		now := time.Now()
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok {
				s.webSR.set(sr.NTPTime, now)
			}
		}
	}
}
