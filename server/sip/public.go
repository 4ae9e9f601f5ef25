package sip

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// isOverlayHost reports whether host names the overlay.
func (s *Service) isOverlayHost(host string) bool {
	return strings.EqualFold(host, s.cfg.Domain) || (s.cfg.Proxy != nil && strings.EqualFold(host, s.cfg.Proxy.FQDN))
}

// localSender returns the overlay AOR of the local device that sent req.
func (s *Service) localSender(req *sip.Request) string {
	if fl := s.flows.bySource(req.Source()); fl != nil {
		return fl.aor
	}
	return ""
}

// Reasons publicTargets gives when it cannot hand a request to a proxy.
const (
	noProxyReason       = "Service Unavailable (no P2P SIP proxy for other domains in the overlay)"
	notRegisteredReason = "Forbidden (not from a device registered at this peer: register first, from the address you send from)"
)

// publicTargets routes a request for another domain (§3.4 of the draft):
// a proxy peer resolves the domain (RFC 3263) for overlay users; other
// peers hand their own users' requests to a proxy found in the overlay.
func (s *Service) publicTargets(ctx context.Context, req *sip.Request) ([]target, int, string) {
	sender := s.localSender(req)
	if s.cfg.Proxy != nil {
		if sender == "" {
			// Another peer's user: the peer's stream is authenticated by
			// its node key, and a peer forwards only its registered
			// devices' requests (the branch below).
			node, ok := s.fromPeer(req)
			if !ok {
				s.log.Info("refused to relay for a sender neither registered here nor an overlay peer",
					"ruri", req.Recipient.String(), "source", req.Source())
				return nil, 403, "Forbidden (only users registered in the overlay may use this proxy)"
			}
			sender = "node " + node
		}
		hops, err := s.cfg.Proxy.Resolver.Resolve(ctx, req.Recipient)
		if err != nil {
			s.log.Warn("DNS lookup of a public domain failed", "ruri", req.Recipient.String(), "err", err)
			return nil, 503, "Service Unavailable (DNS lookup failed)"
		}
		if len(hops) == 0 {
			return nil, 404, "Not Found (domain has no SIP server)"
		}
		hop, code, reason := s.publicHop(req, sender, hops)
		if code != 0 {
			return nil, code, reason
		}
		// dest is the checked IP itself: nothing resolves the name again
		// (no DNS rebinding between the check and the send).
		return []target{{ruri: req.Recipient, dest: hop.Addr, transport: hop.Transport}}, 0, ""
	}
	if s.cfg.FindProxy == nil {
		return nil, 503, noProxyReason
	}
	if sender == "" {
		// Not from a registered device's flow (e.g. another source port
		// than the one it registered from): no proxy will take it, but
		// the fault is the sender's, not a missing proxy.
		return nil, 403, notRegisteredReason
	}
	proxies, err := s.cfg.FindProxy(ctx)
	if err != nil || len(proxies) == 0 {
		return nil, 503, noProxyReason
	}
	node, ok := s.pickPeer(ctx, proxies)
	if !ok {
		return nil, 503, "Service Unavailable (no P2P SIP proxy of the overlay is reachable)"
	}
	host, err := PeerHost(node)
	if err != nil {
		return nil, 503, "Service Unavailable (bad proxy record)"
	}
	pu := sip.Uri{Scheme: "sip", Host: host, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}
	return []target{{ruri: req.Recipient, routes: []sip.Uri{pu}}}, 0, ""
}

// pickPeer chooses among nodes (in the order given) the first that this
// peer has a stream to, else the first it can open one to: a proxy that
// left the overlay stays in the service records until they expire.
func (s *Service) pickPeer(ctx context.Context, nodes []string) (string, bool) {
	if s.links == nil {
		return nodes[0], true
	}
	for _, n := range nodes {
		if s.links.live(n) != nil {
			return n, true
		}
	}
	for _, n := range nodes {
		dctx, cancel := context.WithTimeout(ctx, pickPeerTimeout)
		_, err := s.links.ensure(dctx, n)
		cancel()
		if err == nil {
			return n, true
		}
		s.log.Info("overlay proxy unreachable, trying the next", "node", n, "err", err)
	}
	return "", false
}

// pickPeerTimeout bounds one attempt of pickPeer.
const pickPeerTimeout = 4 * time.Second

// relayRegister relays the REGISTER of a public AOR (e.g.
// alice@atlanta.example with contact sip:alice1@<overlay>) toward its
// registrar; the registrar's 401/407 challenge goes back unchanged, so
// the credentials never leave the user agent.
func (s *Service) relayRegister(req *sip.Request, tx sip.ServerTransaction) {
	// The checks and Route processing of any proxied request (§16.3–16.4).
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		s.respond(tx, req, 483, "Too Many Hops")
		return
	}
	if s.looped(req) {
		s.respond(tx, req, 482, "Loop Detected")
		return
	}
	if s.stripSelfRoute(req); req.Route() != nil {
		s.respond(tx, req, 403, "Forbidden (no relaying along foreign routes)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	targets, code, reason := s.publicTargets(ctx, req)
	cancel()
	if code == 503 && reason == noProxyReason {
		code, reason = 403, "Forbidden (not an AOR of "+s.cfg.Domain+", and no P2P SIP proxy to relay it)"
	}
	if code != 0 {
		s.respond(tx, req, code, reason)
		return
	}
	newFork(s, req, tx, targets).run()
}

// publicHop picks the first of the resolved hops the proxy may send to
// (DESIGN.md, Security: relaying to loopback, link-local and private
// targets is refused unless configured). When every hop is refused, the
// request gets a 403 naming the first one's kind.
func (s *Service) publicHop(req *sip.Request, sender string, hops []Hop) (Hop, int, string) {
	own := s.ownAddrs()
	var refused []string
	firstKind := ""
	for _, h := range hops {
		kind := hopKind(h.Addr, own)
		if hopAllowed(kind, s.cfg.Proxy.AllowPrivateTargets) {
			if len(refused) > 0 {
				s.log.Info("skipped public-side hops with private or local addresses", "ruri", req.Recipient.String(),
					"refused", refused, "hop", h.Addr, "sender", sender)
			}
			return h, 0, ""
		}
		if firstKind == "" {
			firstKind = kind
		}
		refused = append(refused, h.Addr+" ("+kind+")")
	}
	s.log.Warn("refused to relay to a private or local address on the public side", "ruri", req.Recipient.String(),
		"refused", refused, "sender", sender, "source", req.Source())
	what := "a " + firstKind + " address"
	switch firstKind {
	case kindOwn:
		what = "this proxy's own address"
	case kindInvalid:
		what = "no usable address"
	}
	return Hop{}, 403, "Forbidden (the target resolves to " + what + ", which this proxy does not relay to)"
}

// ownAddrs is this host's addresses: the service's Host and Aliases, and
// every interface's (read again after ownIfacesTTL).
func (s *Service) ownAddrs() []netip.Addr {
	var out []netip.Addr
	for _, h := range append([]string{s.cfg.Host}, s.cfg.Aliases...) {
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			out = append(out, ip.Unmap().WithZone(""))
		}
	}
	return append(out, interfaceAddrs()...)
}

const ownIfacesTTL = 30 * time.Second

var ownIfaces struct {
	mu    sync.Mutex
	at    time.Time
	addrs []netip.Addr
}

// interfaceAddrs returns the addresses of this host's interfaces, cached
// for ownIfacesTTL.
func interfaceAddrs() []netip.Addr {
	ownIfaces.mu.Lock()
	defer ownIfaces.mu.Unlock()
	if !ownIfaces.at.IsZero() && time.Since(ownIfaces.at) < ownIfacesTTL {
		return ownIfaces.addrs
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ownIfaces.addrs // keep the last list
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap().WithZone(""))
		}
	}
	ownIfaces.at, ownIfaces.addrs = time.Now(), out
	return out
}

// dialogHop is the target of an in-dialog request whose next hop (the
// top Route left after this peer's, or the remote target) is not a local
// device. A proxy peer checks that hop like a public one: a dialog's route
// set and remote target come from the request, and whoever is in a dialog
// through the proxy could otherwise point them at the proxy's own
// networks. Overlay peers, the dialog's other side, are named by node
// id and reached over streams.
func (s *Service) dialogHop(ctx context.Context, req *sip.Request, next sip.Uri) ([]target, int, string) {
	if _, ok := NodeOfHost(next.Host); ok || s.cfg.Proxy == nil {
		// Another peer, reached by node name over a stream, never by DNS.
		return []target{{ruri: req.Recipient}}, 0, ""
	}
	hops, err := s.cfg.Proxy.Resolver.Resolve(ctx, next)
	if err != nil {
		s.log.Warn("DNS lookup of a dialog's next hop failed", "next", next.String(), "err", err)
		return nil, 503, "Service Unavailable (DNS lookup failed)"
	}
	if len(hops) == 0 {
		return nil, 404, "Not Found (no SIP server for the next hop)"
	}
	hop, code, reason := s.publicHop(req, "in-dialog", hops)
	if code != 0 {
		return nil, code, reason
	}
	return []target{{ruri: req.Recipient, dest: hop.Addr, transport: hop.Transport}}, 0, ""
}
