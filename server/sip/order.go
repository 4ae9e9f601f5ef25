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
// handler waits for the ticket before it to be released, and releases its
// own once the request is on its way to the next hop (forwarded) or the
// handler is done with it. Tickets queue per sender of a dialog (Call-ID
// and From tag): the caller's and the callee's requests come on different
// flows and have no order between them to keep.
//
// A request only the transaction layer sees (a retransmission it
// absorbs, the ACK of a non-2xx, §17.1.1.3) would hold the dialog up:
// no handler ever releases its ticket. So stamp remembers the branch and
// method of every in-dialog request and INVITE for orderSeen
// and gives none to a request that repeats one, or to an ACK that shares
// an INVITE's branch. What still slips through (a retransmission later
// than orderSeen) counts for at most orderWait from its arrival: after
// that whatever came next goes on.
//
// CANCEL gets no ticket: the transaction layer matches it to its INVITE
// (§9.2).

// orderWait is how long a request waits for the one before it in its
// dialog. Forwarding takes well under a millisecond on a live stream and
// at most a stream's opening (a relayed dial) otherwise.
const orderWait = 250 * time.Millisecond

// orderSeen is how long the branches of requests are remembered to spot
// what the transaction layer absorbs: a client's retransmissions up to
// T1+2*T1 (§17.1.2.2, Timer E) and the ACK of a quick non-2xx (a 407
// challenge, a 491 in glare).
const orderSeen = 2 * time.Second

// orderTicket is one in-dialog request's place in its dialog's order.
type orderTicket struct {
	req    *sip.Request // until claimed or swept
	sender string       // Call-ID and From tag
	at     time.Time
	after  chan struct{} // the previous ticket's done; nil if none
	prevAt time.Time     // when the previous ticket's request was read
	done   chan struct{} // closed on release

	released bool // guarded by dialogOrder.mu
}

// dialogOrder hands out and keeps the tickets.
type dialogOrder struct {
	mu       sync.Mutex
	last     map[string]*orderTicket       // newest ticket per sender, for orderWait; guarded by mu
	byReq    map[*sip.Request]*orderTicket // tickets by request, for orderWait; guarded by mu
	fifo     []*orderTicket                // every ticket for orderWait, oldest first; guarded by mu
	seen     map[string]time.Time          // sender, branch and method of requests read in the last orderSeen; guarded by mu
	seenFIFO []seenRequest                 // seen's keys, oldest first; guarded by mu
}

type seenRequest struct {
	key string
	at  time.Time
}

func newDialogOrder() *dialogOrder {
	return &dialogOrder{last: map[string]*orderTicket{}, byReq: map[*sip.Request]*orderTicket{}, seen: map[string]time.Time{}}
}

// stamp gives an in-dialog request its ticket. It runs on the goroutine
// that read msg, before the transaction layer hands msg on.
func (o *dialogOrder) stamp(msg sip.Message) {
	req, ok := msg.(*sip.Request)
	if !ok || req.Method == sip.CANCEL {
		return
	}
	callID, via := callIDOf(req), req.Via()
	if callID == "" || via == nil {
		return
	}
	inDialog := toTag(req) != ""
	if !inDialog && req.Method != sip.INVITE {
		return // neither ordered nor the INVITE a later ACK may share a branch with
	}
	branch, _ := via.Params.Get("branch")
	sender := callID + "\x00" + fromTag(req)
	id := sender + "\x00" + branch + "\x00"
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.sweep(now)
	if _, again := o.seen[id+string(req.Method)]; again {
		return // a retransmission: the transaction layer absorbs it
	}
	if _, inv := o.seen[id+string(sip.INVITE)]; inv && req.Method == sip.ACK {
		return // the hop-by-hop ACK of a non-2xx (§17.1.1.3), absorbed too
	}
	o.seen[id+string(req.Method)] = now
	o.seenFIFO = append(o.seenFIFO, seenRequest{key: id + string(req.Method), at: now})
	if !inDialog {
		return // an initial INVITE: nothing of its dialog can overtake it yet
	}
	t := &orderTicket{req: req, sender: sender, at: now, done: make(chan struct{})}
	if prev := o.last[sender]; prev != nil && !prev.released {
		t.after, t.prevAt = prev.done, prev.at
	}
	o.last[sender] = t
	o.byReq[req] = t
	o.fifo = append(o.fifo, t)
}

// sweep lets go of the tickets older than orderWait. Called with mu held.
func (o *dialogOrder) sweep(now time.Time) {
	n := 0
	for ; n < len(o.fifo) && now.Sub(o.fifo[n].at) > orderWait; n++ {
		t := o.fifo[n]
		o.releaseLocked(t)
		if o.last[t.sender] == t {
			delete(o.last, t.sender)
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
	n = 0
	for ; n < len(o.seenFIFO) && now.Sub(o.seenFIFO[n].at) > orderSeen; n++ {
		if e := o.seenFIFO[n]; o.seen[e.key].Equal(e.at) {
			delete(o.seen, e.key)
		}
	}
	if n > 0 {
		o.seenFIFO = o.seenFIFO[n:]
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
// has been forwarded, or orderWait has passed since that one was read.
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
	wait := orderWait - time.Since(t.prevAt)
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
