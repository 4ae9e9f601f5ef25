package sip

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestInDialogRequestsKeepTheirOrder: a caller sends the ACK of a 200 and,
// right behind it, a burst of in-dialog requests (a zero-length call's
// BYE, DTMF as INFO). Every hop must pass them on in the order they came:
// sipgo starts each request it reads on a goroutine of its own, and a
// peer that let those race would hand bob a BYE before the ACK it
// follows, or digits out of order (sipp aborts such a call on the
// "unexpected" ACK). Through one peer and through two joined by a stream.
func TestInDialogRequestsKeepTheirOrder(t *testing.T) {
	for _, peers := range []int{1, 2} {
		t.Run(strconv.Itoa(peers)+" peers", func(t *testing.T) {
			inDialogOrder(t, newPath(t, peers))
		})
	}
}

func inDialogOrder(t *testing.T, p *path) {
	inv := p.call()
	ok200 := answer(inv, "SIP/2.0 200 OK")
	ok200 = append(ok200, "To: <sip:bob@"+testDomain+">;tag=b1", "Contact: <sip:bob@"+p.bob.addr()+">", "Content-Length: 0")
	p.bob.send(p.homeAddr, ok200...)
	res, ok := p.caller.await("SIP/2.0 200", "1 INVITE", 3*time.Second)
	if !ok {
		t.Fatal("the 200 did not reach the caller")
	}
	var route []string
	for _, v := range header(res, "Record-Route") {
		route = append(route, strings.Split(v, ",")...)
	}
	request := func(method string, cseq int) []string {
		lines := []string{method + " sip:bob@" + p.bob.addr() + " SIP/2.0",
			"Via: SIP/2.0/UDP " + p.caller.addr() + ";branch=z9hG4bK-ord" + strconv.Itoa(cseq) + method + ";rport",
			"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=c1", "To: <sip:bob@" + testDomain + ">;tag=b1",
			"Call-ID: r2-call", "CSeq: " + strconv.Itoa(cseq) + " " + method}
		for i := len(route) - 1; i >= 0; i-- { // the UAC's route set, §12.1.2
			lines = append(lines, "Route: "+route[i])
		}
		return append(lines, "Content-Length: 0")
	}
	const burst = 40
	p.caller.send(p.entryAddr, request("ACK", 1)...)
	for i := 2; i <= burst; i++ {
		p.caller.send(p.entryAddr, request("INFO", i)...)
	}
	p.caller.send(p.entryAddr, request("BYE", burst+1)...)
	var got []int // each request's first arrival, in arrival order
	seen := map[int]bool{}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < burst+1 {
		_ = p.bob.pc.SetReadDeadline(deadline)
		n, _, err := p.bob.pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("bob got %d of %d requests: %v (order so far %v)", len(got), burst+1, err, got)
		}
		m := string(buf[:n])
		if strings.HasPrefix(m, "SIP/2.0") {
			continue
		}
		cs := header(m, "CSeq")
		if len(cs) != 1 {
			t.Fatalf("a request without one CSeq reached bob:\n%s", m)
		}
		num, _, _ := strings.Cut(cs[0], " ")
		seq, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("CSeq %q", cs[0])
		}
		if seen[seq] {
			continue // a retransmission by a hop over UDP (bob answers nothing)
		}
		seen[seq] = true
		got = append(got, seq)
	}
	for i, seq := range got {
		if seq != i+1 {
			t.Fatalf("bob got the dialog's requests out of order: %v", got)
		}
	}
}

// inDialog is an in-dialog request of the call "ord" from the caller
// (From tag a) with the given top Via branch.
func inDialog(t *testing.T, method, branch string, cseq int) *sip.Request {
	t.Helper()
	return ordRequest(t, method, branch, cseq, "a", "b")
}

// ordRequest is a request of the call "ord" with the given tags ("" for
// none).
func ordRequest(t *testing.T, method, branch string, cseq int, from, to string) *sip.Request {
	t.Helper()
	toTag := ""
	if to != "" {
		toTag = ";tag=" + to
	}
	return parse(t, method+" sip:bob@"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch="+branch,
		"From: <sip:a@"+testDomain+">;tag="+from, "To: <sip:bob@"+testDomain+">"+toTag,
		"Call-ID: ord", "CSeq: "+strconv.Itoa(cseq)+" "+method, "Max-Forwards: 70", "Content-Length: 0")
}

// awaited reports whether await(req) returns within d.
func awaited(o *dialogOrder, req *sip.Request, d time.Duration) bool {
	_, ok := awaitedAs(o, req, d)
	return ok
}

// awaitedAs is awaited with await's outcome, once it returns.
func awaitedAs(o *dialogOrder, req *sip.Request, d time.Duration) (<-chan string, bool) {
	done := make(chan string, 1)
	go func() { done <- o.await(req) }()
	select {
	case outcome := <-done:
		done <- outcome
		return done, true
	case <-time.After(d):
		return done, false
	}
}

func TestDialogOrderTickets(t *testing.T) {
	t.Run("the next waits for the one before", func(t *testing.T) {
		o := newDialogOrder()
		ack, bye := inDialog(t, "ACK", "z9hG4bK-a", 1), inDialog(t, "BYE", "z9hG4bK-b", 2)
		o.stamp(ack)
		o.stamp(bye)
		if !awaited(o, ack, time.Second) {
			t.Fatal("the first request of a dialog waited")
		}
		outcome, ok := awaitedAs(o, bye, 50*time.Millisecond)
		if ok {
			t.Fatal("the BYE went on before the ACK was forwarded")
		}
		o.forwarded(ack)
		select {
		case got := <-outcome:
			if got != orderInTurn {
				t.Fatalf("the BYE's wait ended %q, want %q", got, orderInTurn)
			}
		case <-time.After(time.Second):
			t.Fatal("the BYE still waits after the ACK was forwarded")
		}
		if got := o.await(bye); got != orderNoWait {
			t.Fatalf("a request whose predecessor is on its way waited again: %q", got)
		}
	})
	t.Run("what the transaction layer absorbs holds nothing up", func(t *testing.T) {
		o := newDialogOrder()
		reinv := inDialog(t, "INVITE", "z9hG4bK-r", 2)
		o.stamp(reinv)
		o.forwarded(reinv)
		// A retransmission of the re-INVITE and the ACK of its 491 share
		// its branch; neither reaches a handler.
		o.stamp(inDialog(t, "INVITE", "z9hG4bK-r", 2))
		o.stamp(inDialog(t, "ACK", "z9hG4bK-r", 2))
		bye := inDialog(t, "BYE", "z9hG4bK-b", 3)
		o.stamp(bye)
		if !awaited(o, bye, 50*time.Millisecond) {
			t.Fatal("a retransmission or a non-2xx ACK held the BYE up")
		}
	})
	t.Run("a ticket nobody releases counts for orderWait", func(t *testing.T) {
		o := newDialogOrder()
		lost, bye := inDialog(t, "INFO", "z9hG4bK-i", 2), inDialog(t, "BYE", "z9hG4bK-b", 3)
		o.stamp(lost)
		o.stamp(bye)
		start := time.Now()
		outcome, ok := awaitedAs(o, bye, 5*orderWait)
		if !ok {
			t.Fatal("the BYE waits for good behind a request no handler took")
		}
		if got := <-outcome; got != orderGaveUp {
			t.Fatalf("the BYE's wait ended %q, want %q", got, orderGaveUp)
		}
		if waited := time.Since(start); waited < orderWait/2 {
			t.Fatalf("the BYE waited %v, not for the request before it", waited)
		}
	})
	t.Run("a retransmission behind a later request holds nothing up", func(t *testing.T) {
		o := newDialogOrder()
		a, b := inDialog(t, "INFO", "z9hG4bK-ia", 2), inDialog(t, "INFO", "z9hG4bK-ib", 3)
		o.stamp(a)
		o.forwarded(a) // sent on; its transaction waits downstream
		o.stamp(b)
		o.forwarded(b)
		o.stamp(inDialog(t, "INFO", "z9hG4bK-ia", 2)) // Timer E: absorbed by A's transaction
		bye := inDialog(t, "BYE", "z9hG4bK-b", 4)
		o.stamp(bye)
		if got := o.await(bye); got != orderNoWait {
			t.Fatalf("the BYE waited behind a retransmission: %q", got)
		}
	})
	t.Run("the ACK of a 407 to the initial INVITE holds nothing up", func(t *testing.T) {
		o := newDialogOrder()
		o.stamp(ordRequest(t, "INVITE", "z9hG4bK-i1", 1, "a", ""))
		o.stamp(ordRequest(t, "ACK", "z9hG4bK-i1", 1, "a", "p407")) // absorbed
		o.stamp(ordRequest(t, "INVITE", "z9hG4bK-i2", 2, "a", ""))  // the retry
		ack := ordRequest(t, "ACK", "z9hG4bK-a2", 2, "a", "b")      // of its 200
		o.stamp(ack)
		if got := o.await(ack); got != orderNoWait {
			t.Fatalf("the ACK of the 200 waited behind the ACK of the 407: %q", got)
		}
	})
	t.Run("the callee's requests do not queue behind the caller's", func(t *testing.T) {
		o := newDialogOrder()
		reinv := inDialog(t, "INVITE", "z9hG4bK-r", 2) // still on its way
		o.stamp(reinv)
		bye := ordRequest(t, "BYE", "z9hG4bK-cb", 7, "b", "a")
		o.stamp(bye)
		if got := o.await(bye); got != orderNoWait {
			t.Fatalf("the callee's BYE waited for the caller's re-INVITE: %q", got)
		}
	})
	t.Run("an unreleased ticket counts from its own arrival", func(t *testing.T) {
		o := newDialogOrder()
		lost := inDialog(t, "INFO", "z9hG4bK-l", 2)
		o.stamp(lost)
		read := time.Now()
		time.Sleep(orderWait * 4 / 5)
		bye := inDialog(t, "BYE", "z9hG4bK-b", 3)
		o.stamp(bye)
		if got := o.await(bye); got != orderGaveUp {
			t.Fatalf("the BYE's wait ended %q, want %q", got, orderGaveUp)
		}
		if late := time.Since(read); late > orderWait+100*time.Millisecond {
			t.Fatalf("the BYE went on %v after the request before it was read, want about %v", late, orderWait)
		}
	})
	t.Run("requests outside a dialog and CANCEL get no ticket", func(t *testing.T) {
		o := newDialogOrder()
		o.stamp(parse(t, invite("sip:bob@"+testDomain)...))
		o.stamp(inDialog(t, "CANCEL", "z9hG4bK-c", 1))
		if len(o.fifo) != 0 || len(o.byReq) != 0 {
			t.Fatalf("tickets: %d", len(o.fifo))
		}
	})
	t.Run("tickets go after orderWait", func(t *testing.T) {
		o := newDialogOrder()
		for i := range 100 {
			o.stamp(inDialog(t, "INFO", "z9hG4bK-"+strconv.Itoa(i), i+2))
		}
		time.Sleep(orderWait + 10*time.Millisecond)
		o.stamp(&sip.Response{}) // responses are no tickets
		o.mu.Lock()
		o.sweep(time.Now())
		n, m, l := len(o.fifo), len(o.byReq), len(o.last)
		o.sweep(time.Now().Add(orderSeen))
		k, f := len(o.seen), len(o.seenFIFO)
		o.mu.Unlock()
		if n+m+l != 0 {
			t.Fatalf("kept after orderWait: %d in the queue, %d by request, %d dialogs", n, m, l)
		}
		if k+f != 0 {
			t.Fatalf("kept after orderSeen: %d requests seen, %d in their queue", k, f)
		}
	})
}

// BenchmarkOrderCall is the ordering's cost for one call as a peer sees
// it: the INVITE (remembered), then the ACK and the BYE (each stamped,
// awaited and released). The Call-ID is made anew each time (one
// allocation of the loop's own).
func BenchmarkOrderCall(b *testing.B) {
	o := newDialogOrder()
	var reqs [][3]*sip.Request
	for i := range 1024 {
		id := strconv.Itoa(i)
		mk := func(method, branch, to string) *sip.Request {
			lines := []string{method + " sip:bob@" + testDomain + " SIP/2.0",
				"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-" + branch + id,
				"From: <sip:a@" + testDomain + ">;tag=a" + id, "To: <sip:bob@" + testDomain + ">" + to,
				"Call-ID: bench-" + id, "CSeq: 1 " + method, "Max-Forwards: 70", "Content-Length: 0"}
			return parse(b, lines...)
		}
		reqs = append(reqs, [3]*sip.Request{mk("INVITE", "i", ""), mk("ACK", "a", ";tag=b"), mk("BYE", "b", ";tag=b")})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		i++
		callID := sip.CallIDHeader("bench-" + strconv.Itoa(i)) // a new call each time
		for _, req := range r {
			*req.CallID() = callID
		}
		o.stamp(r[0])
		for _, req := range r[1:] {
			o.stamp(req)
			o.await(req)
			o.forwarded(req)
		}
	}
}
