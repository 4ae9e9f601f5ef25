package sip

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Responses reach a branch's client transaction in the order they came.
//
// sipgo's transaction layer hands every response it reads to a goroutine
// of its own, as it does requests (order.go). A 180 and the 200 right
// behind it (sipp's UAS and many PBXes answer at once; a peer stream
// carries both in one read) race to the client transaction, and Go's
// scheduler runs the goroutine started last first, so the 200 usually
// wins. The transaction, then in the Accepted state, drops the late 180
// (RFC 6026 §8.4 passes only 2xx up from there), and the caller never
// hears its call ring although the callee sent a 180 (§16.7 step 5
// forwards every provisional response above 100). In bench/peers 10–18 %
// of the calls through two peers lost their 180 this way.
//
// So a response to one of the forks' branches waits, on the goroutine
// that read it and before the transaction layer starts its own, until the
// fork has taken the response read before it from the client transaction.
// On a peer that keeps up that is a goroutine switch or two: the earlier
// response's goroutine is the next to run once the reader parks.
// respWait bounds the wait, because the reader serves a whole socket or
// stream: a response the transaction absorbs without passing it up (a 1xx
// after the final response) must not hold up the rest for long. After the
// final response has been taken, the branch's later responses (2xx
// retransmissions, which the transaction hands to accepted.go's hook) go
// on without waiting.

// respWait is the longest a response waits for the one before it.
const respWait = 10 * time.Millisecond

// responseOrder tracks the responses read for the forks' branches.
type responseOrder struct {
	waits *prometheus.CounterVec // outcome: in_turn, gave_up

	mu    sync.Mutex
	lines map[string]*respLine // by branch and CSeq method (respKey); guarded by mu
}

// respLine is one branch's responses on their way to its fork.
type respLine struct {
	pending *sip.Response // read, not yet taken by the fork; nil if none
	taken   chan struct{} // closed once pending is taken, or the line closes
	final   bool          // a final response was taken
}

func newResponseOrder(waits *prometheus.CounterVec) *responseOrder {
	return &responseOrder{waits: waits, lines: map[string]*respLine{}}
}

// respKey names a client transaction as its responses do: the top Via's
// branch and the CSeq method (a CANCEL shares its INVITE's branch, §9.1).
func respKey(via *sip.ViaHeader, cseq *sip.CSeqHeader) (string, bool) {
	if via == nil || cseq == nil {
		return "", false
	}
	branch, ok := via.Params.Get("branch")
	if !ok || branch == "" {
		return "", false
	}
	return branch + "\x00" + string(cseq.MethodName), true
}

// open starts tracking the responses to req, a branch about to be sent.
func (o *responseOrder) open(req *sip.Request) {
	key, ok := respKey(req.Via(), req.CSeq())
	if !ok {
		return
	}
	o.mu.Lock()
	o.lines[key] = &respLine{}
	o.mu.Unlock()
}

// close stops tracking req's responses; a response waiting on them goes on.
func (o *responseOrder) close(req *sip.Request) {
	key, ok := respKey(req.Via(), req.CSeq())
	if !ok {
		return
	}
	o.mu.Lock()
	if l := o.lines[key]; l != nil {
		if l.pending != nil {
			close(l.taken)
		}
		delete(o.lines, key)
	}
	o.mu.Unlock()
}

// stamp runs on the goroutine that read msg, before the transaction layer
// hands it on: a response to a tracked branch waits until the fork has
// taken the one read before it.
func (o *responseOrder) stamp(msg sip.Message) {
	res, ok := msg.(*sip.Response)
	if !ok {
		return
	}
	key, ok := respKey(res.Via(), res.CSeq())
	if !ok {
		return
	}
	o.mu.Lock()
	l := o.lines[key]
	if l != nil && l.pending != nil {
		taken := l.taken
		o.mu.Unlock()
		o.await(taken)
		o.mu.Lock()
		l = o.lines[key]
	}
	if l != nil && !l.final {
		if l.pending != nil { // gave up on the one before
			close(l.taken)
		}
		l.pending, l.taken = res, make(chan struct{})
	}
	o.mu.Unlock()
}

func (o *responseOrder) await(taken chan struct{}) {
	select {
	case <-taken:
		return // taken while the reader made its way here
	default:
	}
	timer := time.NewTimer(respWait)
	defer timer.Stop()
	select {
	case <-taken:
		o.waits.WithLabelValues(orderInTurn).Inc()
	case <-timer.C:
		o.waits.WithLabelValues(orderGaveUp).Inc()
	}
}

// took records that the fork took res from req's client transaction.
func (o *responseOrder) took(req *sip.Request, res *sip.Response) {
	key, ok := respKey(req.Via(), req.CSeq())
	if !ok {
		return
	}
	o.mu.Lock()
	if l := o.lines[key]; l != nil {
		if l.pending == res {
			l.pending = nil
			close(l.taken)
		}
		if !res.IsProvisional() {
			l.final = true
		}
	}
	o.mu.Unlock()
}
