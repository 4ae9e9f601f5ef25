package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fork is one proxied request and its branches (§16.7): responses are
// collected, provisional and 2xx ones passed upstream at once, and the
// best final one sent when every branch has ended.
type fork struct {
	s       *Service
	req     *sip.Request
	stx     sip.ServerTransaction
	reqVias int // req's Via count, to tell our Via in a response
	// timerC fires (or is closed) when Timer C expires; nil for a
	// non-INVITE, whose client transactions end by Timer F on their own.
	timerC <-chan time.Time

	mu       sync.Mutex
	branches []*branch // guarded by mu
	final    bool      // guarded by mu; a final response went upstream
	// cancelled: a CANCEL or a 2xx ended the fork; branches not yet sent
	// are not sent.
	cancelled bool          // guarded by mu
	best      *sip.Response // guarded by mu
	// cseqShift moved the forwarded request's CSeq past requests this
	// peer sent in the sender's name (bridged.go); responses move back.
	cseqShift uint32
}

type branch struct {
	t           target
	out         *sip.Request
	tx          sip.ClientTransaction
	provisional bool // a provisional arrived: CANCEL may be sent
	done        bool
	// pre, when set, is the branch's final response before it is sent
	// (its media could not be bridged).
	pre *sip.Response
	// media is the bridging of this branch's SDP (bridged.go); nil when
	// the peer does not touch it.
	media *branchMedia
}

// branchTimeout bounds a branch: Timer C (§16.6 step 11) is 3 min for
// INVITE; non-INVITE transactions end by Timer F (32 s) on their own.
const branchTimeout = 3 * time.Minute

// newFork prepares a branch per target.
func newFork(s *Service, req *sip.Request, stx sip.ServerTransaction, targets []target) *fork {
	return newForkLoop(s, req, stx, targets, loopHash(req))
}

// newForkLoop is newFork for a request whose loopHash is known.
func newForkLoop(s *Service, req *sip.Request, stx sip.ServerTransaction, targets []target, loop string) *fork {
	f := &fork{s: s, req: req, stx: stx, reqVias: countVias(req.Headers()), branches: make([]*branch, len(targets))}
	rr := dialogCreating(req)
	for i, t := range targets {
		f.branches[i] = &branch{t: t, out: s.prepare(req, t, rr, loop)}
	}
	return f
}

// run forwards every branch and returns once the fork is over.
func (f *fork) run() {
	if f.req.IsInvite() {
		f.stx.OnCancel(func(*sip.Request) { go f.cancelBranches() })
		// Timer C. A lone branch's watcher is the timer's only reader;
		// several need a channel that closes for all of them.
		if len(f.branches) == 1 {
			t := time.NewTimer(branchTimeout)
			defer t.Stop()
			f.timerC = t.C
		} else {
			c := make(chan time.Time)
			t := time.AfterFunc(branchTimeout, func() { close(c) })
			defer t.Stop()
			f.timerC = c
		}
	}
	// sipgo uses the context only to open a connection. Over UDP that
	// cannot block; a stream (TCP, TLS, WebSocket) dial and handshake is
	// bounded like the branch itself.
	ctx := context.Background()
	for _, b := range f.branches {
		if !strings.EqualFold(b.out.Transport(), "UDP") {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, branchTimeout)
			defer cancel()
			break
		}
	}
	var wg sync.WaitGroup
	for _, b := range f.branches {
		if len(f.branches) == 1 {
			f.start(ctx, b) // one branch: this goroutine waits anyway
			continue
		}
		// Branches start at once: opening a stream to one peer must not
		// hold up the others (§16.7: parallel forking).
		wg.Add(1)
		go func() { defer wg.Done(); f.start(ctx, b) }()
	}
	// sipgo ends the server transaction when the handler returns: wait.
	wg.Wait()
	f.finish()
	f.release()
}

// release lets go of the branches once the fork is over. Over UDP the
// server transaction lives on for 32 s after its final response (RFC 6026
// Timer L, RFC 3261 Timer J) and keeps the fork through its CANCEL
// callback; the branches' forwarded copies, client transactions and
// responses would stay with it, and at hundreds of calls a second that
// live heap is what makes the garbage collector's mark phase, and so the
// tail latency, long. A CANCEL after the final response has nothing left
// to cancel (§9.2).
func (f *fork) release() {
	f.mu.Lock()
	f.branches = nil
	f.best = nil
	f.mu.Unlock()
	releaseServerTx(f.stx, f.req)
}

// start sends one branch, through a stream when its next hop is a peer,
// and relays its responses.
func (f *fork) start(ctx context.Context, b *branch) {
	if b.pre != nil {
		f.onFinal(b, b.pre, false)
		return
	}
	if err := f.s.dialPeer(ctx, b.out); err != nil {
		f.s.log.Info("branch to an overlay peer failed: no stream to it", "ruri", b.out.Recipient.String(), "err", err)
		f.onFinal(b, sip.NewResponseFromRequest(f.req, 503, "Service Unavailable (overlay peer unreachable)", nil), false)
		return
	}
	f.mu.Lock()
	cancelled := f.cancelled
	f.mu.Unlock()
	if cancelled {
		// The caller gave up while the stream opened (§16.10).
		f.onFinal(b, sip.NewResponseFromRequest(f.req, 487, "Request Terminated", nil), false)
		return
	}
	f.s.respOrder.open(b.out) // before it is sent: its responses may come at once (resporder.go)
	tx, err := f.s.client.TransactionRequest(ctx, b.out, prebuilt)
	f.s.order.forwarded(f.req) // sent: the dialog's next request may follow it
	if err != nil {
		f.s.respOrder.close(b.out)
		f.s.log.Debug("branch failed to start", "ruri", b.out.Recipient.String(), "err", err)
		f.onFinal(b, sip.NewResponseFromRequest(f.req, 503, "Service Unavailable (next hop unreachable)", nil), false)
		return
	}
	f.mu.Lock()
	b.tx = tx
	f.mu.Unlock()
	f.watch(b)
}

// watch relays one branch's responses.
func (f *fork) watch(b *branch) {
	defer b.tx.Terminate()
	defer f.s.respOrder.close(b.out)
	for {
		select {
		case res := <-b.tx.Responses():
			ahead, skip := f.s.respOrder.took(b.out, res)
			for _, early := range ahead { // read before res, overtaken (resporder.go)
				f.provisional(b, early.Clone())
			}
			if skip {
				continue // relayed ahead already
			}
			if res.IsProvisional() {
				f.provisional(b, res)
				continue
			}
			f.onFinal(b, res, true)
			if res.IsSuccess() && f.req.IsInvite() {
				f.cancelBranches() // §16.7 step 10
			}
			return
		case <-b.tx.Done():
			code, reason := 408, "Request Timeout"
			if err := b.tx.Err(); err != nil && !isTimeout(err) {
				code, reason = 503, "Service Unavailable (next hop unreachable)"
			}
			f.onFinal(b, sip.NewResponseFromRequest(f.req, code, reason, nil), false)
			return
		case <-f.timerC:
			f.onFinal(b, sip.NewResponseFromRequest(f.req, 408, "Request Timeout", nil), false)
			return
		}
	}
}

// provisional relays a branch's provisional response above 100 while no
// final response has gone upstream (§16.7 step 5).
func (f *fork) provisional(b *branch, res *sip.Response) {
	f.mu.Lock()
	b.provisional = true
	final := f.final
	f.mu.Unlock()
	if res.StatusCode > 100 && !final {
		f.relay(b, res)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, sip.ErrTransactionTimeout)
}

// onFinal handles a branch's final response: 2xx go upstream at once
// (every one of them, §16.7 step 5), others compete for the best.
func (f *fork) onFinal(b *branch, res *sip.Response, fromDownstream bool) {
	f.mu.Lock()
	b.done = true
	if res.IsSuccess() {
		f.final = true
		f.mu.Unlock()
		f.relay(b, res)
		return
	}
	f.translate(b, res) // a failed branch's bridged media ends
	if !fromDownstream || res.StatusCode != 503 {
		if f.best == nil || better(res, f.best) {
			f.best = res
		}
	} else if f.best == nil {
		// §16.7 step 6: a 503 from downstream becomes 500 upstream, so the
		// caller does not take this proxy for the overloaded one.
		f.best = sip.NewResponseFromRequest(f.req, 500, "Server Internal Error (next hop unavailable)", nil)
	}
	f.mu.Unlock()
}

// better chooses among final responses (§16.7 step 6): 6xx first, then
// the lowest class.
func better(a, b *sip.Response) bool {
	ca, cb := a.StatusCode/100, b.StatusCode/100
	if ca == 6 || cb == 6 {
		return ca == 6 && cb != 6
	}
	return ca < cb
}

// finish sends the best final response when no 2xx went upstream.
func (f *fork) finish() {
	f.mu.Lock()
	if f.final || f.best == nil {
		f.mu.Unlock()
		return
	}
	f.final = true
	res := f.best
	f.mu.Unlock()
	f.relay(nil, res)
}

// relay sends a downstream response upstream without the Via this peer
// added (§16.7 step 9). It edits res in place rather than a copy: sipgo's
// client transaction hands each response over once and keeps no use for
// it, and a fork relays a response at most once. b is the branch it came
// from (nil for the best of several).
func (f *fork) relay(b *branch, res *sip.Response) {
	v := res.Via()
	if v == nil || res.CallID() == nil {
		return
	}
	inv2xx := res.IsSuccess() && f.req.IsInvite()
	key, keep := "", false
	if inv2xx {
		key, keep = acceptedKey(res) // as it came, before it changes here
	}
	if b != nil {
		f.translate(b, res)
	}
	if cs := f.req.CSeq(); f.cseqShift != 0 && cs != nil {
		res.ReplaceHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: cs.MethodName})
	}
	if (v.Host == f.s.cfg.Host || f.s.isPeerHost(v.Host)) && countVias(res.Headers()) > f.reqVias {
		res.RemoveHeader("Via")
	}
	// The response still carries where it arrived; it goes where the
	// request came from (§18.2.2: the source of the request, RFC 3581
	// rport).
	res.SetSource("")
	res.SetDestination(f.req.Source())
	res.SetTransport(f.req.Transport())
	err := f.stx.Respond(res)
	if err != nil && inv2xx {
		err = f.relayLate2xx(res)
	}
	if keep && err == nil {
		f.s.keepRelayed2xx(key, res, f.req, f.txConn())
	}
	if err != nil {
		f.s.log.Debug("relaying response failed", "code", res.StatusCode, "err", err)
	}
	f.s.m.responses.WithLabelValues(string(f.req.Method), classOf(res.StatusCode)).Inc()
}

// relayLate2xx sends a 2xx to an INVITE that the server transaction
// refused because it has already sent a final response: a callee's 200
// that crossed the caller's CANCEL, after sipgo answered the CANCEL and
// ended the INVITE with its own 487 (it does not wait for the branches'
// 487, §16.10). A proxy forwards every 2xx to an INVITE, even after a
// final response (§16.7 step 5); the caller ACKs it (§13.2.2.4) and ends
// the call with a BYE (§15), where without it the callee would sit
// in a silent call until its 2xx retransmissions time out (64*T1, §13.3.1.4).
// It goes on the connection the INVITE came in on, as the transaction's
// responses do.
func (f *fork) relayLate2xx(res *sip.Response) error {
	conn := f.txConn()
	if conn == nil {
		return fmt.Errorf("late %d: %w", res.StatusCode, errNoTxConnection)
	}
	f.s.log.Debug("relaying a 2xx after the INVITE's final response", "code", res.StatusCode, "call", callIDOf(f.req))
	return conn.WriteMsg(res)
}

// txConn is the connection the INVITE came in on, or nil (a test's
// recorder has none).
func (f *fork) txConn() sip.Connection {
	if tx, ok := f.stx.(interface{ Connection() sip.Connection }); ok {
		return tx.Connection()
	}
	return nil
}

// countVias counts Via header fields (GetHeaders("Via") without building
// the list).
func countVias(hs []sip.Header) int {
	n := 0
	for _, h := range hs {
		if sip.HeaderToLower(h.Name()) == "via" {
			n++
		}
	}
	return n
}

// cancelBranches sends CANCEL on every INVITE branch still ringing
// (§16.10); branches without a provisional response are left to time out.
func (f *fork) cancelBranches() {
	f.keepCancelledUpstream()
	f.mu.Lock()
	f.cancelled = true
	var pending []*branch
	for _, b := range f.branches {
		if !b.done && b.tx != nil && b.provisional {
			pending = append(pending, b)
		}
	}
	f.mu.Unlock()
	for _, b := range pending {
		c := cancelFor(b.out)
		ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
		err := f.s.dialPeer(ctx, c) // the INVITE's stream may have closed
		var tx sip.ClientTransaction
		if err == nil {
			tx, err = f.s.client.TransactionRequest(ctx, c, prebuilt)
		}
		if err == nil {
			go func() {
				defer cancel()
				defer tx.Terminate()
				select {
				case <-tx.Responses():
				case <-tx.Done():
				case <-ctx.Done():
				}
			}()
		} else {
			cancel()
		}
	}
}

// cancelFor builds the CANCEL of a forwarded INVITE (§9.1): same
// Request-URI, top Via, Route, Call-ID, From, To and CSeq number, and
// Content-Length: 0.
func cancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	c.AppendHeader(inv.Via().Clone())
	for _, r := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(r))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, name := range []string{"From", "To", "Call-ID"} {
		if h := inv.GetHeader(name); h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := inv.CSeq(); cs != nil {
		c.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	// §18.3, §20.14: a stream receiver frames by Content-Length; without
	// it the CANCEL is a framing error and the callee keeps ringing.
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	return c
}

func classOf(code int) string { return string(rune('0'+code/100)) + "xx" }

func splitSource(src string) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(src)
	return h, p, err == nil
}
