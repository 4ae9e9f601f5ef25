package bridge

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is what a session description offers or answers, as far as the SIP
// side's choice to bridge goes.
type Kind uint8

const (
	// KindOther: no audio, SRTP with SDES keys, or unparseable: neither
	// side of a bridge; the SIP side passes it on untouched.
	KindOther Kind = iota
	// KindWebRTC: ICE and a DTLS fingerprint (UDP/TLS/RTP/SAVPF): a
	// browser.
	KindWebRTC
	// KindPlain: RTP/AVP (or AVPF) audio without encryption: an ordinary
	// phone.
	KindPlain
)

func (k Kind) String() string { return [...]string{"other", "webrtc", "plain"}[k] }

// Classify tells a browser's description from a plain phone's.
func Classify(sdp []byte) Kind {
	sd, err := parseSDP(sdp)
	if err != nil {
		return KindOther
	}
	m := firstAudio(sd)
	switch {
	case m == nil:
		return KindOther
	case m.fingerprint && m.ice && strings.Contains(m.proto, "SAVP"):
		return KindWebRTC
	case isPlainProto(m.proto) && !m.fingerprint && !m.crypto:
		return KindPlain
	}
	return KindOther
}

func isPlainProto(p string) bool { return p == "RTP/AVP" || p == "RTP/AVPF" }

// firstAudio is the first audio section that is not rejected (port 0).
func firstAudio(sd *sessionDesc) *mediaDesc {
	for i := range sd.media {
		if m := &sd.media[i]; m.kind == "audio" && m.port != 0 {
			return m
		}
	}
	return nil
}

// plainCodec is a G.711 law under the payload type one leg gave it.
type plainCodec struct {
	pt  uint8
	law law
}

// farEnd is what the bridge takes from a phone's plain description.
type farEnd struct {
	rtp    netip.AddrPort // an unspecified address: do not send (c=0.0.0.0 hold)
	rtcp   netip.AddrPort
	mux    bool
	codecs []plainCodec // the G.711 laws, in the phone's order
	te     int          // telephone-event/8000 payload type, -1 without
	dir    direction
	ptime  int
	mline  int // index of the bridged section
	media  []mediaDesc
}

// readPlain reads a phone's description.
func readPlain(b []byte) (*farEnd, error) {
	sd, err := parseSDP(b)
	if err != nil {
		return nil, err
	}
	idx := -1
	for i := range sd.media {
		if m := sd.media[i]; m.kind == "audio" && m.port != 0 {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("%w: no audio stream", ErrNotPlain)
	}
	m := sd.media[idx]
	if !isPlainProto(m.proto) || m.fingerprint || m.crypto {
		return nil, fmt.Errorf("%w: audio is %s", ErrNotPlain, m.proto)
	}
	if !m.conn.IsValid() {
		return nil, fmt.Errorf("%w: no connection address", ErrBadSDP)
	}
	fe := &farEnd{te: -1, dir: m.dir, ptime: m.ptime, mline: idx, media: sd.media, mux: m.mux}
	codecs, te := g711Of(&m)
	fe.codecs, fe.te = codecs, te
	if len(fe.codecs) == 0 {
		return nil, ErrNoCommonCodec
	}
	ip := m.conn.Unmap()
	if ip.IsUnspecified() {
		// RFC 3264 §8.4: the old way to hold; the phone will not receive.
		fe.dir = dirOf(fe.dir.sends(), false)
	}
	fe.rtp = netip.AddrPortFrom(ip, uint16(m.port))
	switch {
	case m.mux:
		fe.rtcp = fe.rtp
	case m.rtcpPort != 0 && m.rtcpAddr.IsValid():
		fe.rtcp = netip.AddrPortFrom(m.rtcpAddr.Unmap(), uint16(m.rtcpPort))
	case m.rtcpPort != 0:
		fe.rtcp = netip.AddrPortFrom(ip, uint16(m.rtcpPort))
	default:
		fe.rtcp = netip.AddrPortFrom(ip, uint16(min(m.port+1, 65535)))
	}
	return fe, nil
}

// g711Of lists a section's G.711 codecs in its order and finds its
// telephone-event/8000 payload type (-1 without).
func g711Of(m *mediaDesc) ([]plainCodec, int) {
	var out []plainCodec
	te := -1
	for _, f := range m.fmts {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 127 {
			continue
		}
		pt := uint8(n)
		name, ok := m.rtpmap[pt]
		if !ok {
			switch pt { // static payload types need no rtpmap (RFC 3551 §6)
			case 0:
				name = "PCMU/8000"
			case 8:
				name = "PCMA/8000"
			}
		}
		enc, rate, _ := strings.Cut(name, "/")
		rate, _, _ = strings.Cut(rate, "/") // channels
		switch {
		case strings.EqualFold(enc, "PCMU") && rate == "8000":
			out = append(out, plainCodec{pt, pcmu})
		case strings.EqualFold(enc, "PCMA") && rate == "8000":
			out = append(out, plainCodec{pt, pcma})
		case strings.EqualFold(enc, "telephone-event") && rate == "8000" && te < 0:
			te = int(pt)
		}
	}
	return out, te
}

// plainOut is a plain description the bridge writes toward the phone.
type plainOut struct {
	sessID, version uint64
	ip              netip.Addr
	port            int
	codecs          []plainCodec
	te              int // -1: no telephone-event
	dir             direction
	// For an answer: the offer's sections and which one is bridged; the
	// others are rejected with port 0 (RFC 3264 §6). Nil for an offer.
	media []mediaDesc
	mline int
}

// marshal writes the description (RFC 8866 field order).
func (p *plainOut) marshal() []byte {
	var b bytes.Buffer
	fam := "IP4"
	if p.ip.Is6() {
		fam = "IP6"
	}
	fmt.Fprintf(&b, "v=0\r\no=p2psip %d %d IN %s %s\r\ns=p2psip-bridge\r\nc=IN %s %s\r\nt=0 0\r\n",
		p.sessID, p.version, fam, p.ip, fam, p.ip)
	if p.media == nil {
		p.audio(&b)
		return b.Bytes()
	}
	for i, m := range p.media {
		if i == p.mline {
			p.audio(&b)
			continue
		}
		fmts := strings.Join(m.fmts, " ")
		if fmts == "" {
			fmts = "0"
		}
		fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", m.kind, m.proto, fmts)
	}
	return b.Bytes()
}

func (p *plainOut) audio(b *bytes.Buffer) {
	b.WriteString("m=audio " + strconv.Itoa(p.port) + " RTP/AVP")
	for _, c := range p.codecs {
		b.WriteString(" " + strconv.Itoa(int(c.pt)))
	}
	if p.te >= 0 {
		b.WriteString(" " + strconv.Itoa(p.te))
	}
	b.WriteString("\r\n")
	for _, c := range p.codecs {
		fmt.Fprintf(b, "a=rtpmap:%d %s/8000\r\n", c.pt, c.law)
	}
	if p.te >= 0 {
		fmt.Fprintf(b, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", p.te, p.te)
	}
	b.WriteString("a=ptime:20\r\n")
	// RTCP shares the RTP port (RFC 3605 names it; RFC 5761 §4 lets the
	// bridge tell the two apart), so one socket or one relay allocation
	// carries both.
	fam := "IP4"
	if p.ip.Is6() {
		fam = "IP6"
	}
	fmt.Fprintf(b, "a=rtcp:%d IN %s %s\r\na=rtcp-mux\r\n", p.port, fam, p.ip)
	b.WriteString("a=" + p.dir.String() + "\r\n")
}

// webrtcOffer is what the bridge needs from a browser's description
// before pion sees it: whether it can meet a phone at all.
type webrtcDesc struct {
	codecs []plainCodec // G.711 the browser has, in its order
	te     int          // telephone-event/8000, -1 without
	dir    direction
}

func readWebRTC(b []byte) (*webrtcDesc, error) {
	sd, err := parseSDP(b)
	if err != nil {
		return nil, err
	}
	m := firstAudio(sd)
	if m == nil || !m.fingerprint || !m.ice {
		return nil, ErrNotWebRTC
	}
	codecs, te := g711Of(m)
	if len(codecs) == 0 {
		return nil, ErrNoCommonCodec
	}
	return &webrtcDesc{codecs: codecs, te: te, dir: m.dir}, nil
}
