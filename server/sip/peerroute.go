package sip

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fromPeer reports whether req arrived over a stream from another peer,
// and from which node: the stream's handshake authenticated it.
func (s *Service) fromPeer(req *sip.Request) (string, bool) {
	if s.links == nil || !isSynthetic(req.Source()) {
		return "", false
	}
	return s.links.nodeOf(req.Source())
}

// nextPeer returns the node that out's next hop names, if it names one:
// the top Route (loose routing, RFC 3261 §16.12), else the Request-URI.
func nextPeer(out *sip.Request) (string, bool) {
	if r := out.Route(); r != nil {
		return NodeOfHost(r.Address.Host)
	}
	return NodeOfHost(out.Recipient.Host)
}

// peerDialTimeout bounds finding a peer and opening a stream to it.
const peerDialTimeout = 15 * time.Second

// dialPeer points a request whose next hop is a peer at a live stream to
// that peer, opening one if needed. Requests to other hops pass through.
// This is the one place where requests to peers get their destination.
func (s *Service) dialPeer(ctx context.Context, out *sip.Request) error {
	node, ok := nextPeer(out)
	if !ok {
		return nil
	}
	if s.peerDest == nil {
		return fmt.Errorf("%w: no overlay streams on this peer", errPeerGone)
	}
	ctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
	defer cancel()
	addr, err := s.peerDest(ctx, node)
	if err != nil {
		return err
	}
	out.SetDestination(addr)
	out.SetTransport("TCP")
	return nil
}

// recordRoutes are the Record-Routes this peer adds to the copy of req it
// sends over outTransport (toPeer: to another peer's stream): lower
// always, upper (above it) or nil. When the two sides of this peer reach
// it differently, one URI cannot serve both (RFC 5658 §4): another peer
// reaches it by node name over a stream, a phone or a public domain by
// address, and a browser cannot be dialled at all; then the peer
// record-routes twice, the lower entry facing the side req came from, the
// upper entry the side out goes to. stripSelfRoute removes both when a
// request returns.
func (s *Service) recordRoutes(req *sip.Request, outTransport string, toPeer bool) (upper, lower *sip.RecordRouteHeader) {
	_, fromPeer := s.fromPeer(req)
	in := sip.NetworkToLower(req.Transport())
	face := func(peer bool, transport string) sip.Uri {
		if peer {
			u := s.peerURI()
			u.UriParams.Add(dialogTokenParam, s.dialogToken(req))
			return u
		}
		return s.recordRouteURI(req, transport)
	}
	lower = &sip.RecordRouteHeader{Address: face(fromPeer, in)}
	o := sip.NetworkToLower(outTransport)
	switch {
	case fromPeer != toPeer:
		upper = &sip.RecordRouteHeader{Address: face(toPeer, o)}
	case !fromPeer && o != in && (streamSecure(in) || streamSecure(o)):
		upper = &sip.RecordRouteHeader{Address: face(false, o)}
	}
	return upper, lower
}
