package sip

import (
	"slices"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// A branch's provisional responses go upstream before the responses read
// after them.
//
// sipgo's transaction layer hands every response it reads to a goroutine
// of its own, as it does requests (order.go). A 180 and the 200 right
// behind it (sipp's UAS and many PBXes answer at once; a peer stream
// carries both in one read) race to the client transaction, and Go's
// scheduler runs the goroutine started last first, so the 200 usually
// wins. The transaction, then in the Accepted state, drops the late 180
// (RFC 6026 §8.4 passes only 2xx up from there), and the caller never
// hears its call ring although the callee sent a 180 (§16.7 step 5
// forwards every provisional response above 100). In bench/peers 9–18 %
// of the calls through two peers lost their 180 this way.
//
// So the goroutine that reads a response notes it, in read order, for the
// fork whose branch it answers (stamp, a transport-layer handler that runs
// before the transaction layer starts its goroutine). When the fork takes
// a response from the client transaction, any provisional response above
// 100 that was read before it and not yet taken is relayed first, as a
// copy (the transaction's goroutine may still be reading the original);
// should the transaction pass that original up later after all (two
// provisional responses that swapped), the fork skips it. Nothing waits:
// the reader of a socket or stream, which serves every call on it, never
// blocks on a fork, and a fork busy relaying upstream holds up only its
// own call.
//
// A 100 that loses the race needs nothing (a proxy never forwards it,
// §16.7 step 5), nor does a final response read after another final. A
// provisional response read after a final one (a reliable 183
// retransmitted, RFC 3262) that wins the race is skipped: in its turn the
// transaction would have dropped it.

// respLineMax bounds how many responses a branch keeps, read but not
// taken and relayed ahead each: a callee that floods one branch with
// responses cannot grow a peer's memory.
const respLineMax = 16

// responseOrder tracks the responses read for the forks' branches.
type responseOrder struct {
	reordered prometheus.Counter // provisional responses relayed ahead

	mu    sync.Mutex
	lines map[string]*respLine // by branch and CSeq method (respKey); guarded by mu
}

// respLine is one branch's responses between their read and their fork.
type respLine struct {
	read    []*sip.Response // read, not yet taken by the fork, in read order
	relayed []*sip.Response // relayed ahead of their turn; skipped if taken later
	final   bool            // a final response was taken: nothing more to order
}

func newResponseOrder(reordered prometheus.Counter) *responseOrder {
	return &responseOrder{reordered: reordered, lines: map[string]*respLine{}}
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
	if key, ok := respKey(req.Via(), req.CSeq()); ok {
		o.mu.Lock()
		o.lines[key] = &respLine{}
		o.mu.Unlock()
	}
}

// close stops tracking req's responses.
func (o *responseOrder) close(req *sip.Request) {
	if key, ok := respKey(req.Via(), req.CSeq()); ok {
		o.mu.Lock()
		delete(o.lines, key)
		o.mu.Unlock()
	}
}

// stamp notes a response to a tracked branch in read order. It runs on
// the goroutine that read msg, before the transaction layer hands it on,
// and never blocks that goroutine for longer than a map lookup.
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
	if l := o.lines[key]; l != nil && !l.final {
		if len(l.read) == respLineMax {
			l.read = slices.Delete(l.read, 0, 1)
		}
		l.read = append(l.read, res)
	}
	o.mu.Unlock()
}

// took records that the fork took res from req's client transaction. It
// returns the provisional responses above 100 read before res and not
// yet taken, oldest first, for the fork to relay (as copies) ahead of
// res; and whether res itself is to be skipped: relayed so already, or a
// provisional response read after a final one.
func (o *responseOrder) took(req *sip.Request, res *sip.Response) (ahead []*sip.Response, skip bool) {
	key, ok := respKey(req.Via(), req.CSeq())
	if !ok {
		return nil, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lines[key]
	if l == nil {
		return nil, false
	}
	if i := slices.Index(l.relayed, res); i >= 0 {
		l.relayed = slices.Delete(l.relayed, i, i+1)
		return nil, true
	}
	if !res.IsProvisional() {
		l.final = true
	}
	at := slices.Index(l.read, res)
	if at < 0 {
		return nil, false // not read here (made up by the transaction layer), or swept
	}
	if res.IsProvisional() && slices.ContainsFunc(l.read[:at], func(r *sip.Response) bool { return !r.IsProvisional() }) {
		// Sent after a final response that it overtook here: the
		// transaction would have dropped it had it come in its turn.
		l.read = slices.Delete(l.read, at, at+1)
		return nil, true
	}
	rest := l.read[:0:0]
	for i, r := range l.read {
		switch {
		case i == at:
		case i < at && r.IsProvisional() && r.StatusCode > 100:
			ahead = append(ahead, r)
		case i < at && r.IsProvisional():
			// A 100 that lost the race: never relayed anyway.
		default:
			rest = append(rest, r) // read after res, or a final still to come
		}
	}
	l.read = rest
	if len(ahead) > 0 {
		l.relayed = append(l.relayed, ahead...)
		if n := len(l.relayed) - respLineMax; n > 0 {
			l.relayed = slices.Delete(l.relayed, 0, n)
		}
		o.reordered.Add(float64(len(ahead)))
	}
	return ahead, false
}
