package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A REGISTER from another source that carries the branch and sent-by of
// a transaction in the table is not that transaction's retransmission:
// it must not be swallowed, and the kept answer must not be sent to the
// first client on its behalf.
func TestReviewUDPRegisterOtherSourceSameBranch(t *testing.T) {
	ts := newTestService(t, nil)
	a := serveUDP(t, ts)
	lines := register("alice", "<sip:alice@127.0.0.1:5099>")
	lines[1] = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-shared1"
	msg := strings.Join(lines, "\r\n") + "\r\n\r\n"
	if first := roundTrip(t, a, msg); !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("first answer:\n%s", first)
	}
	b, err := net.Dial("udp", a.RemoteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	if _, err := b.Read(buf); err != nil {
		t.Fatalf("the second client got no answer: %v", err)
	}
	_ = a.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := a.Read(buf); err == nil {
		t.Fatalf("the first client got an answer to the second's request:\n%s", buf[:n])
	}
}

// Dropped REGISTERs kept in the table (shed) are bounded: past maxShed a
// REGISTER that finds the queue full gets 503 at once. The raw reader
// refuses an IPv6 sent-by, so these take the parsed way whatever the
// queue.
func TestReviewShedBounded(t *testing.T) {
	ts := newTestService(t, nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := stalledRegistrar(ts.Service, &guardConn{PacketConn: pc, s: ts.Service})
	r.jobs <- &regTx{}
	from := pc.LocalAddr()
	for i := range 2 * maxShed {
		lines := register("alice", "<sip:alice@127.0.0.1:5099>")
		lines[1] = "Via: SIP/2.0/UDP [::1];branch=z9hG4bK" + strings.Repeat("x", 1000) + strconv.Itoa(i)
		if !r.take(parse(t, lines...), nil, from) {
			t.Fatal("not taken")
		}
	}
	r.mu.Lock()
	shed := len(r.txs)
	r.mu.Unlock()
	if shed > maxShed {
		t.Fatalf("%d shed entries, bound %d", shed, maxShed)
	}
}

// A shed entry always has an expiry: re-shed after its first expiry
// passed while it was being queued again, it still goes after Timer J.
func TestReviewShedReshedExpires(t *testing.T) {
	ts := newTestService(t, nil)
	r := stalledRegistrar(ts.Service, nil)
	r.jobs <- &regTx{}
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5099}
	req := parse(t, register("zed", "<sip:zed@127.0.0.1:5099>")...)
	r.take(req, nil, from) // dropped once: shed
	r.mu.Lock()
	var tx *regTx
	for _, x := range r.txs {
		tx = x
	}
	tx.req, tx.shed = req, false // take queues its retransmission...
	r.mu.Unlock()
	r.sweep(time.Now().Add(timerJ + time.Second)) // ...as the first expiry passes
	r.overloaded(tx, req)                         // and the queue is full again
	r.sweep(time.Now().Add(2*timerJ + time.Second))
	if r.pending() != 0 {
		t.Fatalf("%d entries left after Timer J of the re-shed one", r.pending())
	}
}

// The raw key is taken only where it equals the parsed one: a second
// branch (sipgo keeps the last), a folded line that reads like a Via,
// control bytes sipgo trims. Any other way a raw lookup could answer a
// new transaction with an older one's kept answer.
func TestReviewRawKeyOnlyWhereParsedAgrees(t *testing.T) {
	for _, via := range [][]string{
		{"Via: SIP/2.0/UDP h;branch=z9hG4bKaaa;branch=z9hG4bKbbb"},
		{"Subject: x", " Via: SIP/2.0/UDP evil;branch=z9hG4bKfake", "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKreal"},
		{"Via: SIP/2.0/UDP h;branch=z9hG4bKr\v"},
		{"Via: SIP/2.0/UDP h\f;branch=z9hG4bKr"},
		{"Via: SIP/2.0/UDP h:5060;branch=z9hG4bKok"},
	} {
		lines := append([]string{"REGISTER sip:" + testDomain + " SIP/2.0"}, via...)
		lines = append(lines, register("alice", "<sip:alice@127.0.0.1:5099>")[2:]...)
		msg := []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
		raw, rawOK := appendRawTxKey(nil, msg)
		_, req, ok := screenRequest(msg, false)
		if !rawOK {
			continue
		}
		if !ok || req == nil {
			t.Errorf("%q: raw key %q for a request the guard refuses", via, raw)
			continue
		}
		parsed, parsedOK := regTxKey(req)
		if !parsedOK || string(raw) != parsed {
			t.Errorf("%q:\n raw    %q\n parsed %q %v", via, raw, parsed, parsedOK)
		}
	}
}
