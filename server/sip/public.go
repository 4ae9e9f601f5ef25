package sip

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/overlay"
)

// senderHeader carries an overlay peer's word that the request comes from
// a user registered through it: the user's overlay AOR, the peer's node
// ID, a timestamp and the node's signature over them and the request's
// Call-ID, CSeq (number and method) and Request-URI target, so a copied
// header cannot carry another request. The public proxy checks the signature and that the
// overlay record of the AOR has a binding hosted by that node, so only
// overlay users can send through it (no open relay, no toll fraud).
const senderHeader = "P-P2PSIP-Sender"

const senderSkew = 5 * time.Minute

func senderMessage(aor string, req *sip.Request, ts int64) []byte {
	callID, cseq := callIDAndCSeq(req)
	u := req.Recipient
	target := strings.ToLower(u.Scheme) + ":" + u.User + "@" + strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port)
	return fmt.Appendf(nil, "p2psip/sender/v2\n%s\n%s\n%s\n%s\n%d", aor, callID, cseq, target, ts)
}

func callIDAndCSeq(req *sip.Request) (string, string) {
	var callID, cseq string
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	if c := req.CSeq(); c != nil {
		cseq = c.Value()
	}
	return callID, cseq
}

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

// vouch adds the sender header for a local device's request.
func (s *Service) vouch(req *sip.Request, aor string) error {
	req.RemoveHeader(senderHeader)
	ts := time.Now().Unix()
	sig, err := s.cfg.Locator.Sign(senderMessage(aor, req, ts))
	if err != nil {
		return err
	}
	req.AppendHeader(sip.NewHeader(senderHeader, fmt.Sprintf("<%s>;node=%s;ts=%d;sig=%s", aor, s.cfg.Locator.ID(), ts,
		base64.RawURLEncoding.EncodeToString(sig))))
	return nil
}

// overlaySender checks the sender header of a request from another peer
// and returns the overlay AOR it vouches for.
func (s *Service) overlaySender(ctx context.Context, req *sip.Request) (string, error) {
	h := req.GetHeader(senderHeader)
	if h == nil {
		return "", fmt.Errorf("%w: no %s", ErrBadRequest, senderHeader)
	}
	var params sip.HeaderParams
	var u sip.Uri
	if _, err := sip.ParseAddressValue(h.Value(), &u, &params); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrBadRequest, senderHeader, err)
	}
	aor := "sip:" + u.User + "@" + u.Host
	node := params.GetOr("node", "")
	ts, _ := strconv.ParseInt(params.GetOr("ts", ""), 10, 64)
	sig, err := base64.RawURLEncoding.DecodeString(params.GetOr("sig", ""))
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > senderSkew {
		return "", fmt.Errorf("%w: stale or malformed %s", ErrBadRequest, senderHeader)
	}
	if err := overlay.VerifyNodeSignature(node, senderMessage(aor, req, ts), sig); err != nil {
		return "", err
	}
	reg, err := s.cfg.Locator.Lookup(ctx, aor)
	if err != nil {
		return "", err
	}
	for _, b := range reg.Live(time.Now()) {
		if b.Node == node {
			return aor, nil
		}
	}
	return "", fmt.Errorf("%w: %s has no binding at node %s", overlay.ErrNotOwner, aor, node)
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
			var err error
			if sender, err = s.overlaySender(ctx, req); err != nil {
				s.log.Info("refused to relay for a non-overlay sender", "ruri", req.Recipient.String(), "err", err)
				return nil, 403, "Forbidden (only users registered in the overlay may use this proxy)"
			}
		}
		req.RemoveHeader(senderHeader) // the public side need not see it
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
	var pu sip.Uri
	if err := sip.ParseUri(proxies[0], &pu); err != nil {
		return nil, 503, "Service Unavailable (bad proxy record)"
	}
	pu.UriParams.Add("lr", "")
	if err := s.vouch(req, sender); err != nil {
		return nil, 500, "Server Internal Error"
	}
	return []target{{ruri: req.Recipient, routes: []sip.Uri{pu}}}, 0, ""
}

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
// networks. Overlay peers, the dialog's other side, may be on private
// addresses.
func (s *Service) dialogHop(ctx context.Context, req *sip.Request, next sip.Uri) ([]target, int, string) {
	if s.cfg.Proxy == nil {
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
	if peer := s.cfg.Proxy.IsOverlayPeer; peer != nil {
		for _, h := range hops {
			if host, _, err := net.SplitHostPort(h.Addr); err == nil && peer(host) {
				return []target{{ruri: req.Recipient, dest: h.Addr, transport: h.Transport}}, 0, ""
			}
		}
	}
	hop, code, reason := s.publicHop(req, "in-dialog", hops)
	if code != 0 {
		return nil, code, reason
	}
	return []target{{ruri: req.Recipient, dest: hop.Addr, transport: hop.Transport}}, 0, ""
}
