package sip

import (
	"context"
	"log/slog"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

var timeNow = time.Now

// prebuilt tells sipgo's client the request is complete (a proxy builds
// its own Via, Route and Max-Forwards).
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// onOptions answers OPTIONS for this peer itself (RFC 3261 §11.2) and
// routes the rest.
func (s *Service) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if req.Recipient.User == "" && req.Route() == nil && (s.isSelf(req.Recipient) || req.Recipient.Host == s.cfg.Domain) {
		s.m.requests.WithLabelValues("OPTIONS").Inc()
		if code, reason, hdrs := s.checkRequest(req, true); code != 0 {
			s.respond(tx, req, code, reason, hdrs...)
			return
		}
		s.respond(tx, req, 200, "OK",
			sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, REFER, NOTIFY, SUBSCRIBE, UPDATE, PRACK"),
			sip.NewHeader("Accept", "application/sdp"))
		return
	}
	s.onRequest(req, tx)
}

// onRequest proxies a request (§16): validate, process Route, find the
// targets, forward statefully.
func (s *Service) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	s.m.requests.WithLabelValues(string(req.Method)).Inc()
	if code, reason, hdrs := s.checkRequest(req, false); code != 0 {
		s.respond(tx, req, code, reason, hdrs...)
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		s.respond(tx, req, 483, "Too Many Hops") // §16.3 step 3
		return
	}
	loop := loopHash(req) // computed once: the loop check and every branch's Via need it
	if s.loopedAs(req, loop) {
		s.respond(tx, req, 482, "Loop Detected") // §16.3 step 4
		return
	}
	inDialog := s.stripSelfRoute(req)
	ctx := newLookupCtx(s.cfg.RequestTimeout)
	targets, code, reason := s.targets(ctx, req, inDialog)
	ctx.release()
	if code != 0 {
		s.respond(tx, req, code, reason)
		return
	}
	if req.IsInvite() {
		s.respond(tx, req, 100, "Trying") // §16.2: stop the caller's retransmissions
	}
	f := newForkLoop(s, req, tx, targets, loop)
	if s.cfg.Bridge != nil {
		if d := s.dialogs.get(callIDOf(req)); inDialog && d != nil {
			if code, reason := f.bridgeInDialog(d); code != 0 {
				s.respond(tx, req, code, reason)
				return
			}
		} else if dialogCreating(req) {
			f.bridgeBranches()
		}
	}
	f.run()
}

// onAck forwards the ACK of a 2xx (a new transaction of its own, §13.2.2.4)
// statelessly along its route; sipgo absorbs the ACKs of non-2xx.
func (s *Service) onAck(req *sip.Request, _ sip.ServerTransaction) {
	s.m.requests.WithLabelValues("ACK").Inc()
	// An ACK gets no response (§17.2.3): a dropped one is only logged, and
	// the callee retransmits its 2xx until it gives up on the call.
	if code, reason, _ := s.checkRequest(req, false); code != 0 {
		s.log.Debug("dropping ACK", "call_id", callIDOf(req), "source", req.Source(), "code", code, "reason", reason)
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		s.log.Debug("dropping ACK: Max-Forwards 0", "call_id", callIDOf(req), "source", req.Source())
		return
	}
	inDialog := s.stripSelfRoute(req)
	ctx := newLookupCtx(s.cfg.RequestTimeout)
	targets, code, _ := s.targets(ctx, req, inDialog)
	ctx.release()
	if code != 0 || len(targets) != 1 {
		s.log.Debug("dropping ACK with no route", "call_id", callIDOf(req), "ruri", req.Recipient.String(), "code", code)
		return
	}
	out := s.prepare(req, targets[0], false, loopHash(req))
	if s.cfg.Bridge != nil && inDialog {
		s.bridgeACK(req, out)
	}
	if err := s.dialPeer(context.Background(), out); err != nil {
		s.log.Debug("forwarding ACK: no stream to the next peer", "err", err)
		return
	}
	if err := s.sendStateless(out); err != nil {
		s.log.Debug("forwarding ACK failed", "call_id", callIDOf(req), "err", err)
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		// The ACK is the one message of a call no response confirms: a
		// trace of each hop tells where a lost one went.
		s.log.Debug("ACK forwarded", "call_id", callIDOf(req), "cseq", out.CSeq().Value(), "ruri", out.Recipient.String(),
			"dest", out.Destination(), "transport", out.Transport(), "via", out.Via().Value())
	}
}

// prepare builds the copy of req sent to one target (§16.6 step 1). Only
// the top Via (step 8 adds received and rport to it) and Max-Forwards
// (step 3) change in place, so only they are copied; the other headers
// and the body are shared with req, and neither req nor the copy changes
// them afterwards (sipgo clones the headers it puts into responses). This
// saves a deep copy of every header per branch. loop is req's loopHash.
func (s *Service) prepare(req *sip.Request, t target, recordRoute bool, loop string) *sip.Request {
	out := sip.NewRequest(req.Method, t.ruri)
	out.SipVersion = req.SipVersion
	hdrs := req.Headers()
	topVia := true
	for _, h := range hdrs {
		switch v := h.(type) {
		case *sip.ViaHeader:
			if topVia {
				h, topVia = v.Clone(), false
			}
		case *sip.MaxForwardsHeader:
			mf := *v
			h = &mf
		}
		out.AppendHeader(h)
	}
	// SetBody touches Content-Length only when it disagrees with the body,
	// and then replaces the header in out's list rather than editing it.
	out.SetBody(req.Body())
	out.SetSource(req.Source())
	out.Laddr = req.Laddr
	// Step 3: Max-Forwards.
	if mf := out.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		h := sip.MaxForwardsHeader(70)
		out.AppendHeader(&h)
	}
	// Step 6: the target's route set goes first.
	for i := len(t.routes) - 1; i >= 0; i-- {
		out.PrependHeader(&sip.RouteHeader{Address: t.routes[i]})
	}
	_, fromPeer := s.fromPeer(req)
	_, toPeer := nextPeer(out)
	transport := t.transport
	switch {
	case toPeer:
		// Another peer: a stream of the overlay, whose address dialPeer
		// sets at send time. No socket of this peer's is involved.
		transport = "TCP"
		out.SetTransport(transport)
		out.Laddr = sip.Addr{}
	case transport == "":
		transport = out.Transport()
	default:
		out.SetDestination(t.dest)
		out.SetTransport(transport)
	}
	// Step 8: our Via, with RFC 3581 received/rport on the previous hop
	// (a peer's stream has no address worth recording).
	if via := out.Via(); via != nil && !fromPeer {
		if host, port, ok := splitSource(req.Source()); ok {
			if via.Params.Has("rport") {
				via.Params.Add("rport", port)
			}
			if host != via.Host {
				via.Params.Add("received", host)
			}
		}
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport,
		Host: s.cfg.Host, Port: s.port(sip.NetworkToLower(transport)), Params: make(sip.HeaderParams, 0, 1)}
	if toPeer {
		// Toward a peer this peer is its node name: its addresses may be
		// private ones the next peer cannot reach.
		via.Host, via.Port = s.peerHost, 0
	} else {
		s.setLocalAddr(out, transport)
	}
	via.Params.Add("branch", branchMagic+loop+"-"+sip.GenerateBranchN(8)[7:])
	// Step 4: Record-Route, so in-dialog requests come through this peer.
	// It goes under our Via; a single one goes on in the same prepend
	// (each prepend copies the header list).
	if !recordRoute {
		out.PrependHeader(via)
		return out
	}
	if upper, lower := s.recordRoutes(req, hopTransport(t, transport), toPeer); upper == nil {
		out.PrependHeader(via, lower)
	} else {
		out.PrependHeader(lower)
		out.PrependHeader(upper)
		out.PrependHeader(via)
	}
	return out
}

// dialogCreating reports whether a request may create a dialog, and so
// needs Record-Route (§16.6 step 4; an in-dialog request has a To tag).
func dialogCreating(req *sip.Request) bool {
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return req.To() == nil || !req.To().Params.Has("tag")
	}
	return false
}
