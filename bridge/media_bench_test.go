package bridge

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// The bridge's own share of the packet path, without sockets and without
// pion: one packet in, rewritten, out to a writer that discards it. Run
// with -benchmem: the path should not allocate.

type discardTrack struct{ n int }

func (d *discardTrack) WriteRTP(h *rtp.Header, p []byte) (int, error) { d.n++; return len(p), nil }
func (d *discardTrack) Write(b []byte) (int, error)                   { d.n++; return len(b), nil }

type discardConn struct {
	net.PacketConn
	n int
}

func (d *discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { d.n++; return len(b), nil }

func benchSession(b *testing.B) *Session {
	b.Helper()
	s := &Session{b: &Bridge{m: newMetrics(nil)}, track: &localTrack{ws: &discardTrack{}, ssrc: 0x1234},
		done: make(chan struct{})}
	s.leg = &plainLeg{conn: &discardConn{}, rtpDst: netip.MustParseAddrPort("192.0.2.7:4000")}
	s.toPlain = newPipe(s, "webrtc", "plain", 0x5678)
	s.toWeb = newPipe(s, "plain", "webrtc", 0)
	s.route.Store(&route{plainPT: 0, plainTE: 101, plainLaw: pcmu, webPT: 0, webTE: 126, webLaw: pcmu})
	return s
}

func benchPacket() []byte {
	pl := make([]byte, 160)
	for i := range pl {
		pl[i] = 0xff
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0xabcd, Timestamp: 1000, SequenceNumber: 1}, Payload: pl}
	b, _ := p.Marshal()
	return b
}

// BenchmarkFromWeb is readWeb's work per packet after the read: unmarshal,
// statistics, rewrite, marshal, the plain leg's write.
func BenchmarkFromWeb(b *testing.B) {
	s := benchSession(b)
	raw := benchPacket()
	var pkt rtp.Packet
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[2], raw[3] = byte(i>>8), byte(i) // next sequence number
		if err := pkt.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		s.fromWeb(&pkt, now)
	}
	if s.toPlain.sent.Load() == 0 {
		b.Fatal("nothing relayed")
	}
}

// BenchmarkFromPlain is readPlain's work per packet after the read:
// unmarshal, statistics, rewrite, the track's write (pion not included).
func BenchmarkFromPlain(b *testing.B) {
	s := benchSession(b)
	raw := benchPacket()
	src := netip.MustParseAddrPort("192.0.2.7:4000")
	var pkt rtp.Packet
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[2], raw[3] = byte(i>>8), byte(i)
		if err := pkt.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		s.fromPlain(&pkt, src, now)
	}
	if s.toWeb.sent.Load() == 0 {
		b.Fatal("nothing relayed")
	}
}
