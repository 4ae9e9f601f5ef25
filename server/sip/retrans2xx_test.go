package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2psip/p2psip/overlay"
)

// udpPhone is a phone's UDP socket on loopback.
type udpPhone struct {
	t  *testing.T
	pc *net.UDPConn
}

func newUDPPhone(t *testing.T) *udpPhone {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return &udpPhone{t: t, pc: pc}
}

func (p *udpPhone) addr() string { return p.pc.LocalAddr().String() }

func (p *udpPhone) send(to net.Addr, lines ...string) {
	p.t.Helper()
	if _, err := p.pc.WriteTo([]byte(strings.Join(lines, "\r\n")+"\r\n\r\n"), to); err != nil {
		p.t.Fatal(err)
	}
}

// await reads until a message whose first line starts with first (and
// whose CSeq line contains cseq) arrives, or fails after wait.
func (p *udpPhone) await(first, cseq string, wait time.Duration) (string, bool) {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = p.pc.SetReadDeadline(deadline)
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			return "", false
		}
		m := string(buf[:n])
		if strings.HasPrefix(m, first) && strings.Contains(m, "\r\nCSeq: "+cseq) {
			return m, true
		}
	}
}

// header returns the values of a header field in a message, in order.
func header(msg, name string) []string {
	var vs []string
	for _, l := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs
}

// serveUDPOn serves s on a loopback UDP socket and returns its address.
func serveUDPOn(t *testing.T, s *Service) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ports["udp"] = pc.LocalAddr().(*net.UDPAddr).Port
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ServeUDP(pc) }()
	t.Cleanup(func() { _ = s.Close(); _ = pc.Close(); <-done })
	return pc.LocalAddr()
}

// path is a caller and bob, each a UDP phone; bob registered at home,
// the caller calling through entry (home itself, or a second peer joined
// to it by a stream).
type path struct {
	t                   *testing.T
	bob, caller         *udpPhone
	homeAddr, entryAddr net.Addr
}

func newPath(t *testing.T, peers int) *path {
	t.Helper()
	pn := &pipeNet{handlers: map[string]func(overlay.Stream){}}
	home := newPipePeer(t, pn, "12D3KooWLnMNNLerCB8pWAeGMvtPGrbfWZKkn3VEJwJsbWHQ6CnH")
	p := &path{t: t, bob: newUDPPhone(t), caller: newUDPPhone(t), homeAddr: serveUDPOn(t, home)}
	entry := home
	p.entryAddr = p.homeAddr
	if peers == 2 {
		entry = newPipePeer(t, pn, otherPeer)
		p.entryAddr = serveUDPOn(t, entry)
	}
	p.bob.send(p.homeAddr, "REGISTER sip:"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP "+p.bob.addr()+";branch=z9hG4bK-r2reg;rport",
		"Max-Forwards: 70", "From: <sip:bob@"+testDomain+">;tag=1", "To: <sip:bob@"+testDomain+">",
		"Call-ID: r2-reg", "CSeq: 1 REGISTER", "Contact: <sip:bob@"+p.bob.addr()+">", "Expires: 600",
		"Content-Length: 0")
	if _, ok := p.bob.await("SIP/2.0 200", "1 REGISTER", 3*time.Second); !ok {
		t.Fatal("bob's REGISTER got no 200")
	}
	if entry != home { // the overlay's record of bob, as the entry peer finds it
		from, to := home.cfg.Locator.(*fakeLocator), entry.cfg.Locator.(*fakeLocator)
		from.mu.Lock()
		reg := *from.regs["sip:bob@"+testDomain]
		from.mu.Unlock()
		to.mu.Lock()
		to.regs["sip:bob@"+testDomain] = &reg
		to.mu.Unlock()
	}
	return p
}

// call sends the caller's INVITE and returns it as bob got it.
func (p *path) call() string {
	p.t.Helper()
	p.caller.send(p.entryAddr, "INVITE sip:bob@"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP "+p.caller.addr()+";branch=z9hG4bK-r2inv;rport",
		"Max-Forwards: 70", "From: <sip:caller@"+testDomain+">;tag=c1", "To: <sip:bob@"+testDomain+">",
		"Call-ID: r2-call", "CSeq: 1 INVITE", "Contact: <sip:caller@"+p.caller.addr()+">", "Content-Length: 0")
	inv, ok := p.bob.await("INVITE ", "1 INVITE", 3*time.Second)
	if !ok {
		p.t.Fatal("the INVITE did not reach bob")
	}
	return inv
}

// answer is bob's response to req with status line first.
func answer(req, first string) []string {
	lines := []string{first}
	for _, name := range []string{"Via", "Record-Route", "From", "Call-ID", "CSeq"} {
		for _, v := range header(req, name) {
			lines = append(lines, name+": "+v)
		}
	}
	return lines
}

// TestRetransmitted2xxReachesCaller: a phone's 200 to an INVITE is lost
// on its way to the caller. The callee's UA core retransmits it until the
// ACK (RFC 3261 §13.3.1.4), and every proxy on the path, whose client
// transaction ended with the first 200, must still forward the
// retransmission as it forwarded the first (§16.7, RFC 6026 §8.4): else
// the call never starts, and the callee hangs up after 32 s. Real sipgo
// layers over UDP, through one peer and through two peers joined by a
// stream.
func TestRetransmitted2xxReachesCaller(t *testing.T) {
	for _, peers := range []int{1, 2} {
		t.Run(strconv.Itoa(peers)+" peers", func(t *testing.T) {
			retransmitted2xx(t, newPath(t, peers))
		})
	}
}

// retransmitted2xx has bob send his 200 twice, the caller ACKing only the
// second.
func retransmitted2xx(t *testing.T, p *path) {
	bob, caller, homeAddr, entryAddr := p.bob, p.caller, p.homeAddr, p.entryAddr
	inv := p.call()
	ok200 := answer(inv, "SIP/2.0 200 OK")
	ok200 = append(ok200, "To: <sip:bob@"+testDomain+">;tag=b1", "Contact: <sip:bob@"+bob.addr()+">", "Content-Length: 0")
	bob.send(homeAddr, ok200...)
	first, ok := caller.await("SIP/2.0 200", "1 INVITE", 3*time.Second)
	if !ok {
		t.Fatal("the first 200 did not reach the caller")
	}
	// The caller acts as if that 200 had been lost: no ACK. bob's UA core
	// retransmits it (after T1; sooner here, which changes nothing).
	time.Sleep(50 * time.Millisecond)
	bob.send(homeAddr, ok200...)
	again, ok := caller.await("SIP/2.0 200", "1 INVITE", 3*time.Second)
	if !ok {
		t.Fatal("the retransmitted 200 did not reach the caller")
	}
	if again != first {
		t.Fatalf("the retransmission reached the caller changed:\n%s\nthen\n%s", first, again)
	}
	// The ACK to it follows the route set and reaches bob.
	var route []string
	for _, v := range header(again, "Record-Route") {
		route = append(route, strings.Split(v, ",")...)
	}
	ack := []string{"ACK sip:bob@" + bob.addr() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + caller.addr() + ";branch=z9hG4bK-r2ack;rport",
		"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=c1", "To: <sip:bob@" + testDomain + ">;tag=b1",
		"Call-ID: r2-call", "CSeq: 1 ACK"}
	for i := len(route) - 1; i >= 0; i-- { // the UAC's route set, §12.1.2
		ack = append(ack, "Route: "+route[i])
	}
	caller.send(entryAddr, append(ack, "Content-Length: 0")...)
	if _, ok := bob.await("ACK ", "1 ACK", 3*time.Second); !ok {
		t.Fatal("the caller's ACK did not reach bob")
	}
}

// awaitAll reads until a message starting with each of wants (first line
// prefix, then "|" and the CSeq) has arrived, in any order.
func (p *udpPhone) awaitAll(wait time.Duration, wants ...string) map[string]bool {
	p.t.Helper()
	seen := map[string]bool{}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		missing := false
		for _, w := range wants {
			missing = missing || !seen[w]
		}
		if !missing {
			return seen
		}
		_ = p.pc.SetReadDeadline(deadline)
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			return seen
		}
		m := string(buf[:n])
		for _, w := range wants {
			first, cseq, _ := strings.Cut(w, "|")
			if strings.HasPrefix(m, first) && strings.Contains(m, "\r\nCSeq: "+cseq) {
				seen[w] = true
			}
		}
	}
}

// TestLate2xxCrossingCancelAcrossPeers: bob answers 200 just as the
// caller cancels. Each peer's sipgo ends the INVITE with its own 487 on
// the CANCEL, so bob's 200 comes after a 487 (fork.relayLate2xx at his
// home peer) and matches no transaction at the caller's peer. It must
// still reach the caller (RFC 3261 §16.7 step 5), who then ACKs and BYEs
// it, instead of bob sitting in a silent call. The first copy can be lost
// at the caller's peer (sipgo's client transaction, Completed by the 487
// and not yet gone, drops a 2xx); then bob's retransmission, T1 later,
// gets through.
func TestLate2xxCrossingCancelAcrossPeers(t *testing.T) {
	for _, peers := range []int{1, 2} {
		t.Run(strconv.Itoa(peers)+" peers", func(t *testing.T) {
			p := newPath(t, peers)
			inv := p.call()
			toTag := "To: <sip:bob@" + testDomain + ">;tag=b1"
			p.bob.send(p.homeAddr, append(answer(inv, "SIP/2.0 180 Ringing"), toTag, "Content-Length: 0")...)
			if _, ok := p.caller.await("SIP/2.0 180", "1 INVITE", 3*time.Second); !ok {
				t.Fatal("the 180 did not reach the caller")
			}
			p.caller.send(p.entryAddr, "CANCEL sip:bob@"+testDomain+" SIP/2.0",
				"Via: SIP/2.0/UDP "+p.caller.addr()+";branch=z9hG4bK-r2inv;rport",
				"Max-Forwards: 70", "From: <sip:caller@"+testDomain+">;tag=c1", "To: <sip:bob@"+testDomain+">",
				"Call-ID: r2-call", "CSeq: 1 CANCEL", "Content-Length: 0")
			cancel, ok := p.bob.await("CANCEL ", "1 CANCEL", 3*time.Second)
			if !ok {
				t.Fatal("the CANCEL did not reach bob")
			}
			p.bob.send(p.homeAddr, append(answer(cancel, "SIP/2.0 200 OK"), "To: <sip:bob@"+testDomain+">", "Content-Length: 0")...)
			// bob's 200 to the INVITE left before the CANCEL arrived; his UA
			// core retransmits it every T1 until an ACK (§13.3.1.4).
			ok200 := append(answer(inv, "SIP/2.0 200 OK"), toTag, "Contact: <sip:bob@"+p.bob.addr()+">", "Content-Length: 0")
			want := []string{"SIP/2.0 200|1 CANCEL", "SIP/2.0 487|1 INVITE", "SIP/2.0 200|1 INVITE"}
			seen := map[string]bool{}
			for range 4 {
				p.bob.send(p.homeAddr, ok200...)
				for w := range p.caller.awaitAll(500*time.Millisecond, want...) {
					seen[w] = true
				}
				if seen[want[2]] {
					break
				}
			}
			if len(seen) != len(want) {
				t.Fatalf("the caller got %v of %v", seen, want)
			}
		})
	}
}
