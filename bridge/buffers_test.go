package bridge

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pion/transport/v5/packetio"
)

// A stream buffer nobody reads stops growing at its limit; what it holds
// still reads back in order, with the attributes written with it.
func TestStreamBufferLimits(t *testing.T) {
	for _, c := range []struct {
		typ   packetio.BufferPacketType
		limit int
	}{{packetio.RTPBufferPacket, rtpStreamBuffer}, {packetio.RTCPBufferPacket, rtcpStreamBuffer}} {
		b := streamBuffer(c.typ, 1234)
		pb := b.(*packetBuffer)
		pkt := bytes.Repeat([]byte{0x80}, 172)
		held := 0
		for i := range 10000 {
			pkt[1] = byte(i)
			_, err := pb.WriteWithAttributes(pkt, packetio.Attributes{{Key: "i", Value: i}})
			if errors.Is(err, packetio.ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			held++
		}
		if held == 10000 || held*len(pkt) > c.limit || held*(len(pkt)+2) < c.limit-2*len(pkt) {
			t.Fatalf("type %d: held %d packets of %d bytes, limit %d", c.typ, held, len(pkt), c.limit)
		}
		buf := make([]byte, 1500)
		n, attrs, err := pb.ReadWithAttributes(buf, nil)
		if err != nil || n != len(pkt) || buf[1] != 0 || attrs.Get("i") != 0 {
			t.Fatalf("first read: %d %v %v %d", n, attrs, err, buf[1])
		}
		if n, err := b.Read(buf); err != nil || n != len(pkt) || buf[1] != 1 {
			t.Fatalf("second read: %d %v %d", n, err, buf[1])
		}
		_ = pb.SetReadDeadline(time.Now().Add(-time.Second))
		_ = b.Close()
	}
}
