package bridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Bridge makes bridged sessions; one per peer.
type Bridge struct {
	cfg   Config
	api   *webrtc.API
	ports *portPool
	m     *metrics
	log   *slog.Logger
	// iceMux carries the ICE (and then DTLS-SRTP) of every browser leg on
	// icePort, the top port of the range that was free.
	iceMux  *ice.MultiUDPMuxDefault
	icePort int
	socks   []*iceSocket // iceMux's sockets, which the bridge reads itself
	fast    *fastTable   // browser address → the call's fast path

	mu       sync.Mutex
	sessions map[*Session]struct{} // guarded by mu
	cert     *webrtc.Certificate   // guarded by mu; the browser legs' DTLS certificate
	certAt   time.Time             // guarded by mu; when cert was made
}

// RelayConn is an allocation on a TURN relay (RFC 8656): a PacketConn
// whose LocalAddr is the relayed address, and which can install
// permissions before the first packet goes out (§9).
type RelayConn interface {
	net.PacketConn
	CreatePermission(addrs ...net.Addr) error
}

// Leg says where a session's plain RTP leg lives.
type Leg struct {
	// Relay, when set, puts the leg on an allocation at an overlay relay:
	// the phone cannot reach this peer (NAT, a LAN that passes only
	// HTTPS). It is called once per session.
	Relay func(ctx context.Context) (RelayConn, error)
	// IP is the address written into the SDP when the leg is on this
	// peer's own socket: its public address, or the LAN address facing
	// the phone. Ignored with Relay.
	IP netip.Addr
}

// Events are the session's calls back into the SIP side. Each may be nil
// and must not block for long.
type Events struct {
	// OnEnd: the session ended by itself (media timeout, ICE failure, the
	// browser's DTLS closed); the SIP side ends both dialogs. Called once.
	OnEnd func(reason string)
	// OnPhoneDigit: a DTMF digit from the phone (RFC 4733), to send to the
	// browser as SIP INFO.
	OnPhoneDigit func(digit byte, d time.Duration)
	// OnBrowserDigit: a DTMF digit from the browser for a phone that did
	// not negotiate telephone-event, to send to it as SIP INFO.
	OnBrowserDigit func(digit byte, d time.Duration)
}

// New makes a Bridge.
func New(cfg Config) (*Bridge, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	me := &webrtc.MediaEngine{}
	// G.711 and telephone-event only (no TWCC, no Opus): RFC 7874 §3 makes
	// browsers offer both laws, and a phone has at least one.
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTE, ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 101},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("bridge: registering %s: %w", c.MimeType, err)
		}
	}
	// No interceptors: the session sends the browser its RTCP reports
	// itself (Session.sendWebRTCP). pion's report interceptors sat in
	// both packet paths and allocated twice per packet received.
	ir := &interceptor.Registry{}
	se := webrtc.SettingEngine{LoggerFactory: pionLogs{cfg.Logger}, BufferFactory: streamBuffer}
	if err := se.SetEphemeralUDPPortRange(uint16(cfg.PortMin), uint16(cfg.PortMax)); err != nil {
		return nil, fmt.Errorf("bridge: ICE port range: %w", err)
	}
	se.SetICETimeouts(cfg.ICEFailedTimeout/2, cfg.ICEFailedTimeout, 2*time.Second)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	if len(cfg.PublicIPs) > 0 {
		// Appended, not replaced: browsers on the peer's own LAN still
		// reach it by its interface addresses.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteAppend}); err != nil {
			return nil, fmt.Errorf("bridge: public addresses %v: %w", cfg.PublicIPs, err)
		}
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// No mDNS: pion would open four sockets and six goroutines per call
	// for it. A browser that hides its address behind a .local name
	// still connects: its checks reach the bridge's host candidate, which
	// learns the browser's address from them (RFC 8445 §7.3.1.3).
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	ports := newPortPool(cfg.PortMin, cfg.PortMax, cfg.PortQuarantine)
	conns, muxPort, err := listenICE(cfg)
	if err != nil {
		return nil, err
	}
	if len(conns) == 0 {
		cfg.Logger.Warn("media bridge: no address for ICE (no interface but loopback is up; loopback counts only with --media-loopback): calls between browsers and phones cannot be bridged")
	} else {
		ports.reserve(muxPort)
	}
	m, fast := newMetrics(cfg.Registerer), newFastTable()
	mux, socks := newICEMux(conns, fast, m, cfg)
	// One UDP port for the ICE of every browser leg (RFC 8445 allows
	// sharing: the ICE username tells the calls apart), instead of a
	// socket and a reader per interface per call.
	se.SetICEUDPMux(mux)
	b := &Bridge{iceMux: mux, icePort: muxPort, socks: socks, fast: fast, cfg: cfg, ports: ports,
		m: m, log: cfg.Logger, sessions: map[*Session]struct{}{}}
	b.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return b, nil
}

// Active is how many sessions are open.
func (b *Bridge) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// Close ends every session.
func (b *Bridge) Close() {
	b.mu.Lock()
	ss := make([]*Session, 0, len(b.sessions))
	for s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
	_ = b.iceMux.Close()
}

// ICEPort is the UDP port of the browser legs' ICE.
func (b *Bridge) ICEPort() int { return b.icePort }

// certMaxAge is how long one DTLS certificate serves new browser legs.
// pion's certificates are valid for a month (from a day before they were
// made); a day leaves every call that starts with one weeks of validity.
const certMaxAge = 24 * time.Hour

// certificate is the DTLS certificate of new browser legs. One for all of
// them, not pion's default of a new key and certificate per
// PeerConnection: that is an ECDSA key generation and signature per call,
// and the key, certificate and its parsed form kept for the call's
// length. Sharing it is what browsers do too (RTCCertificate); the
// answer's fingerprint still binds each call's DTLS to its signaling.
func (b *Bridge) certificate() ([]webrtc.Certificate, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cert == nil || time.Since(b.certAt) > certMaxAge {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("bridge: DTLS key: %w", err)
		}
		c, err := webrtc.GenerateCertificate(key)
		if err != nil {
			return nil, fmt.Errorf("bridge: DTLS certificate: %w", err)
		}
		b.cert, b.certAt = c, time.Now()
	}
	return []webrtc.Certificate{*b.cert}, nil
}

func (b *Bridge) add(s *Session) {
	b.mu.Lock()
	b.sessions[s] = struct{}{}
	b.mu.Unlock()
	b.m.active.Inc()
}

func (b *Bridge) remove(s *Session) {
	b.mu.Lock()
	_, ok := b.sessions[s]
	delete(b.sessions, s)
	b.mu.Unlock()
	if ok {
		b.m.active.Dec()
	}
}
