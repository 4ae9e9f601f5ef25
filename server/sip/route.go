package sip

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/overlay"
)

// target is one branch of a forwarded request.
type target struct {
	ruri      sip.Uri
	routes    []sip.Uri // Route headers to put first (a binding's Path)
	dest      string    // host:port of a local flow, "" to follow Route/R-URI
	transport string    // transport of a local flow
}

// branchMagic plus the request's loop hash make this peer's Via branch
// (RFC 3261 §16.6 step 8), so §16.3 step 4 can spot a loop.
const branchMagic = "z9hG4bK-p2p-"

// loopHash covers what stays the same when a request comes back unchanged
// (§16.3 step 4, §16.6 step 8): the Request-URI, Call-ID, CSeq, the tags,
// Proxy-Require and Proxy-Authorization, and the Route values (RFC 5393
// §4). A spiral changes the Request-URI or the remaining route set and
// hashes differently: a call between two users of this peer through
// another proxy (this peer, the other proxy, this peer again) carries a
// shorter route set on its second pass. The hash is taken before
// stripSelfRoute, so the top Routes with a dialog token (this peer's
// Record-Route entries; a foreign one there is refused anyway) are left
// out: the route set that remains is the same whether or not a looping
// request still carries them, and a request that comes back after this
// peer removed its entries hashes as it did the first time. The Vias are
// left out: in a loop the top one is another hop's.
// The fields go through one stack buffer and one SHA-256 call: the hash
// is taken for every proxied request.
func loopHash(req *sip.Request) string {
	var buf [512]byte
	b := append(buf[:0], req.Recipient.String()...)
	if c := req.CallID(); c != nil {
		b = append(b, *c...)
	}
	if c := req.CSeq(); c != nil {
		// CSeqHeader.Value's "%d %s", without fmt.
		b = strconv.AppendUint(b, uint64(c.SeqNo), 10)
		b = append(b, ' ')
		b = append(b, c.MethodName...)
	}
	if f := req.From(); f != nil {
		b = append(b, f.Params.GetOr("tag", "")...)
	}
	if to := req.To(); to != nil {
		b = append(b, to.Params.GetOr("tag", "")...)
	}
	own := true // still among the top Routes this peer recorded
	for _, h := range req.Headers() {
		switch v := h.(type) {
		case *sip.RouteHeader:
			if own && v.Address.UriParams.Has(dialogTokenParam) {
				continue
			}
			own = false
			b = append(b, 0, 'R')
			b = appendURI(b, &v.Address)
		default:
			if n := h.Name(); strings.EqualFold(n, "Proxy-Require") || strings.EqualFold(n, "Proxy-Authorization") {
				b = append(b, 0, 'P')
				b = append(b, n...)
				b = append(b, ':')
				b = append(b, h.Value()...)
			}
		}
	}
	sum := sha256.Sum256(b)
	var out [16]byte
	hex.Encode(out[:], sum[:8])
	return string(out[:])
}

// appendURI appends u's parts to b without building its string form.
func appendURI(b []byte, u *sip.Uri) []byte {
	b = append(b, u.Scheme...)
	b = append(b, ':')
	b = append(b, u.Raw()...)
	b = append(b, u.User...)
	b = append(b, '@')
	b = append(b, u.Host...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(u.Port), 10)
	for _, kv := range u.UriParams {
		b = append(b, ';')
		b = append(b, kv.K...)
		b = append(b, '=')
		b = append(b, kv.V...)
	}
	for _, kv := range u.Headers {
		b = append(b, '&')
		b = append(b, kv.K...)
		b = append(b, '=')
		b = append(b, kv.V...)
	}
	return b
}

// looped reports whether req already passed this peer unchanged.
func (s *Service) looped(req *sip.Request) bool { return s.loopedAs(req, loopHash(req)) }

// loopedAs is looped for a request whose loopHash is known.
func (s *Service) loopedAs(req *sip.Request, loop string) bool {
	for _, h := range req.Headers() {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		if !s.isPeerHost(v.Host) && (v.Host != s.cfg.Host || v.Port != s.port(sip.NetworkToLower(v.Transport))) {
			continue // another element's Via (peers may share a host)
		}
		if b := v.Params.GetOr("branch", ""); len(b) >= len(branchMagic)+len(loop) &&
			b[:len(branchMagic)] == branchMagic && b[len(branchMagic):len(branchMagic)+len(loop)] == loop {
			return true
		}
	}
	return false
}

// stripSelfRoute removes the top Routes that name this peer (§16.4,
// loose routing). It reports whether one of them carried this peer's
// dialog token for the request's dialog: then the request belongs to a
// dialog this peer record-routed and may go on to its Request-URI.
func (s *Service) stripSelfRoute(req *sip.Request) (inDialog bool) {
	for {
		r := req.Route()
		if r == nil || !s.isSelf(r.Address) {
			return inDialog
		}
		if tok, ok := r.Address.UriParams.Get(dialogTokenParam); ok && s.validDialogToken(req, tok) {
			inDialog = true
		}
		req.RemoveHeader("Route")
	}
}

// dialogTokenParam carries an HMAC of the dialog in this peer's
// Record-Route. Without it, anyone could put a Route to this peer in front
// of any Request-URI and use the peer as an open relay.
const dialogTokenParam = "p2pd"

// dialogToken binds the Call-ID and the caller's tag (the From tag of the
// dialog-creating request, §12.1). A request inside the dialog carries
// that tag as its From tag (from the caller) or its To tag (from the
// callee).
func (s *Service) dialogToken(req *sip.Request) string {
	return s.tokenFor(callIDOf(req), fromTag(req))
}

func (s *Service) tokenFor(callID, tag string) string {
	// A keyed HMAC is reused (Reset keeps the key): building one per
	// call of tokenFor, several times per request, was a twentieth of a
	// loaded peer's allocations.
	m, _ := s.tokenMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.rrKey)
	}
	m.Reset()
	m.Write([]byte(callID))
	m.Write([]byte{0})
	m.Write([]byte(tag))
	var sum [sha256.Size]byte
	var out [16]byte
	hex.Encode(out[:], m.Sum(sum[:0])[:8])
	s.tokenMACs.Put(m)
	return string(out[:])
}

// validDialogToken accepts tok only for a request inside a dialog: it must
// have both tags (§12.2: a request without a To tag creates a dialog,
// which a recorded route may not carry anywhere), and tok must match the
// Call-ID with one of them.
func (s *Service) validDialogToken(req *sip.Request, tok string) bool {
	from, to := fromTag(req), toTag(req)
	if from == "" || to == "" {
		return false
	}
	callID := callIDOf(req)
	return hmac.Equal([]byte(tok), []byte(s.tokenFor(callID, from))) ||
		hmac.Equal([]byte(tok), []byte(s.tokenFor(callID, to)))
}

func callIDOf(m sip.Message) string {
	if c := m.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

func fromTag(req *sip.Request) string {
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

func toTag(req *sip.Request) string {
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		return tag
	}
	return ""
}

// recordRouteURI is this peer's Record-Route entry for req, reached over
// transport.
func (s *Service) recordRouteURI(req *sip.Request, transport string) sip.Uri {
	u := s.selfURI(transport)
	u.UriParams.Add(dialogTokenParam, s.dialogToken(req))
	return u
}

// streamSecure reports transports whose URI cannot be reused for the
// other side of this peer: WebSocket (browsers) and TLS.
func streamSecure(t string) bool { return t == "ws" || t == "wss" || t == "tls" }

// hopTransport is the transport the next hop of t uses: the target's own,
// or the first Route's transport parameter, or sipgo's choice.
func hopTransport(t target, chosen string) string {
	if t.transport != "" {
		return t.transport
	}
	if len(t.routes) > 0 {
		if v, ok := t.routes[0].UriParams.Get("transport"); ok && v != "" {
			return v
		}
	}
	return chosen
}

// targets decides where a request goes (§16.5). A non-zero code is the
// response to give instead.
func (s *Service) targets(ctx context.Context, req *sip.Request, inDialog bool) ([]target, int, string) {
	if req.Route() != nil {
		if !inDialog {
			// A route set this peer did not record: following it would
			// make the peer an open relay.
			return nil, 403, "Forbidden (no relaying along foreign routes)"
		}
		return s.dialogHop(ctx, req, req.Route().Address) // follow the route set
	}
	u := req.Recipient
	if fl := s.flows.byContactURI(u.String()); fl != nil {
		return []target{{ruri: u, dest: fl.source, transport: fl.transport}}, 0, ""
	}
	if inDialog {
		// The last hop of a dialog this peer record-routed: the remote
		// target (§12.2.1.1), through the device's flow when it has one.
		if u.User != "" && s.isOverlayHost(u.Host) {
			// An overlay AOR as remote target: the alias a page's public
			// account uses as Contact (owner.go). Every alias has the
			// overlay's host, so the host:port index cannot tell them
			// apart: find the alias's own flow.
			return s.aliasTarget(ctx, u)
		}
		if fl := s.flows.byHostPort(u.Host, u.Port); fl != nil {
			return []target{{ruri: u, dest: fl.source, transport: fl.transport}}, 0, ""
		}
		return s.dialogHop(ctx, req, u)
	}
	if u.User != "" && (s.isOverlayHost(u.Host) || s.isSelf(u)) {
		// The peer's own address is an alias of the overlay domain, as
		// phones that use it as their proxy address calls to it.
		return s.overlayTargets(ctx, u)
	}
	if s.isSelf(u) {
		return nil, 404, "Not Found"
	}
	if req.To() != nil && req.To().Params.Has("tag") {
		// An in-dialog request with no route through this peer: not ours.
		return nil, 481, "Call/Transaction Does Not Exist"
	}
	return s.publicTargets(ctx, req)
}

// aliasTarget is the one target of an in-dialog request whose remote
// target is the overlay AOR u: its flow here, else where the overlay says.
func (s *Service) aliasTarget(ctx context.Context, u sip.Uri) ([]target, int, string) {
	if aor, err := overlay.CanonicalAOR("sip:"+u.User+"@"+s.cfg.Domain, s.cfg.Domain); err == nil {
		if fls := s.flows.all(aor); len(fls) > 0 {
			return []target{{ruri: u, dest: fls[0].source, transport: fls[0].transport}}, 0, ""
		}
	}
	ts, code, reason := s.overlayTargets(ctx, u)
	if len(ts) > 1 {
		ts = ts[:1] // a dialog has one remote target: no forking
	}
	return ts, code, reason
}

// overlayTargets looks an overlay AOR up: local devices by their flows,
// others along their Path through the peer that hosts them.
func (s *Service) overlayTargets(ctx context.Context, u sip.Uri) ([]target, int, string) {
	aor, err := overlay.CanonicalAOR("sip:"+u.User+"@"+s.cfg.Domain, s.cfg.Domain)
	if err != nil {
		return nil, 404, "Not Found"
	}
	reg, err := s.cfg.Locator.Lookup(ctx, aor)
	if errors.Is(err, overlay.ErrNotFound) {
		return nil, 404, "Not Found"
	}
	if err != nil {
		s.log.Warn("overlay lookup failed", "aor", aor, "err", err)
		return nil, 503, "Service Unavailable (overlay lookup failed)"
	}
	var local []*flow // this peer's flows of aor, read at the first own binding
	localRead := false
	var out []target
	for _, b := range reg.Live(timeNow()) {
		var ruri sip.Uri
		if err := sip.ParseUri(b.Contact, &ruri); err != nil {
			continue
		}
		if b.Node == s.cfg.Locator.ID() {
			if !localRead {
				local, localRead = s.flows.all(aor), true
			}
			if fl := flowOf(local, b.Instance); fl != nil {
				out = append(out, target{ruri: ruri, dest: fl.source, transport: fl.transport})
			}
			continue
		}
		t := target{ruri: ruri}
		for _, p := range b.Path {
			var pu sip.Uri
			if err := sip.ParseUri(strings.Trim(p, "<>"), &pu); err == nil {
				t.routes = append(t.routes, pu)
			}
		}
		if len(t.routes) > 0 {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, 480, "Temporarily Unavailable"
	}
	return out, 0, ""
}

// flowOf is the last of fls with the instance: an AOR has a handful of
// flows, so a scan beats building a map per request.
func flowOf(fls []*flow, instance string) *flow {
	for i := len(fls) - 1; i >= 0; i-- {
		if fls[i].instance == instance {
			return fls[i]
		}
	}
	return nil
}
