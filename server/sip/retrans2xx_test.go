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

// TestRetransmitted2xxReachesCaller: a phone's 200 to an INVITE is lost
// on its way to the caller. The callee's UA core retransmits it until the
// ACK (RFC 3261 §13.3.1.4), and every proxy on the path, whose client
// transaction ended with the first 200, must still forward the
// retransmission as it forwarded the first (§16.7 step 1, RFC 6026 §8.4):
// else the call never starts, and the callee hangs up after 32 s. Real
// sipgo layers over UDP, through one peer and through two peers joined by
// a stream.
func TestRetransmitted2xxReachesCaller(t *testing.T) {
	for _, peers := range []int{1, 2} {
		t.Run(strconv.Itoa(peers)+" peers", func(t *testing.T) {
			pn := &pipeNet{handlers: map[string]func(overlay.Stream){}}
			home := newPipePeer(t, pn, "12D3KooWLnMNNLerCB8pWAeGMvtPGrbfWZKkn3VEJwJsbWHQ6CnH")
			homeAddr := serveUDPOn(t, home)
			entry, entryAddr := home, homeAddr
			if peers == 2 {
				entry = newPipePeer(t, pn, otherPeer)
				entryAddr = serveUDPOn(t, entry)
			}
			retransmitted2xx(t, home, homeAddr, entry, entryAddr)
		})
	}
}

// retransmitted2xx registers bob at home, calls him through entry and has
// him send his 200 twice, the caller ACKing only the second.
func retransmitted2xx(t *testing.T, home *Service, homeAddr net.Addr, entry *Service, entryAddr net.Addr) {
	bob, caller := newUDPPhone(t), newUDPPhone(t)
	bob.send(homeAddr, "REGISTER sip:"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP "+bob.addr()+";branch=z9hG4bK-r2reg;rport",
		"Max-Forwards: 70", "From: <sip:bob@"+testDomain+">;tag=1", "To: <sip:bob@"+testDomain+">",
		"Call-ID: r2-reg", "CSeq: 1 REGISTER", "Contact: <sip:bob@"+bob.addr()+">", "Expires: 600",
		"Content-Length: 0")
	if _, ok := bob.await("SIP/2.0 200", "1 REGISTER", 3*time.Second); !ok {
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
	caller.send(entryAddr, "INVITE sip:bob@"+testDomain+" SIP/2.0",
		"Via: SIP/2.0/UDP "+caller.addr()+";branch=z9hG4bK-r2inv;rport",
		"Max-Forwards: 70", "From: <sip:caller@"+testDomain+">;tag=c1", "To: <sip:bob@"+testDomain+">",
		"Call-ID: r2-call", "CSeq: 1 INVITE", "Contact: <sip:caller@"+caller.addr()+">", "Content-Length: 0")
	inv, ok := bob.await("INVITE ", "1 INVITE", 3*time.Second)
	if !ok {
		t.Fatal("the INVITE did not reach bob")
	}
	ok200 := []string{"SIP/2.0 200 OK"}
	for _, name := range []string{"Via", "Record-Route", "From", "Call-ID", "CSeq"} {
		for _, v := range header(inv, name) {
			ok200 = append(ok200, name+": "+v)
		}
	}
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
