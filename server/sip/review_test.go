package sip

import (
	"net"
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
