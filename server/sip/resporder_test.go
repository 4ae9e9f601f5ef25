package sip

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestResponsesKeepTheirOrder: a phone answers with a 180 and the 200
// right behind it, as sipp's UAS and many PBXes do. The caller must get
// both, the 180 first (RFC 3261 §16.7 step 5 forwards every provisional
// response above 100). sipgo hands each response it reads to a goroutine
// of its own, and Go runs the newest goroutine first, so without
// resporder.go the 200 reached the client transaction first and the 180,
// now late, was dropped by it (§17.1.1.2): 10–18 % of the calls through
// two peers in bench/peers lost their 180. One P makes the race as likely
// here as on a loaded peer.
func TestResponsesKeepTheirOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, peers := range []int{1, 2} {
		t.Run(strconv.Itoa(peers)+" peers", func(t *testing.T) {
			p := newPath(t, peers)
			const calls = 40
			var lost []int
			for i := range calls {
				if !ringingBeforeAnswer(t, p, i) {
					lost = append(lost, i)
				}
			}
			if len(lost) > 0 {
				t.Fatalf("%d of %d calls: the caller got the 200 without the 180 before it (calls %v)", len(lost), calls, lost)
			}
		})
	}
}

// ringingBeforeAnswer places call i; bob sends 180 and 200 back to back.
// It reports whether the caller got the 180 before the 200.
func ringingBeforeAnswer(t *testing.T, p *path, i int) bool {
	t.Helper()
	id := "ro-" + strconv.Itoa(i)
	p.caller.send(p.entryAddr, "INVITE sip:bob@"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP "+p.caller.addr()+";branch=z9hG4bK-"+id+";rport",
		"Max-Forwards: 70", "From: <sip:caller@"+testDomain+">;tag=c"+id, "To: <sip:bob@"+testDomain+">",
		"Call-ID: "+id, "CSeq: 1 INVITE", "Contact: <sip:caller@"+p.caller.addr()+">", "Content-Length: 0")
	inv, ok := p.bob.await("INVITE ", "1 INVITE", 3*time.Second)
	if !ok || !strings.Contains(inv, "\r\nCall-ID: "+id+"\r\n") {
		t.Fatalf("call %d: the INVITE did not reach bob", i)
	}
	to := []string{"To: <sip:bob@" + testDomain + ">;tag=b" + id, "Contact: <sip:bob@" + p.bob.addr() + ">", "Content-Length: 0"}
	p.bob.send(p.homeAddr, append(answer(inv, "SIP/2.0 180 Ringing"), to...)...)
	p.bob.send(p.homeAddr, append(answer(inv, "SIP/2.0 200 OK"), to...)...)
	ringing := false
	buf := make([]byte, 65535)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_ = p.caller.pc.SetReadDeadline(deadline)
		n, _, err := p.caller.pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("call %d: no 200 reached the caller: %v", i, err)
		}
		m := string(buf[:n])
		if !strings.Contains(m, "\r\nCall-ID: "+id+"\r\n") {
			continue
		}
		switch {
		case strings.HasPrefix(m, "SIP/2.0 180 "):
			ringing = true
		case strings.HasPrefix(m, "SIP/2.0 200 "):
			// ACK it, so that no peer keeps retransmitting the 200 into
			// the next call's reads.
			ack := []string{"ACK sip:bob@" + p.bob.addr() + " SIP/2.0",
				"Via: SIP/2.0/UDP " + p.caller.addr() + ";branch=z9hG4bK-ack" + id + ";rport",
				"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=c" + id, "To: <sip:bob@" + testDomain + ">;tag=b" + id,
				"Call-ID: " + id, "CSeq: 1 ACK"}
			var route []string
			for _, rr := range header(m, "Record-Route") {
				route = append(route, strings.Split(rr, ",")...)
			}
			for j := len(route) - 1; j >= 0; j-- { // the UAC's route set, §12.1.2
				ack = append(ack, "Route: "+strings.TrimSpace(route[j]))
			}
			p.caller.send(p.entryAddr, append(ack, "Content-Length: 0")...)
			if _, ok := p.bob.await("ACK ", "1 ACK", 3*time.Second); !ok {
				t.Fatalf("call %d: the ACK did not reach bob", i)
			}
			return ringing
		}
	}
}

// branchReq is a forwarded request with the given method and top Via
// branch, as a fork's branch.
func branchReq(t *testing.T, method, branch string) *sip.Request {
	t.Helper()
	return parse(t, method+" sip:bob@127.0.0.9:5090 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch="+branch,
		"From: <sip:a@"+testDomain+">;tag=a", "To: <sip:bob@"+testDomain+">",
		"Call-ID: ro", "CSeq: 1 "+method, "Max-Forwards: 70", "Content-Length: 0")
}

// branchRes is a response with the given status to a request of method
// on branch.
func branchRes(t *testing.T, code int, method, branch string) *sip.Response {
	t.Helper()
	return sip.NewResponseFromRequest(branchReq(t, method, branch), code, "", nil)
}

// stamped reports whether o.stamp(res) returns within d.
func stamped(o *responseOrder, res *sip.Response, d time.Duration) bool {
	done := make(chan struct{})
	go func() { defer close(done); o.stamp(res) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func TestResponseOrderLines(t *testing.T) {
	newOrder := func() (*responseOrder, *prometheus.CounterVec) {
		waits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "w"}, []string{"outcome"})
		return newResponseOrder(waits), waits
	}
	t.Run("the next waits until the fork took the one before", func(t *testing.T) {
		o, waits := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-1")
		o.open(inv)
		r180, r200 := branchRes(t, 180, "INVITE", "z9hG4bK-1"), branchRes(t, 200, "INVITE", "z9hG4bK-1")
		if !stamped(o, r180, time.Second) {
			t.Fatal("the first response waited")
		}
		done := make(chan struct{})
		go func() { defer close(done); o.stamp(r200) }()
		select {
		case <-done:
			t.Fatal("the 200 went on before the fork took the 180")
		case <-time.After(respWait / 2):
		}
		o.took(inv, r180)
		<-done
		if n := testutil.ToFloat64(waits.WithLabelValues(orderInTurn)); n != 1 {
			t.Fatalf("in_turn = %v, want 1", n)
		}
	})
	t.Run("a response the fork never takes holds the next up for respWait only", func(t *testing.T) {
		o, waits := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-2")
		o.open(inv)
		o.stamp(branchRes(t, 180, "INVITE", "z9hG4bK-2"))
		start := time.Now()
		o.stamp(branchRes(t, 200, "INVITE", "z9hG4bK-2"))
		if d := time.Since(start); d < respWait || d > 20*respWait {
			t.Fatalf("the 200 waited %v, want about %v", d, respWait)
		}
		if n := testutil.ToFloat64(waits.WithLabelValues(orderGaveUp)); n != 1 {
			t.Fatalf("gave_up = %v, want 1", n)
		}
	})
	t.Run("after the final response nothing waits", func(t *testing.T) {
		o, _ := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-3")
		o.open(inv)
		r200 := branchRes(t, 200, "INVITE", "z9hG4bK-3")
		o.stamp(r200)
		o.took(inv, r200)
		for range 3 { // the callee's retransmissions, which go to accepted.go's hook
			if !stamped(o, branchRes(t, 200, "INVITE", "z9hG4bK-3"), respWait/2) {
				t.Fatal("a 2xx retransmission waited after the final response was taken")
			}
		}
	})
	t.Run("a retransmission read before the final was taken waits, then goes untracked", func(t *testing.T) {
		o, _ := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-4")
		o.open(inv)
		r200 := branchRes(t, 200, "INVITE", "z9hG4bK-4")
		o.stamp(r200)
		again := make(chan struct{})
		go func() { defer close(again); o.stamp(branchRes(t, 200, "INVITE", "z9hG4bK-4")) }()
		o.took(inv, r200)
		<-again
		if !stamped(o, branchRes(t, 200, "INVITE", "z9hG4bK-4"), respWait/2) {
			t.Fatal("the retransmission was left pending and held the next one up")
		}
	})
	t.Run("closing the line lets a waiting response go on", func(t *testing.T) {
		o, _ := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-5")
		o.open(inv)
		o.stamp(branchRes(t, 180, "INVITE", "z9hG4bK-5"))
		done := make(chan struct{})
		go func() { defer close(done); o.stamp(branchRes(t, 486, "INVITE", "z9hG4bK-5")) }()
		time.Sleep(respWait / 5)
		o.close(inv)
		select {
		case <-done:
		case <-time.After(respWait / 2):
			t.Fatal("the waiting response did not go on when its line closed")
		}
		if len(o.lines) != 0 {
			t.Fatalf("%d lines left", len(o.lines))
		}
	})
	t.Run("untracked branches and a CANCEL's responses never wait", func(t *testing.T) {
		o, _ := newOrder()
		inv := branchReq(t, "INVITE", "z9hG4bK-6")
		o.open(inv)
		o.stamp(branchRes(t, 180, "INVITE", "z9hG4bK-6"))
		// The CANCEL shares the INVITE's branch (§9.1), not its transaction.
		if !stamped(o, branchRes(t, 200, "CANCEL", "z9hG4bK-6"), respWait/2) {
			t.Fatal("the CANCEL's 200 waited for the INVITE's 180")
		}
		for range 2 {
			if !stamped(o, branchRes(t, 180, "INVITE", "z9hG4bK-other"), respWait/2) {
				t.Fatal("a response to an untracked branch waited")
			}
		}
	})
}
