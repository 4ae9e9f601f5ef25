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
// now late, was dropped by it (§17.1.1.2): 9–18 % of the calls through
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

func TestResponseOrderLines(t *testing.T) {
	// openLine is a responseOrder tracking one INVITE branch, z9hG4bK-1.
	openLine := func(t *testing.T) (*responseOrder, *sip.Request, prometheus.Counter) {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "reordered"})
		o, inv := newResponseOrder(c), branchReq(t, "INVITE", "z9hG4bK-1")
		o.open(inv)
		return o, inv, c
	}
	res := func(code int, method string) *sip.Response { return branchRes(t, code, method, "z9hG4bK-1") }
	t.Run("an overtaken 180 goes ahead of the 200", func(t *testing.T) {
		o, inv, reordered := openLine(t)
		r180, r200 := res(180, "INVITE"), res(200, "INVITE")
		o.stamp(r180)
		o.stamp(r200)
		ahead, skip := o.took(inv, r200)
		if skip || len(ahead) != 1 || ahead[0] != r180 {
			t.Fatalf("took(200) = %v, %v; want the 180 ahead", ahead, skip)
		}
		if n := testutil.ToFloat64(reordered); n != 1 {
			t.Fatalf("reordered = %v, want 1", n)
		}
		// Were the transaction to pass the 180 up after all, it is not relayed twice.
		if _, skip := o.took(inv, r180); !skip {
			t.Fatal("the 180 relayed ahead was not skipped when taken")
		}
	})
	t.Run("in order, nothing goes ahead", func(t *testing.T) {
		o, inv, reordered := openLine(t)
		r100, r180, r200 := res(100, "INVITE"), res(180, "INVITE"), res(200, "INVITE")
		for _, r := range []*sip.Response{r100, r180, r200} {
			o.stamp(r)
		}
		for _, r := range []*sip.Response{r100, r180, r200} {
			if ahead, skip := o.took(inv, r); len(ahead) != 0 || skip {
				t.Fatalf("took(%d) = %v, %v in order", r.StatusCode, ahead, skip)
			}
		}
		if n := testutil.ToFloat64(reordered); n != 0 {
			t.Fatalf("reordered = %v, want 0", n)
		}
	})
	t.Run("a 100 that lost the race stays behind", func(t *testing.T) {
		o, inv, _ := openLine(t)
		r100, r180 := res(100, "INVITE"), res(180, "INVITE")
		o.stamp(r100)
		o.stamp(r180)
		if ahead, _ := o.took(inv, r180); len(ahead) != 0 {
			t.Fatalf("a 100 went ahead: %v", ahead)
		}
	})
	t.Run("two provisional responses that swapped", func(t *testing.T) {
		o, inv, _ := openLine(t)
		r183, r180 := res(183, "INVITE"), res(180, "INVITE")
		o.stamp(r183)
		o.stamp(r180)
		if ahead, _ := o.took(inv, r180); len(ahead) != 1 || ahead[0] != r183 {
			t.Fatalf("took(180) = %v; want the 183 ahead", ahead)
		}
		if _, skip := o.took(inv, r183); !skip {
			t.Fatal("the 183 was relayed twice")
		}
	})
	t.Run("a provisional read after the final is skipped when it wins the race", func(t *testing.T) {
		o, inv, _ := openLine(t)
		r200, r183 := res(200, "INVITE"), res(183, "INVITE") // a reliable 183 retransmitted (RFC 3262)
		o.stamp(r200)
		o.stamp(r183)
		if ahead, skip := o.took(inv, r183); len(ahead) != 0 || !skip {
			t.Fatalf("took(183) = %v, %v; want it skipped and nothing ahead", ahead, skip)
		}
		if ahead, skip := o.took(inv, r200); len(ahead) != 0 || skip {
			t.Fatalf("took(200) = %v, %v", ahead, skip)
		}
	})
	t.Run("after the final nothing is noted", func(t *testing.T) {
		o, inv, _ := openLine(t)
		r200 := res(200, "INVITE")
		o.stamp(r200)
		o.took(inv, r200)
		o.stamp(res(200, "INVITE")) // the callee's retransmission (accepted.go)
		if l := o.lines[mustRespKey(t, inv)]; len(l.read) != 0 {
			t.Fatalf("%d responses noted after the final", len(l.read))
		}
	})
	t.Run("only a tracked branch's own transaction is noted", func(t *testing.T) {
		o, inv, _ := openLine(t)
		o.stamp(res(200, "CANCEL")) // same branch (§9.1), another transaction
		o.stamp(branchRes(t, 180, "INVITE", "z9hG4bK-other"))
		if l := o.lines[mustRespKey(t, inv)]; len(l.read) != 0 || len(o.lines) != 1 {
			t.Fatalf("noted %d responses, %d lines", len(l.read), len(o.lines))
		}
	})
	t.Run("memory is bounded and let go", func(t *testing.T) {
		o, inv, _ := openLine(t)
		for range 10 * respLineMax {
			o.stamp(res(183, "INVITE"))
		}
		if l := o.lines[mustRespKey(t, inv)]; len(l.read) != respLineMax {
			t.Fatalf("%d responses kept, want %d", len(l.read), respLineMax)
		}
		o.close(inv)
		if len(o.lines) != 0 {
			t.Fatalf("%d lines left after close", len(o.lines))
		}
	})
}

func mustRespKey(t *testing.T, req *sip.Request) string {
	t.Helper()
	key, ok := respKey(req.Via(), req.CSeq())
	if !ok {
		t.Fatal("no response key")
	}
	return key
}
