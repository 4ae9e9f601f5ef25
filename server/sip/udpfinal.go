package sip

import (
	"bytes"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Finished UDP server transactions, kept as bytes.
//
// Over UDP a server transaction outlives its final response by 64*T1 =
// 32 s so that it can absorb or answer the client's retransmissions:
// Timer J for a non-INVITE (RFC 3261 §17.2.2), Timer L for an INVITE
// answered 2xx (RFC 6026 §7.1, the Accepted state). sipgo keeps the
// whole transaction for that time: the parsed request, the responses,
// timers and channels. At hundreds of calls a second those were most of
// the live heap of a peer that faces phones over UDP, and the garbage
// collector's mark phase over them, on a peer with one core, was the
// tail latency of every call it handled (bench/README.md, issue 10).
//
// All such a finished transaction still has to do is
//   - a non-INVITE: answer a retransmission with the same final response;
//   - an INVITE answered 2xx: absorb a retransmission of the INVITE (the
//     UAS core, not a proxy, retransmits the 2xx; RFC 6026 §7.1), and
//     pass an ACK on (RFC 6026 §8.7), which onAck does anyway;
//   - and answer a CANCEL of it with 200 (RFC 3261 §9.2), which then has
//     no effect.
//
// So once the handler has sent such a final response, udpFinals keeps
// the response's bytes (or, for the 2xx, only that there was one) in a
// table without pointers per entry (keptAnswers), and the sipgo
// transaction is terminated at once. A retransmission is looked up by
// the guard before sipgo parses it (guardConn.ReadFrom), and again by
// the handler (udpFinalHandler), for one read just before the entry was
// made and handed to sipgo just after the transaction ended.
//
// An INVITE answered with a non-2xx stays with sipgo: its transaction
// retransmits the response until the ACK (Timer G, §17.2.1), which a
// table cannot do, and it ends 5 s (Timer I) after that ACK anyway.
//
// An answer kept (get) is absorb (empty) for an INVITE answered 2xx, else
// the destination, a newline, and the response's bytes.
type udpFinals struct{ sweptAnswers }

func newUDPFinals() *udpFinals {
	return &udpFinals{sweptAnswers{kept: newKeptAnswers(), limit: maxRegTx}}
}

// absorb is the answer kept for an INVITE answered 2xx: nothing to send.
var absorb = []byte{}

// udpTxKey is the key of the server transaction req belongs to (RFC 3261
// §17.2.3; an ACK matches its INVITE), as method, plus the source the
// request came from: the branch and sent-by are the client's to choose,
// so another client must not match the entry and have its request
// swallowed (as for the UDP registrar's keys).
func udpTxKey(req *sip.Request, method sip.RequestMethod, source string) (string, bool) {
	if source == "" {
		return "", false
	}
	return txKey(req, method, source) // the guard gives RFC 2543 requests a branch
}

// replayed deals with a request of a finished transaction that the table
// holds: a retransmission gets the final response again, or is absorbed.
// It reports whether req was dealt with; ACKs and CANCELs never are (see
// udpFinalHandler).
func (g *guardConn) replayed(req *sip.Request, source string) bool {
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return false
	}
	key, ok := udpTxKey(req, req.Method, source)
	return ok && g.replayedKey(req, key)
}

// replayedKey is replayed for the key of req's transaction.
func (g *guardConn) replayedKey(req *sip.Request, key string) bool {
	ans := g.fin.get(key)
	if ans == nil {
		return false
	}
	if len(ans) == 0 {
		g.s.m.retransmissions.WithLabelValues(string(req.Method), "absorbed").Inc()
		return true
	}
	dest, msg, _ := bytes.Cut(ans, []byte("\n"))
	addr, err := net.ResolveUDPAddr("udp", string(dest))
	if err != nil {
		return false // cannot be: it was sent there
	}
	g.s.m.retransmissions.WithLabelValues(string(req.Method), "answered").Inc()
	if err := g.send(msg, addr); err != nil {
		g.s.log.Debug("answering a retransmission failed", "method", req.Method, "err", err)
	}
	return true
}

// udpFinalHandler wraps a request handler for UDP server transactions:
// a retransmission of a finished transaction is answered from the table,
// a CANCEL of an INVITE answered 2xx gets 200, and a transaction the
// handler gives a final response it keeps is terminated at once.
func (s *Service) udpFinalHandler(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		stx, _ := tx.(*sip.ServerTx)
		g := guardOf(stx)
		key, ok := "", false
		if g != nil && req.Method != sip.ACK {
			key, ok = udpTxKey(req, req.Method, req.Source())
		}
		if !ok {
			h(req, tx)
			return
		}
		// The guard looked before sipgo parsed the request; this look
		// covers a datagram read just before the entry was made.
		if req.Method != sip.CANCEL && g.replayedKey(req, key) {
			return
		}
		ft := &finalTx{ServerTx: stx}
		if req.IsCancel() && g.cancelsFinished(req) {
			// §9.2: the CANCEL matched a transaction that has its final
			// response already; it has no effect.
			s.respond(ft, req, 200, "OK")
		} else {
			h(req, ft)
		}
		g.keep(req, ft, key)
	}
}

// cancelsFinished reports whether the CANCEL req is for an INVITE the
// table holds (answered 2xx).
func (g *guardConn) cancelsFinished(req *sip.Request) bool {
	inv, ok := udpTxKey(req, sip.INVITE, req.Source())
	return ok && g.fin.get(inv) != nil
}

// keep moves the final response of ft to the table under key and
// terminates the transaction, if the table can stand in for it (see
// udpFinals).
func (g *guardConn) keep(req *sip.Request, ft *finalTx, key string) {
	res := ft.final()
	if res == nil {
		return // none yet: sipgo terminates it when the handler returns
	}
	var ans []byte
	switch {
	case req.IsInvite() && res.IsSuccess():
		ans = absorb
	case req.IsInvite():
		return // Timer G: sipgo's transaction retransmits it until the ACK
	default:
		var b bytes.Buffer
		b.WriteString(res.Destination())
		b.WriteByte('\n')
		res.StringWrite(&b)
		ans = b.Bytes()
	}
	// The entry first: a retransmission then finds either the
	// transaction or the entry.
	g.fin.put(key, ans, time.Now())
	ft.ServerTx.Terminate()
	stopTimerL(ft.ServerTx)
}

// guardOf is the guarded UDP socket a server transaction came in on, or
// nil for any other transport.
func guardOf(tx *sip.ServerTx) *guardConn {
	if tx == nil {
		return nil
	}
	c, ok := tx.Connection().(*sip.UDPConnection)
	if !ok {
		return nil
	}
	g, _ := c.PacketConn.(*guardConn)
	if g == nil || g.fin == nil {
		return nil
	}
	return g
}

// finalTx is a sipgo server transaction that notes its final response.
type finalTx struct {
	*sip.ServerTx
	mu  sync.Mutex
	res *sip.Response // guarded by mu; the first final response sent
}

// Respond implements sip.ServerTransaction.
func (t *finalTx) Respond(res *sip.Response) error {
	err := t.ServerTx.Respond(res)
	if err == nil && res.StatusCode >= 200 {
		t.mu.Lock()
		if t.res == nil {
			t.res = res
		}
		t.mu.Unlock()
	}
	return err
}

func (t *finalTx) final() *sip.Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.res
}
