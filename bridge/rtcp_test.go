package bridge

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestLastSR(t *testing.T) {
	var l lastSR
	now := time.Now()
	if lsr, dlsr := l.since(now); lsr != 0 || dlsr != 0 {
		t.Fatalf("before any SR: %d %d", lsr, dlsr)
	}
	l.set(0x1122334455667788, now)
	lsr, dlsr := l.since(now.Add(1500 * time.Millisecond))
	if lsr != 0x33445566 || dlsr != 98304 {
		t.Fatalf("LSR %#x DLSR %d, want 0x33445566 98304", lsr, dlsr)
	}
}

// TestRTCPToBrowser: with pion's report interceptors gone, the session
// sends the browser a sender report with a reception block for the
// browser's stream.
func TestRTCPToBrowser(t *testing.T) {
	b := newTestBridge(t)
	ph := newFakePhone(t)
	c := browserCalls(t, b, newFakeBrowser(t), ph, ph.sdp("pcmu+te", "sendrecv"), Events{})
	c.toBrowserFlows(0)
	c.toPhoneFlows(0)
	web, _ := c.lt.boundSSRC() // the browser's SSRC
	recv := c.fb.pc.GetReceivers()[0]
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_ = recv.SetReadDeadline(deadline)
		pkts, _, err := recv.ReadRTCP()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			sr, ok := p.(*rtcp.SenderReport)
			if !ok {
				continue
			}
			if sr.PacketCount < 15 || sr.OctetCount < 15*160 || len(sr.Reports) != 1 || sr.Reports[0].SSRC != web {
				t.Fatalf("sender report %+v", sr)
			}
			return
		}
	}
	t.Fatal("no sender report reached the browser")
}
