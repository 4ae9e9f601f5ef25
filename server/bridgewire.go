package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2psip/p2psip/bridge"
	"github.com/p2psip/p2psip/overlay"
	sipsvc "github.com/p2psip/p2psip/server/sip"
	"github.com/p2psip/p2psip/web"
	"github.com/prometheus/client_golang/prometheus"
)

// mediaBridge is the SIP service's MediaBridge: package bridge, plus the
// choice of where each call's plain RTP leg lives (DESIGN.md, Media):
//
//   - toward a phone registered at this peer: this peer's address facing
//     it (the same LAN);
//   - on a public peer (--public-addr, or AutoNAT says public): its own
//     address;
//   - otherwise (NAT, a LAN that passes only HTTPS): an allocation on an
//     overlay relay, over UDP where UDP passes, else TCP, else TLS on 443
//     (the order the relay's URIs come in), so the phone gets a public
//     RTP address; an overlay with no relay at all (an ad-hoc LAN) uses
//     the peer's own address.
type mediaBridge struct {
	b      *bridge.Bridge
	cfg    Config
	node   *overlay.Node
	relays *relayDirectory
	log    *slog.Logger
	seq    atomic.Uint32

	mu       sync.Mutex
	lastGood map[string]string // guarded by mu; relay node → the URI that allocated last

	legs *prometheus.CounterVec
}

func newMediaBridge(cfg Config, node *overlay.Node, relays *relayDirectory, reg prometheus.Registerer, log *slog.Logger) (*mediaBridge, error) {
	bc := bridge.Config{PortMin: cfg.RTPPortMin, PortMax: cfg.RTPPortMax, MediaTimeout: cfg.MediaTimeout,
		IncludeLoopback: cfg.MediaLoopback, ICEIPs: cfg.MediaICEIPs, Logger: log, Registerer: reg}
	if cfg.PublicIP != "" {
		bc.PublicIPs = []string{cfg.PublicIP}
	}
	b, err := bridge.New(bc)
	if err != nil {
		return nil, err
	}
	m := &mediaBridge{b: b, cfg: cfg, node: node, relays: relays, log: log, lastGood: map[string]string{},
		legs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_rtp_legs_total",
			Help: "Where bridged calls' plain RTP legs were placed: local (facing a phone on this peer's LAN), own (this public peer's address), relay_udp, relay_tcp, relay_tls (an overlay relay allocation), or failed."},
			[]string{"place"})}
	if reg != nil {
		reg.MustRegister(m.legs)
	}
	return m, nil
}

func (m *mediaBridge) Close() { m.b.Close() }

// status is the bridge's part of /api/overlay and p2psip status.
func (m *mediaBridge) status() web.BridgeStatus {
	st := web.BridgeStatus{Calls: m.b.Active(), ICEPort: m.b.ICEPort(), RTPPorts: m.cfg.RTPPorts}
	switch ip, ok := m.publicIP(); {
	case ok:
		st.PhoneSide = "own " + ip.String()
	case len(m.relays.workingRelays()) > 0:
		st.PhoneSide = "overlay relay"
	default:
		st.PhoneSide = "own " + lanIP().String() + " (no overlay relay)"
	}
	return st
}

func (m *mediaBridge) Classify(sdp []byte) sipsvc.MediaKind {
	switch bridge.Classify(sdp) {
	case bridge.KindWebRTC:
		return sipsvc.MediaWebRTC
	case bridge.KindPlain:
		return sipsvc.MediaPlain
	}
	return sipsvc.MediaOther
}

func (m *mediaBridge) FromWebRTC(ctx context.Context, offer []byte, p sipsvc.Placement, ev sipsvc.MediaEvents) (sipsvc.MediaSession, []byte, error) {
	s, out, err := m.b.OfferFromWebRTC(ctx, offer, m.leg(p), events(ev))
	if err != nil {
		return nil, nil, err
	}
	return s, out, nil
}

func (m *mediaBridge) FromPlain(ctx context.Context, offer []byte, p sipsvc.Placement, ev sipsvc.MediaEvents) (sipsvc.MediaSession, []byte, error) {
	s, out, err := m.b.OfferFromPlain(ctx, offer, m.leg(p), events(ev))
	if err != nil {
		return nil, nil, err
	}
	return s, out, nil
}

func events(ev sipsvc.MediaEvents) bridge.Events {
	return bridge.Events{OnEnd: ev.OnEnd, OnPhoneDigit: ev.OnPhoneDigit, OnBrowserDigit: ev.OnBrowserDigit}
}

// leg places a call's plain RTP leg.
func (m *mediaBridge) leg(p sipsvc.Placement) bridge.Leg {
	if p.Local && p.DeviceIP.IsValid() {
		if ip, ok := localIPToward(p.DeviceIP); ok {
			m.legs.WithLabelValues("local").Inc()
			return bridge.Leg{IP: ip}
		}
	}
	if ip, ok := m.publicIP(); ok {
		m.legs.WithLabelValues("own").Inc()
		return bridge.Leg{IP: ip}
	}
	if len(m.relays.workingRelays()) == 0 {
		// No relay in the overlay (an ad-hoc LAN): the peer's own address
		// is the only one there is.
		m.legs.WithLabelValues("own").Inc()
		ip, _ := netip.AddrFromSlice(lanIP().To4())
		return bridge.Leg{IP: ip}
	}
	return bridge.Leg{Relay: m.allocate}
}

// publicIP is this peer's address when phones anywhere can reach it.
func (m *mediaBridge) publicIP() (netip.Addr, bool) {
	if m.cfg.PublicIP != "" {
		ip, err := netip.ParseAddr(m.cfg.PublicIP)
		return ip.Unmap(), err == nil
	}
	if m.cfg.Reachability == overlay.ReachPublic || m.node.Reachability().Reachability == "public" {
		ip, ok := netip.AddrFromSlice(lanIP().To4())
		return ip, ok
	}
	return netip.Addr{}, false
}

// localIPToward is the address this host sends to ip from (a UDP
// "connect" sends nothing; it only asks the routing table).
func localIPToward(ip netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer func() { _ = c.Close() }()
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return la.AddrPort().Addr().Unmap(), true
}

// relayTry bounds one transport's attempt: a UDP Allocate that gets no
// answer (a LAN that drops UDP) must leave time for TCP and TLS.
const relayTry = 2 * time.Second

// allocate gets an allocation for one call's RTP leg on the fastest
// working overlay relay, with a credential minted for it, trying the
// relay's URIs in order (UDP, TCP, TLS on 443), the one that worked last
// time first.
func (m *mediaBridge) allocate(ctx context.Context) (bridge.RelayConn, error) {
	var errs []error
	for _, r := range m.relays.workingRelays() {
		user := "bridge-" + strconv.Itoa(int(m.seq.Add(1)%100000))
		cred, err := m.relays.mint(ctx, r.node, user)
		if err != nil {
			errs = append(errs, fmt.Errorf("credential from relay %s: %w", short(r.node), err))
			continue
		}
		for _, uri := range m.order(r) {
			actx, cancel := context.WithTimeout(ctx, relayTry)
			a, err := allocateTURN(actx, uri, r.realm, cred, "p2psip-bridge")
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", uri, err))
				continue
			}
			m.mu.Lock()
			m.lastGood[r.node] = uri
			m.mu.Unlock()
			m.legs.WithLabelValues(placeOf(uri)).Inc()
			m.log.Debug("bridged call's RTP leg on a relay", "relay", short(r.node), "uri", uri, "relayed", a.LocalAddr().String())
			return a, nil
		}
	}
	m.legs.WithLabelValues("failed").Inc()
	if len(errs) == 0 {
		return nil, errors.New("no working overlay relay")
	}
	return nil, errors.Join(errs...)
}

// order is r's URIs with the one that allocated last first, then the one
// the directory's probe allocated through: a LAN that drops UDP and TCP
// 3478 does not wait for their timeouts on every call.
func (m *mediaBridge) order(r probedRelay) []string {
	m.mu.Lock()
	last := m.lastGood[r.node]
	m.mu.Unlock()
	uris := probeURIs(r.uris) // UDP, TCP, TLS
	for _, good := range []string{r.good, last} {
		if i := slices.Index(uris, good); i > 0 {
			uris = append([]string{good}, slices.Delete(uris, i, i+1)...)
		}
	}
	return uris
}

func placeOf(uri string) string {
	switch {
	case strings.HasPrefix(uri, "turns:"):
		return "relay_tls"
	case strings.Contains(uri, "transport=tcp"):
		return "relay_tcp"
	}
	return "relay_udp"
}

func short(id string) string {
	if len(id) > 12 {
		return id[len(id)-12:]
	}
	return id
}
