package bridge

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// pipe is one direction of the bridged media: what came in on one leg and
// goes out on the other.
type pipe struct {
	s        *Session
	from, to string

	mu  sync.Mutex // the packet path of this direction (one reader goroutine; the sampler)
	rw  *rewriter
	rx  recvStats
	te  teTracker
	buf [1500]byte

	sent   atomic.Uint64
	octets atomic.Uint64
	lastTS atomic.Uint32

	in, out prometheus.Counter
}

func newPipe(s *Session, from, to string, ssrc uint32) *pipe {
	m := s.b.m
	return &pipe{s: s, from: from, to: to, rw: newRewriter(ssrc, 8000), rx: recvStats{clock: 8000},
		in: m.packets.WithLabelValues(from, "in"), out: m.packets.WithLabelValues(to, "out")}
}

// sample moves the incoming leg's loss and jitter into the metrics.
func (p *pipe) sample() {
	p.mu.Lock()
	loss, jit, started := p.rx.newLoss(), p.rx.jitterSeconds(), p.rx.started
	p.mu.Unlock()
	if !started {
		return
	}
	m := p.s.b.m
	m.lost.WithLabelValues(p.from).Add(float64(loss))
	m.jitter.WithLabelValues(p.from).Observe(jit)
}

func (s *Session) drop(reason string) { s.b.m.dropped.WithLabelValues(reason).Inc() }

// readWeb relays the browser's audio to the phone.
func (s *Session) readWeb(t *webrtc.TrackRemote) {
	// One buffer and one packet for the whole call: ReadRTP would allocate
	// both per packet, and at 50 packets/s per call that garbage is what
	// the collector spends its time on.
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err == nil && (pkt.Unmarshal(buf[:n]) != nil || pkt.Version != 2) {
			s.drop("not_rtp")
			continue
		}
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			continue // pion: a payload type it does not know; not fatal
		}
		s.fromWeb(&pkt, time.Now())
	}
}

// follows tells whether a packet of ssrc numbered seq is the next one
// after the newest this pipe has received (the fast path's handover).
func (p *pipe) follows(ssrc uint32, seq uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rx.started && p.rx.ssrc == ssrc && seq == uint16(p.rx.maxSeq)+1
}

func (s *Session) fromWeb(pkt *rtp.Packet, now time.Time) {
	s.lastWebRx.Store(now.UnixNano())
	p := s.toPlain
	r := s.route.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in.Inc()
	p.rx.update(pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, now)
	if r == nil {
		s.drop("no_destination")
		return
	}
	switch pt := int(pkt.PayloadType); {
	case pt == r.webPT:
		convertLaw(pkt.Payload, r.webLaw, r.plainLaw)
		pkt.PayloadType = uint8(r.plainPT)
	case r.webTE >= 0 && pt == r.webTE:
		e, ended := p.te.end(pkt.Timestamp, pkt.Payload)
		if r.plainTE >= 0 {
			// RFC 4733 to a phone that has it: only the header changes,
			// so marker, duration and the end packets arrive intact.
			pkt.PayloadType = uint8(r.plainTE)
			if ended {
				s.b.m.dtmf.WithLabelValues("browser", "rfc4733").Inc()
			}
			break
		}
		if ended && s.ev.OnBrowserDigit != nil {
			s.b.m.dtmf.WithLabelValues("browser", "info").Inc()
			go s.ev.OnBrowserDigit(e.digit(), time.Duration(e.duration)*time.Second/8000)
		}
		p.rw.skip(pkt.SSRC, pkt.SequenceNumber)
		return
	default:
		s.drop("unknown_pt")
		p.rw.skip(pkt.SSRC, pkt.SequenceNumber)
		return
	}
	if !r.plainDir.recvs() {
		s.drop("hold")
		return
	}
	dst, ok := s.leg.dest(false)
	if !ok {
		s.drop("no_destination")
		return
	}
	p.rw.rewrite(&pkt.SSRC, &pkt.SequenceNumber, &pkt.Timestamp, now)
	clearExtras(pkt)
	n, err := pkt.MarshalTo(p.buf[:])
	if err != nil {
		s.drop("not_rtp")
		return
	}
	if err := s.leg.write(p.buf[:n], dst); err != nil {
		s.drop("no_destination")
		return
	}
	p.out.Inc()
	p.sent.Add(1)
	p.octets.Add(uint64(len(pkt.Payload)))
	p.lastTS.Store(pkt.Timestamp)
}

// clearExtras drops what belongs to the browser's leg only: header
// extensions (audio level, mid), CSRCs and padding.
func clearExtras(pkt *rtp.Packet) {
	pkt.Extension, pkt.Extensions, pkt.ExtensionProfile = false, nil, 0
	pkt.CSRC = nil
	pkt.Padding, pkt.PaddingSize = false, 0
}

// readPlain relays the phone's audio to the browser.
func (s *Session) readPlain() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, src, err := s.leg.read(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := buf[:n]
		now := time.Now()
		if isRTCP(b) {
			s.leg.learn(src, true)
			continue
		}
		if pkt.Unmarshal(b) != nil || pkt.Version != 2 {
			s.drop("not_rtp")
			continue
		}
		s.fromPlain(&pkt, src, now)
	}
}

// isRTCP tells RTCP from RTP on a shared port by the second byte
// (RFC 5761 §4: RTCP packet types 192–223).
func isRTCP(b []byte) bool { return len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223 }

func (s *Session) fromPlain(pkt *rtp.Packet, src netip.AddrPort, now time.Time) {
	r := s.route.Load()
	if r == nil {
		s.drop("no_destination") // the browser has not answered yet
		return
	}
	pt := int(pkt.PayloadType)
	if pt != r.plainPT && (r.plainTE < 0 || pt != r.plainTE) {
		s.drop("unknown_pt")
		return
	}
	s.leg.learn(src, false)
	s.lastPlainRx.Store(now.UnixNano())
	p := s.toWeb
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in.Inc()
	p.rx.update(pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, now)
	if r.plainTE >= 0 && pt == r.plainTE {
		// A browser cannot receive RFC 4733 (WebRTC 1.0 has no API for
		// it): the digit goes to it as SIP INFO.
		if e, ok := p.te.end(pkt.Timestamp, pkt.Payload); ok && s.ev.OnPhoneDigit != nil {
			s.b.m.dtmf.WithLabelValues("phone", "info").Inc()
			go s.ev.OnPhoneDigit(e.digit(), time.Duration(e.duration)*time.Second/8000)
		}
		p.rw.skip(pkt.SSRC, pkt.SequenceNumber)
		return
	}
	convertLaw(pkt.Payload, r.plainLaw, r.webLaw)
	pkt.PayloadType = uint8(r.webPT)
	if !r.webDir.recvs() {
		s.drop("hold")
		return
	}
	before := p.rw.resyncs
	p.rw.rewrite(&pkt.SSRC, &pkt.SequenceNumber, &pkt.Timestamp, now)
	if p.rw.resyncs != before {
		s.b.m.resyncs.WithLabelValues("plain").Inc()
	}
	clearExtras(pkt)
	if !s.writeWeb(&pkt.Header, pkt.Payload) {
		s.drop("no_destination")
		return
	}
	p.out.Inc()
	p.sent.Add(1)
	p.octets.Add(uint64(len(pkt.Payload)))
}

// sendPlainRTCP sends the phone a sender report (or a receiver report
// before the bridge has sent anything) with a reception block for the
// phone's stream (RFC 3550 §6.4).
func (s *Session) sendPlainRTCP() {
	dst, ok := s.leg.dest(true)
	if !ok {
		return
	}
	in := s.toWeb
	in.mu.Lock()
	var reports []rtcp.ReceptionReport
	if in.rx.started {
		frac, total := in.rx.interval()
		reports = append(reports, rtcp.ReceptionReport{SSRC: in.rx.ssrc, FractionLost: frac,
			TotalLost: uint32(max(0, min(total, 1<<23-1))), LastSequenceNumber: in.rx.maxSeq, Jitter: uint32(in.rx.jitter)})
	}
	in.mu.Unlock()
	out := s.toPlain
	var pkt rtcp.Packet
	if sent := out.sent.Load(); sent > 0 {
		pkt = &rtcp.SenderReport{SSRC: out.rw.ssrc, NTPTime: ntpTime(time.Now()), RTPTime: out.lastTS.Load(),
			PacketCount: uint32(sent), OctetCount: uint32(out.octets.Load()), Reports: reports}
	} else {
		pkt = &rtcp.ReceiverReport{SSRC: out.rw.ssrc, Reports: reports}
	}
	b, err := pkt.Marshal()
	if err != nil {
		return
	}
	_ = s.leg.write(b, dst)
}

// sendWebRTCP sends the browser a sender report for the bridge's stream
// (a receiver report before it has sent anything) with a reception block
// for the browser's stream, what pion's report interceptors did before:
// those cost two goroutines per call and, on the receiving side, two
// allocations per packet (interceptor attributes and a parsed header).
func (s *Session) sendWebRTCP(now time.Time) {
	ssrc, ok := s.track.boundSSRC()
	if !ok {
		return
	}
	in := s.toPlain
	in.mu.Lock()
	var reports []rtcp.ReceptionReport
	if in.rx.started {
		frac, total := in.rx.interval()
		rr := rtcp.ReceptionReport{SSRC: in.rx.ssrc, FractionLost: frac,
			TotalLost: uint32(max(0, min(total, 1<<23-1))), LastSequenceNumber: in.rx.maxSeq, Jitter: uint32(in.rx.jitter)}
		rr.LastSenderReport, rr.Delay = s.webSR.since(now)
		reports = append(reports, rr)
	}
	in.mu.Unlock()
	out := s.toWeb
	var pkt rtcp.Packet
	if sent := out.sent.Load(); sent > 0 {
		out.mu.Lock()
		// The RTP time that corresponds to now: the newest packet's,
		// advanced by the wall-clock time since it went out.
		rtpTime := out.rw.lastTS + uint32(max(0, now.Sub(out.rw.lastAt))*time.Duration(out.rw.clock)/time.Second)
		out.mu.Unlock()
		pkt = &rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpTime(now), RTPTime: rtpTime,
			PacketCount: uint32(sent), OctetCount: uint32(out.octets.Load()), Reports: reports}
	} else {
		pkt = &rtcp.ReceiverReport{SSRC: ssrc, Reports: reports}
	}
	_ = s.pc.WriteRTCP([]rtcp.Packet{pkt})
}

// lastSR is the browser's newest sender report, for the LSR and DLSR
// fields of the reception block about its stream (RFC 3550 §6.4.1): from
// them the browser measures the round-trip time.
type lastSR struct {
	mu  sync.Mutex
	ntp uint32    // guarded by mu; the middle 32 bits of its NTP time
	at  time.Time // guarded by mu; when it arrived
}

func (l *lastSR) set(ntp uint64, at time.Time) {
	l.mu.Lock()
	l.ntp, l.at = uint32(ntp>>16), at
	l.mu.Unlock()
}

// since is LSR and DLSR (units of 1/65536 s) at now; zeros before the
// first sender report.
func (l *lastSR) since(now time.Time) (lsr, dlsr uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.IsZero() {
		return 0, 0
	}
	return l.ntp, uint32(max(0, now.Sub(l.at)) * 65536 / time.Second)
}

// ntpTime is t in RFC 3550 §4's 64-bit NTP format.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}
