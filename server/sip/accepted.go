package sip

import (
	"bytes"
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
// first copy this peer never relayed crossed a CANCEL: when a CANCEL ends
// a fork, the peer keeps where its INVITE came from, and such a 2xx goes
// there (keepCancelledUpstream).
type acceptedKept struct{ sweptAnswers }

// maxAccepted bounds the entries kept: 64*T1 of 2xx at 2000 calls a
// second (a few tens of MB of answers).
const maxAccepted = 1 << 16

func newAcceptedKept() *acceptedKept {
	return &acceptedKept{sweptAnswers{kept: newKeptAnswers(), limit: maxAccepted}}
}

// acceptedKey names a callee's 2xx as it arrives from downstream: this
// peer's branch in its top Via (a retransmission carries the same, and a
// request that passes this peer twice has two), its dialog (Call-ID, the
// callee's To tag) and CSeq number.
func acceptedKey(res *sip.Response) (string, bool) {
	cid, to, cs, v := res.CallID(), res.To(), res.CSeq(), res.Via()
	if cid == nil || to == nil || cs == nil || v == nil || cs.MethodName != sip.INVITE {
		return "", false
	}
	tag, _ := to.Params.Get("tag")
	branch, _ := v.Params.Get("branch")
	return "2xx\x00" + branch + "\x00" + cid.Value() + "\x00" + tag + "\x00" + strconv.FormatUint(uint64(cs.SeqNo), 10), true
}

// upstreamKey names the INVITE a cancelled fork came from, as a 2xx from
// downstream names it (Call-ID, CSeq number).
func upstreamKey(callID string, cseq uint32) string {
	return "up\x00" + callID + "\x00" + strconv.FormatUint(uint64(cseq), 10)
}

// upstreamKeyOf is upstreamKey for a response.
func upstreamKeyOf(res *sip.Response) (string, bool) {
	cid, cs := res.CallID(), res.CSeq()
	if cid == nil || cs == nil || cs.MethodName != sip.INVITE {
		return "", false
	}
	return upstreamKey(cid.Value(), cs.SeqNo), true
}

// remember keeps, under key for 64*T1, where a response goes upstream
// (over network to dest, through the connection whose local address is
// local) and, unless res is nil, the response as it went.
func (a *acceptedKept) remember(key string, res *sip.Response, network, dest, local string, now time.Time) {
	b := acceptedBufs.Get().(*bytes.Buffer)
	defer acceptedBufs.Put(b)
	b.Reset()
	for _, s := range []string{network, dest, local} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if res != nil {
		res.StringWrite(b)
	}
	a.put(key, b.Bytes(), now)
}

// acceptedBufs are remember's buffers: a 2xx is written out once per call.
var acceptedBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// upstream is where a response goes, as remember kept it.
type upstream struct{ network, dest, local string }

// lookup returns what remember kept under key: where it goes, and the
// response's bytes (empty for an upstream alone).
func (a *acceptedKept) lookup(key string) (upstream, []byte, bool) {
	b := a.get(key)
	if b == nil {
		return upstream{}, nil, false
	}
	parts := bytes.SplitN(b, []byte{0}, 4)
	if len(parts) != 4 {
		return upstream{}, nil, false
	}
	return upstream{string(parts[0]), string(parts[1]), string(parts[2])}, parts[3], true
}

// localOf is the local address of conn, or "".
func localOf(conn sip.Connection) string {
	if conn != nil && conn.LocalAddr() != nil {
		return conn.LocalAddr().String()
	}
	return ""
}

// keepRelayed2xx remembers a 2xx this peer relayed upstream for the
// INVITE req, through the server transaction's connection conn (nil when
// there is none to name), under key (acceptedKey of the 2xx as it came).
func (s *Service) keepRelayed2xx(key string, res *sip.Response, req *sip.Request, conn sip.Connection) {
	s.accepted.remember(key, res, req.Transport(), req.Source(), localOf(conn), time.Now())
}

// keepCancelledUpstream remembers where the INVITE of a fork whose
// branches are being cancelled came from (the caller's CANCEL, or a 2xx on
// another branch, §16.7 step 10): a callee's 2xx that crossed the CANCEL
// may still come from downstream after a 487 ended its transaction here
// (sent by sipgo here, or by the next peer, fork.relayLate2xx there). A
// fork that translates its responses (a bridged call's SDP, a shifted
// CSeq) is left out: its 2xx cannot go up untranslated, and is dropped.
func (f *fork) keepCancelledUpstream() {
	f.mu.Lock()
	translated := f.cseqShift != 0
	for _, b := range f.branches {
		translated = translated || b.media != nil
	}
	f.mu.Unlock()
	cs := f.req.CSeq()
	if translated || cs == nil {
		return
	}
	f.s.accepted.remember(upstreamKey(callIDOf(f.req), cs.SeqNo), nil, f.req.Transport(), f.req.Source(),
		localOf(f.txConn()), time.Now())
}

// onStrayResponse handles a response that matches no client transaction
// (sipgo's unhandled-response hook). A 2xx to an INVITE goes upstream:
// a retransmission as this peer relayed the first copy, a 2xx that
// crossed a CANCEL to where the cancelled INVITE came from, without this
// peer's Via (as a stateless proxy would, §16.11). Such a 2xx goes only
// where a request of the same call came from, never where an unknown
// response's Vias say. Anything else is dropped, where §16.7 would
// forward it statelessly: this peer ends a client transaction only at its
// final response, which it relayed, so a stray provisional or non-2xx
// final response is one the caller's transaction no longer takes.
func (s *Service) onStrayResponse(res *sip.Response) {
	v := res.Via()
	if !res.IsSuccess() || v == nil || !(strings.EqualFold(v.Host, s.cfg.Host) || s.isPeerHost(v.Host)) {
		s.stray(res, "dropped", "a response that matches no transaction", nil)
		return
	}
	if key, ok := acceptedKey(res); ok {
		if up, raw, kept := s.accepted.lookup(key); kept {
			s.stray(res, "forwarded", "", s.resend2xx(up, raw))
			return
		}
	}
	if key, ok := upstreamKeyOf(res); ok {
		if up, _, kept := s.accepted.lookup(key); kept {
			s.stray(res, "forwarded", "", s.forward2xx(up, res))
			return
		}
	}
	s.stray(res, "unknown", "a 2xx of no call this peer relayed or cancelled", nil)
}

// stray counts what became of a response that matched no transaction,
// and logs why it was dropped or what failed.
func (s *Service) stray(res *sip.Response, action, why string, err error) {
	switch {
	case err != nil:
		action = "failed"
		s.log.Debug("forwarding a 2xx that matches no transaction failed", "call", callIDOf(res), "err", err)
	case why != "":
		s.log.Debug("dropping "+why, "response", res.StartLine(), "call", callIDOf(res))
	}
	s.m.stray.WithLabelValues(action).Inc()
}

// forward2xx sends res, a 2xx that crossed a CANCEL, to up without this
// peer's Via (§16.7 step 9).
func (s *Service) forward2xx(up upstream, res *sip.Response) error {
	res.RemoveHeader("Via")
	if res.Via() == nil {
		return errNoUpstream
	}
	return s.sendUp(up, res)
}

// resend2xx sends raw, a 2xx as this peer relayed it, to up again.
func (s *Service) resend2xx(up upstream, raw []byte) error {
	m, err := sip.ParseMessage(raw)
	if err != nil {
		return err
	}
	return s.sendUp(up, m)
}

// sendUp sends m to up (connTo).
func (s *Service) sendUp(up upstream, m sip.Message) error {
	conn, err := s.connTo(up)
	if err != nil {
		return err
	}
	// The pool's Get counted a reference; give it back as sipgo's own
	// WriteMsgTo does, or the connection never closes when its users go.
	defer func() { _, _ = conn.TryClose() }()
	m.SetDestination(up.dest)
	m.SetTransport(up.network)
	return conn.WriteMsg(m)
}

// connTo is the connection a response to up leaves on: the socket it
// left from over UDP, else the connection to the request's source (a
// stream, TCP, TLS, WebSocket; RFC 3261 §18.2.2), if still open.
func (s *Service) connTo(up upstream) (sip.Connection, error) {
	tl := s.ua.TransportLayer()
	if strings.EqualFold(up.network, "UDP") {
		return tl.GetConnection(up.network, up.local)
	}
	return tl.GetConnection(up.network, up.dest)
}
