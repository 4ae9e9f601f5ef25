package bridge

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// The fast path carries a browser leg's RTP once its DTLS handshake is
// done: the bridge takes the SRTP keys of that handshake (dtlsKeys) and
// from then on decrypts the browser's packets on the ICE socket's reader
// goroutine and encrypts its own on the phone leg's reader goroutine, one
// goroutine per direction and no hand-over between them. pion keeps
// everything else: ICE (checks, consent, nomination), DTLS, RTCP, and the
// RTP of a call until its keys are known, which pion's own SRTP session
// then decrypts (Session.readWeb).
//
// A browser that moves (a new network, an ICE restart) gets a new
// selected pair; the fast path follows it (Session.onPair). Packets from
// an address the table does not know go to pion, so nothing is lost
// while the two catch up.

// fastTable maps a browser's address to its call's fast path.
type fastTable struct {
	mu sync.RWMutex
	by map[netip.AddrPort]*fastWeb // guarded by mu
}

func newFastTable() *fastTable { return &fastTable{by: map[netip.AddrPort]*fastWeb{}} }

func (t *fastTable) get(a netip.AddrPort) *fastWeb {
	t.mu.RLock()
	f := t.by[a]
	t.mu.RUnlock()
	return f
}

// move makes f the fast path for to, and drops its entry for from.
func (t *fastTable) move(f *fastWeb, from, to netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if from.IsValid() && t.by[from] == f {
		delete(t.by, from)
	}
	if to.IsValid() {
		t.by[to] = f
	}
}

func (t *fastTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.by)
}

// relay handles b, a datagram from a browser, on the fast path if it is
// RTP of a call that has one; false leaves it to pion.
func (t *fastTable) relay(sock *iceSocket, b []byte, from netip.AddrPort) bool {
	// RFC 7983 §7: 128–191 is RTP or RTCP; RFC 5761 §4: RTCP packet types
	// are 192–223 (STUN is 0–3, DTLS 20–63).
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return false
	}
	f := t.get(from)
	if f == nil {
		return false
	}
	return f.receive(sock, b)
}

// fastWeb is one call's fast path: the SRTP contexts of the browser leg
// and where the browser is.
type fastWeb struct {
	s *Session

	mu     sync.Mutex // the receive side (one socket reader at a time)
	in     *srtp.Context
	dec    [1500]byte // guarded by mu
	hdr    rtp.Header // guarded by mu
	pkt    rtp.Packet // guarded by mu
	good   bool       // guarded by mu; a packet has decrypted
	failed int        // guarded by mu; packets that did not, before one did
	waited int        // guarded by mu; packets left to pion in handover seen
	seen   uint64     // guarded by mu; the handover waited counts for
	taken  uint64     // guarded by mu; the last handover that ended

	// handover numbers the times packets of the browser may have been
	// left queued on pion's path (arming is 1, each move one more); the
	// fast path has taken over when taken has caught up (takeOver). A
	// counter, not a flag: a move during a handover must start another.
	handover atomic.Uint64

	// The send side runs under the toWeb pipe's mutex (fromPlain).
	out    *srtp.Context
	outHdr rtp.Header
	enc    [1500]byte

	to   atomic.Pointer[netip.AddrPort] // the browser's address, nil before the pair is known
	sock atomic.Pointer[iceSocket]      // where to send from

	fastIn, fastOut prometheus.Counter
}

func newFastWeb(s *Session, local, remote *srtp.Context) *fastWeb {
	f := &fastWeb{s: s, in: remote, out: local,
		fastIn: s.b.m.fast.WithLabelValues("in"), fastOut: s.b.m.fast.WithLabelValues("out")}
	f.handover.Store(1)
	return f
}

// maxHandoverWaits bounds a handover: after this many of the browser's
// packets left to pion (half a second of audio at 20 ms), the fast path
// takes over even if none followed on (the network lost one).
const maxHandoverWaits = 25

// maxUndecryptable is how many of a browser's packets may fail to decrypt
// with the fast path's keys before any succeeded; then the path stands
// down and pion keeps the call (keys that do not fit must never leave a
// call silent).
const maxUndecryptable = 50

// receive decrypts one of the browser's packets and relays it; false
// leaves it to pion.
func (f *fastWeb) receive(sock *iceSocket, b []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	plain, err := f.in.DecryptRTP(f.dec[:0], b, &f.hdr)
	if err != nil {
		if f.good {
			f.s.drop("srtp_auth") // a replay, or a forgery
			return true
		}
		if f.failed++; f.failed == maxUndecryptable {
			f.s.log.Warn("bridge: the browser's SRTP does not decrypt with the handshake's keys; leaving the call to pion", "err", err)
			f.s.dropFast(f)
		}
		return false
	}
	f.good = true
	if f.sock.Load() != sock {
		f.sock.Store(sock) // the browser's packets arrive here: answer from here
	}
	if f.pkt.Unmarshal(plain) != nil {
		f.s.drop("not_rtp")
		return true
	}
	if !f.takeOver() {
		return false
	}
	f.fastIn.Inc()
	f.s.fromWeb(&f.pkt, time.Now())
	return true
}

// takeOver tells whether the fast path may relay f.pkt. Until a handover
// ends, the browser's earlier packets may still sit in pion's queue (its
// SRTP session, Session.readWeb) and would reach the phone after this
// newer one: two goroutines, no order between them. So a packet that does
// not follow on the newest one the bridge has received from the browser
// goes to pion too, behind those, and the fast path takes over at the
// first one that does. Called with mu held (then the pipe's: fromWeb
// takes only the latter, so the order is the same everywhere).
func (f *fastWeb) takeOver() bool {
	h := f.handover.Load()
	if h == f.taken {
		return true
	}
	if h != f.seen {
		f.seen, f.waited = h, 0
	}
	if !f.s.toPlain.follows(f.pkt.SSRC, f.pkt.SequenceNumber) && f.waited < maxHandoverWaits {
		f.waited++
		return false
	}
	f.taken = h
	return true
}

// send encrypts one packet for the browser and sends it from sock to to
// (as the caller loaded them: unlist may clear f.to meanwhile). Called
// with the toWeb pipe's mutex held, plain being the packet marshalled.
func (f *fastWeb) send(plain []byte, to *netip.AddrPort, sock *iceSocket) bool {
	out, err := f.out.EncryptRTP(f.enc[:0], plain, &f.outHdr)
	if err != nil {
		return false
	}
	if _, err = sock.write(out, *to); err != nil {
		return false
	}
	f.fastOut.Inc()
	return true
}

// DTLS roles of a browser leg (RFC 5763 §5), as the SDP settled them.
const (
	roleUnknown int32 = iota
	roleClient
	roleServer
)

// setRole records this side's DTLS role from an answer: ours (active:
// client) or the browser's (its active makes us the server). The first
// answer decides; pion does not restart DTLS later.
func (s *Session) setRole(answer string, ours bool) {
	r := roleUnknown
	switch {
	case strings.Contains(answer, "a=setup:active"):
		r = roleClient
	case strings.Contains(answer, "a=setup:passive"):
		r = roleServer
	default:
		return
	}
	if !ours {
		r = roleClient + roleServer - r
	}
	s.dtlsRole.CompareAndSwap(roleUnknown, r)
}

// hookFast arms the fast path when the browser leg's DTLS connects, and
// has it follow the browser's address.
func (s *Session) hookFast() {
	dt := s.pc.SCTP().Transport()
	dt.OnStateChange(func(st webrtc.DTLSTransportState) {
		if st == webrtc.DTLSTransportStateConnected {
			s.armFast(dt)
		}
	})
	dt.ICETransport().OnSelectedCandidatePairChange(s.onPair)
}

// armFast takes the handshake's keys (on pion's goroutine, see dtlsKeys).
func (s *Session) armFast(dt *webrtc.DTLSTransport) {
	role := s.dtlsRole.Load()
	if role == roleUnknown {
		s.log.Warn("bridge: DTLS role unknown; the call stays on pion's media path")
		return
	}
	local, remote, err := dtlsKeys(dt, role == roleClient)
	if err != nil {
		s.log.Warn("bridge: no fast media path; the call stays on pion's", "err", err)
		return
	}
	f := newFastWeb(s, local, remote)
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	s.fast.Store(f)
	if p := s.pair; p != nil {
		s.moveFast(f, *p)
	}
}

// onPair follows ICE to the browser's selected address.
func (s *Session) onPair(p *webrtc.ICECandidatePair) {
	if p == nil || p.Local == nil || p.Remote == nil {
		return
	}
	remote, err1 := netip.ParseAddr(p.Remote.Address)
	local, err2 := netip.ParseAddr(p.Local.Address)
	if err1 != nil || err2 != nil {
		return // an mDNS name: pion keeps the call until an address shows
	}
	sp := selectedPair{remote: netip.AddrPortFrom(remote.Unmap(), p.Remote.Port), local: local.Unmap()}
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if p.Local.Typ != webrtc.ICECandidateTypeHost {
		// A relayed (or server-reflexive) local candidate: the browser's
		// packets arrive on pion's TURN client socket, and ours must leave
		// through it. pion keeps the call.
		s.pair = nil
		if f := s.fast.Load(); f != nil {
			s.unlist(f)
		}
		return
	}
	s.pair = &sp
	if f := s.fast.Load(); f != nil {
		s.moveFast(f, sp)
	}
}

// selectedPair is the browser's address and the bridge's, as ICE chose them.
type selectedPair struct {
	remote netip.AddrPort
	local  netip.Addr
}

// moveFast points f at p. Called with fastMu held.
func (s *Session) moveFast(f *fastWeb, p selectedPair) {
	var old netip.AddrPort
	if o := f.to.Swap(&p.remote); o != nil {
		old = *o
	}
	if old != p.remote {
		// Packets from the new address reached pion until now.
		f.handover.Add(1)
	}
	if sock := s.b.sockFor(p.local); sock != nil {
		f.sock.Store(sock)
	}
	select {
	case <-s.done:
		return // ended meanwhile: stopFast has run or will find nothing
	default:
	}
	s.b.fast.move(f, old, p.remote)
}

// stopFast takes the call out of the fast table.
func (s *Session) stopFast() {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	if f := s.fast.Load(); f != nil {
		s.unlist(f)
	}
}

// dropFast retires f for good (its keys do not fit): pion keeps the call.
func (s *Session) dropFast(f *fastWeb) {
	s.fastMu.Lock()
	defer s.fastMu.Unlock()
	s.fast.CompareAndSwap(f, nil)
	s.unlist(f)
}

// unlist takes f out of the fast table and forgets the browser's address,
// so that writeWeb sends through pion. Called with fastMu held.
func (s *Session) unlist(f *fastWeb) {
	if old := f.to.Swap(nil); old != nil {
		s.b.fast.move(f, *old, netip.AddrPort{})
	}
}

// sockFor is the ICE socket on local; with none (a public address written
// into the candidates, PublicIPs), the only one of its family, else nil
// (the fast path then learns it from the browser's packets).
func (b *Bridge) sockFor(local netip.Addr) *iceSocket {
	var same *iceSocket
	n := 0
	for _, s := range b.socks {
		a := s.addr().Addr()
		if a == local {
			return s
		}
		if a.Is4() == local.Is4() {
			same, n = s, n+1
		}
	}
	if n == 1 {
		return same
	}
	return nil
}

// writeWeb sends one packet to the browser: on the fast path when it is
// armed, else through pion's track. Called with the toWeb pipe's mutex
// held (its buffer is free in this direction).
func (s *Session) writeWeb(h *rtp.Header, payload []byte) bool {
	f := s.fast.Load()
	var (
		to   *netip.AddrPort
		sock *iceSocket
	)
	if f != nil {
		to, sock = f.to.Load(), f.sock.Load()
	}
	if to != nil && sock != nil {
		ssrc, ok := s.track.boundSSRC()
		if !ok {
			return false
		}
		h.SSRC = ssrc
		buf := s.toWeb.buf[:]
		n, err := h.MarshalTo(buf)
		if err != nil || n+len(payload) > len(buf) {
			return false
		}
		n += copy(buf[n:], payload)
		return f.send(buf[:n], to, sock)
	}
	return s.track.write(h, payload)
}
