package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Retransmissions of a 2xx to an INVITE.
//
// A callee's UA core retransmits its 2xx until the caller's ACK arrives,
// over every transport, for up to 64*T1 (RFC 3261 §13.3.1.4): the 2xx is
// end to end, and no transaction along the path retransmits it. So when
// a 200 is lost on its way to the caller (a UDP hop on a lossy Wi-Fi),
// only the callee's retransmission can still start the call, and every
// proxy on the path must forward it: a response that matches no client
// transaction is processed as by a stateless proxy (RFC 3261 §16.7, first
// paragraph; §16.11), and RFC 6026 §8.4 has the client transaction pass
// 2xx retransmissions up in its Accepted state for the same reason.
//
// This peer ends a client transaction at its final response (txtimers.go),
// so such a retransmission matches no transaction, and sipgo hands it to
// onStrayResponse. Forwarding it afresh is not enough: the first 2xx was
// translated on its way up (the CSeq of a re-sent INVITE, a bridged
// call's SDP), and the fork that knew how is gone. So the peer keeps the
// bytes of each 2xx it relayed to an INVITE, and where they went, for
// 64*T1 (acceptedKept, in a table with no pointers per entry, kept.go),
// and answers a retransmission by sending those bytes again. A 2xx whose
// first copy this peer never relayed goes on as from a stateless proxy
// (forward2xxStateless).
type acceptedKept struct {
	mu   sync.Mutex
	kept *keptAnswers // guarded by mu
}

// maxAccepted bounds the 2xx kept: 64*T1 of them at 4000 calls a second.
const maxAccepted = 1 << 17

func newAcceptedKept() *acceptedKept { return &acceptedKept{kept: newKeptAnswers()} }

// acceptedKey names a callee's 2xx as it arrives from downstream: its
// dialog (Call-ID, the callee's To tag) and CSeq number. A retransmission
// carries the same three (§17.1.3 matches on the branch, but a proxy that
// forked has several branches and keeps none of them).
func acceptedKey(res *sip.Response) (string, bool) {
	cid, to, cs := res.CallID(), res.To(), res.CSeq()
	if cid == nil || to == nil || cs == nil || cs.MethodName != sip.INVITE {
		return "", false
	}
	tag, _ := to.Params.Get("tag")
	return cid.Value() + "\x00" + tag + "\x00" + strconv.FormatUint(uint64(cs.SeqNo), 10), true
}

// remember keeps res, as relayed upstream over network to dest through
// the connection whose local address is local, under key.
func (a *acceptedKept) remember(key string, res *sip.Response, network, dest, local string, now time.Time) {
	b := acceptedBufs.Get().(*bytes.Buffer)
	defer acceptedBufs.Put(b)
	b.Reset()
	for _, s := range []string{network, dest, local} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	res.StringWrite(b)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kept.expire(now, maxAccepted)
	a.kept.put(key, b.Bytes(), now.Add(timerJ)) // copies b
}

// acceptedBufs are remember's buffers: a 2xx is written out once per call.
var acceptedBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// lookup returns the relayed copy of the 2xx under key and where it went.
func (a *acceptedKept) lookup(key string) (network, dest, local string, msg []byte, ok bool) {
	a.mu.Lock()
	b := a.kept.get(key)
	a.mu.Unlock()
	if b == nil {
		return "", "", "", nil, false
	}
	parts := bytes.SplitN(b, []byte{0}, 4)
	if len(parts) != 4 {
		return "", "", "", nil, false
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), parts[3], true
}

// keepRelayed2xx remembers a 2xx this peer relayed upstream for the
// INVITE req, through the server transaction's connection conn (nil when
// there is none to name), under key (acceptedKey of the 2xx as it came).
func (s *Service) keepRelayed2xx(key string, res *sip.Response, req *sip.Request, conn sip.Connection) {
	local := ""
	if conn != nil && conn.LocalAddr() != nil {
		local = conn.LocalAddr().String()
	}
	s.accepted.remember(key, res, req.Transport(), req.Source(), local, time.Now())
}

// onStrayResponse handles a response that matches no client transaction
// (sipgo's unhandled-response hook): a 2xx to an INVITE this peer relayed
// goes upstream again, as it went the first time. Anything else is
// dropped, where §16.7 would forward it statelessly: this peer ends a
// client transaction only at its final response, which it relayed, so a
// stray provisional or non-2xx final response is one the caller's
// transaction no longer takes.
func (s *Service) onStrayResponse(res *sip.Response) {
	key, ok := acceptedKey(res)
	v := res.Via()
	if !ok || !res.IsSuccess() || v == nil || !(strings.EqualFold(v.Host, s.cfg.Host) || s.isPeerHost(v.Host)) {
		s.log.Debug("dropping a response that matches no transaction", "response", res.StartLine(), "call", callIDOf(res))
		s.m.stray.WithLabelValues("dropped").Inc()
		return
	}
	var err error
	if network, dest, local, raw, kept := s.accepted.lookup(key); kept {
		err = s.resend2xx(network, dest, local, raw)
	} else {
		err = s.forward2xxStateless(res)
	}
	switch {
	case errors.Is(err, errNoUpstream):
		s.log.Debug("dropping a 2xx to a request of this peer's own", "call", callIDOf(res))
		s.m.stray.WithLabelValues("dropped").Inc()
		return
	case err != nil:
		s.log.Debug("forwarding a 2xx that matches no transaction failed", "call", callIDOf(res), "err", err)
		s.m.stray.WithLabelValues("failed").Inc()
		return
	}
	s.m.stray.WithLabelValues("forwarded").Inc()
}

// forward2xxStateless sends a 2xx that this peer never relayed upstream
// as a stateless proxy does (§16.11, §16.7 step 9): without its own Via,
// to the next Via's sent-by (received and rport, RFC 3581), or over a
// stream when that names a peer. Such a 2xx crossed a CANCEL: sipgo's 487
// (here, or at the peer that sent it, fork.relayLate2xx) ended the
// transaction it belonged to. A 2xx to an INVITE this peer sent itself
// has no Via left and is dropped.
func (s *Service) forward2xxStateless(res *sip.Response) error {
	res.RemoveHeader("Via")
	next := res.Via()
	if next == nil {
		return errNoUpstream
	}
	network := strings.ToUpper(next.Transport)
	res.SetTransport(network)
	res.SetDestination("")
	res.SetDestination(res.Destination()) // from the Via now on top
	tl := s.ua.TransportLayer()
	var (
		conn sip.Connection
		err  error
	)
	switch node, isPeer := NodeOfHost(next.Host); {
	case isPeer:
		if s.peerDest == nil {
			return fmt.Errorf("%w: no overlay streams on this peer", errPeerGone)
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerDialTimeout)
		defer cancel()
		var dest string
		if dest, err = s.peerDest(ctx, node); err != nil {
			return err
		}
		res.SetDestination(dest)
		res.SetTransport("TCP")
		conn, err = tl.GetConnection("TCP", dest)
	case network == "UDP":
		s.mu.Lock()
		local := s.udpAddr
		s.mu.Unlock()
		conn, err = tl.GetConnection(network, local)
	default:
		conn, err = tl.GetConnection(network, res.Destination())
	}
	if err != nil {
		return err
	}
	return conn.WriteMsg(res)
}

// resend2xx sends raw, a 2xx as this peer relayed it, to dest over
// network again: on the connection to dest when the transport keeps one
// per peer (a stream, TCP, TLS, WebSocket), else on the socket it left
// from (UDP).
func (s *Service) resend2xx(network, dest, local string, raw []byte) error {
	m, err := sip.ParseMessage(raw)
	if err != nil {
		return err
	}
	tl := s.ua.TransportLayer()
	conn, err := tl.GetConnection(network, dest)
	if err != nil && local != "" {
		conn, err = tl.GetConnection(network, local)
	}
	if err != nil {
		return err
	}
	m.SetDestination(dest)
	m.SetTransport(network)
	return conn.WriteMsg(m)
}
