package sip

import (
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Requests of a dialog leave a peer in the order they came.
//
// sipgo's transaction layer starts every request it reads on a goroutine
// of its own (it must: a proxy's INVITE handler waits for the final
// response). Two requests read one after the other from one connection
// therefore race to the next hop: a zero-length call's BYE overtakes the
// ACK in front of it, DTMF digits sent as INFO swap. UDP may reorder
// anyway and a UA has to cope (RFC 3261 §12.2.2 rejects a lower CSeq),
// but a proxy on a reliable, ordered path (the peers' streams, a TCP or
// WebSocket flow) must not add reordering, and real UAs (sipp, which
// aborts on an "unexpected" ACK) do not cope.
//
// So each in-dialog request gets a ticket on the read goroutine, in read
// order, before sipgo starts its goroutine (stamp, a transport-layer
// message handler registered ahead of the transaction layer's). Its
// handler waits for the ticket before it (same Call-ID) to be released,
// and releases its own once the request is on its way to the next hop
// (forwarded) or the handler is done with it. A request only the
// transaction layer sees (a retransmission it absorbs, the ACK of a
// non-2xx) would hold the dialog up for good; so a ticket counts for at
// most orderWait: after that whatever came next goes ahead.
//
// Requests outside a dialog (no To tag) are not ordered: nothing can
// overtake an initial INVITE that matters before its response, and
// CANCEL is matched to its INVITE by the transaction layer (§9.2).

// orderWait is how long a request waits for the one before it in its
// dialog. Forwarding takes well under a millisecond on a live stream and
// at most a stream's opening (a relayed dial) otherwise.
const orderWait = 250 * time.Millisecond

// orderTicket is one in-dialog request's place in its dialog's order.
type orderTicket struct {
	req    *sip.Request // until claimed or swept
	callID string
	branch string
	method sip.RequestMethod
	at     time.Time
	after  chan struct{} // the previous ticket's done; nil if none
	done   chan struct{} // closed on release

	released bool // guarded by dialogOrder.mu
}

// dialogOrder hands out and keeps the tickets.
type dialogOrder struct {
	mu    sync.Mutex
	last  map[string]*orderTicket       // newest ticket per Call-ID, for orderWait; guarded by mu
	byReq map[*sip.Request]*orderTicket // tickets by request, for orderWait; guarded by mu
	fifo  []*orderTicket                // every ticket for orderWait, oldest first; guarded by mu
}

func newDialogOrder() *dialogOrder {
	return &dialogOrder{last: map[string]*orderTicket{}, byReq: map[*sip.Request]*orderTicket{}}
}

// stamp gives an in-dialog request its ticket. It runs on the goroutine
// that read msg, before the transaction layer hands msg on.
func (o *dialogOrder) stamp(msg sip.Message) {
	req, ok := msg.(*sip.Request)
	if !ok || req.Method == sip.CANCEL || toTag(req) == "" {
		return
	}
	callID, via := callIDOf(req), req.Via()
	if callID == "" || via == nil {
		return
	}
	branch, _ := via.Params.Get("branch")
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sweep(now)
	prev := o.last[callID]
	if prev != nil && prev.branch == branch &&
		(prev.method == req.Method || req.Method == sip.ACK && prev.method == sip.INVITE) {
		// A retransmission, or the hop-by-hop ACK of a non-2xx to a
		// re-INVITE (§17.1.1.3): the transaction layer absorbs it, and
		// its handler would never release a ticket.
		return
	}
	t := &orderTicket{req: req, callID: callID, branch: branch, method: req.Method, at: now, done: make(chan struct{})}
	if prev != nil && !prev.released {
		t.after = prev.done
	}
	o.last[callID] = t
	o.byReq[req] = t
	o.fifo = append(o.fifo, t)
}

// sweep lets go of the tickets older than orderWait. Called with mu held.
func (o *dialogOrder) sweep(now time.Time) {
	n := 0
	for ; n < len(o.fifo) && now.Sub(o.fifo[n].at) > orderWait; n++ {
		t := o.fifo[n]
		o.releaseLocked(t)
		if o.last[t.callID] == t {
			delete(o.last, t.callID)
		}
		if t.req != nil { // no handler claimed it
			delete(o.byReq, t.req)
			t.req = nil
		}
		o.fifo[n] = nil
	}
	if n > 0 {
		o.fifo = o.fifo[n:]
	}
}

func (o *dialogOrder) releaseLocked(t *orderTicket) {
	if !t.released {
		t.released = true
		close(t.done)
	}
}

// Outcomes of await (the label of p2psip_sip_order_waits_total).
const (
	orderNoWait = ""        // nothing before req was still on its way
	orderInTurn = "in_turn" // req waited, and followed the one before it
	orderGaveUp = "gave_up" // orderWait ran out first
)

// await blocks until req may go on: the request before it in its dialog
// has been forwarded, or orderWait has passed since req was read.
func (o *dialogOrder) await(req *sip.Request) string {
	o.mu.Lock()
	t := o.byReq[req]
	o.mu.Unlock()
	if t == nil || t.after == nil {
		return orderNoWait
	}
	select {
	case <-t.after:
		return orderNoWait
	default:
	}
	wait := orderWait - time.Since(t.at)
	if wait <= 0 {
		return orderGaveUp
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-t.after:
		return orderInTurn
	case <-timer.C:
		return orderGaveUp
	}
}

// forwarded releases req's ticket: the request behind it may go on. It
// is safe to call more than once, and for requests without a ticket.
func (o *dialogOrder) forwarded(req *sip.Request) {
	o.mu.Lock()
	if t := o.byReq[req]; t != nil {
		o.releaseLocked(t)
		delete(o.byReq, req)
		t.req = nil
	}
	o.mu.Unlock()
}

// inOrder wraps a request handler: it starts once the request before in
// the dialog is on its way, and releases its own ticket when it returns
// if it has not done so when it forwarded.
func (s *Service) inOrder(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if outcome := s.order.await(req); outcome != orderNoWait {
			s.m.orderWaits.WithLabelValues(outcome).Inc()
		}
		defer s.order.forwarded(req)
		h(req, tx)
	}
}
