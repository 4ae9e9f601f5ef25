package sip

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fork is one proxied request and its branches (§16.7): responses are
// collected, provisional and 2xx ones passed upstream at once, and the
// best final one sent when every branch has ended.
type fork struct {
	s      *Service
	req    *sip.Request
	stx    sip.ServerTransaction
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	branches []*branch     // guarded by mu
	final    bool          // guarded by mu; a final response went upstream
	best     *sip.Response // guarded by mu
}

type branch struct {
	out         *sip.Request
	tx          sip.ClientTransaction
	provisional bool // a provisional arrived: CANCEL may be sent
	done        bool
}

// branchTimeout bounds a branch: Timer C (§16.6 step 11) is 3 min for
// INVITE; non-INVITE transactions end by Timer F (32 s) on their own.
const branchTimeout = 3 * time.Minute

func newFork(s *Service, req *sip.Request, stx sip.ServerTransaction, targets []target) *fork {
	f := &fork{s: s, req: req, stx: stx}
	f.ctx, f.cancel = context.WithTimeout(context.Background(), branchTimeout)
	rr := dialogCreating(req)
	for _, t := range targets {
		f.branches = append(f.branches, &branch{out: s.prepare(req, t, rr)})
	}
	return f
}

// run forwards every branch and returns once the fork is over.
func (f *fork) run() {
	if f.req.IsInvite() {
		f.stx.OnCancel(func(*sip.Request) { go f.cancelBranches() })
	}
	var wg sync.WaitGroup
	for _, b := range f.branches {
		tx, err := f.s.client.TransactionRequest(f.ctx, b.out, prebuilt)
		if err != nil {
			f.s.log.Debug("branch failed to start", "ruri", b.out.Recipient.String(), "err", err)
			f.onFinal(b, sip.NewResponseFromRequest(f.req, 503, "Service Unavailable (next hop unreachable)", nil), false)
			continue
		}
		f.mu.Lock()
		b.tx = tx
		f.mu.Unlock()
		if len(f.branches) == 1 {
			f.watch(b) // one branch: this goroutine waits anyway
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); f.watch(b) }()
	}
	// sipgo ends the server transaction when the handler returns: wait.
	wg.Wait()
	f.finish()
	f.cancel()
}

// watch relays one branch's responses.
func (f *fork) watch(b *branch) {
	defer b.tx.Terminate()
	for {
		select {
		case res := <-b.tx.Responses():
			if res.IsProvisional() {
				f.mu.Lock()
				b.provisional = true
				final := f.final
				f.mu.Unlock()
				if res.StatusCode > 100 && !final {
					f.relay(res)
				}
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
		case <-f.ctx.Done():
			f.onFinal(b, sip.NewResponseFromRequest(f.req, 408, "Request Timeout", nil), false)
			return
		}
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
		f.relay(res)
		return
	}
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
	f.relay(res)
}

// relay sends a downstream response upstream without the Via this peer
// added (§16.7 step 9).
func (f *fork) relay(res *sip.Response) {
	up := res.Clone()
	if v := up.Via(); v != nil && v.Host == f.s.cfg.Host && len(up.GetHeaders("Via")) > len(f.req.GetHeaders("Via")) {
		up.RemoveHeader("Via")
	}
	if res.Via() == nil || up.CallID() == nil {
		return
	}
	// The copy still carries where it arrived; it goes where the request
	// came from (§18.2.2: the source of the request, RFC 3581 rport).
	up.SetSource("")
	up.SetDestination(f.req.Source())
	up.SetTransport(f.req.Transport())
	if err := f.stx.Respond(up); err != nil {
		f.s.log.Debug("relaying response failed", "code", res.StatusCode, "err", err)
	}
	f.s.m.responses.WithLabelValues(string(f.req.Method), classOf(res.StatusCode)).Inc()
}

// cancelBranches sends CANCEL on every INVITE branch still ringing
// (§16.10); branches without a provisional response are left to time out.
func (f *fork) cancelBranches() {
	f.mu.Lock()
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
		tx, err := f.s.client.TransactionRequest(ctx, c, prebuilt)
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
// Request-URI, top Via, Route, Call-ID, From, To and CSeq number.
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
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	return c
}

func classOf(code int) string { return string(rune('0'+code/100)) + "xx" }

func splitSource(src string) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(src)
	return h, p, err == nil
}
