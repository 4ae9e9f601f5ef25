package bridge

import (
	"io"

	"github.com/pion/transport/v5/packetio"
)

// Limits of the browser leg's SRTP and SRTCP stream buffers (pion's
// defaults: 1 MB and 100 KB each). Their readers are the bridge's own
// goroutines and keep up; what these hold beyond a few packets is audio
// that would play seconds late. Some are never read at all: the
// browser's sender reports also land in the RTCP stream of the bridge's
// receiver, which nothing reads without pion's interceptors (one report
// a second or so, until the 100 KB limit: a 20-minute call held 100 KB
// of them), and pion parks streams of SSRCs it does not know unread.
const (
	rtpStreamBuffer  = 64 << 10 // ≈ 370 G.711 packets, 7 s
	rtcpStreamBuffer = 4 << 10  // ≈ 40 compound reports
)

// streamBuffer is the SettingEngine's BufferFactory: a packetio.Buffer
// with the bridge's limits (a full buffer drops new packets, as pion's
// own do).
func streamBuffer(t packetio.BufferPacketType, _ uint32) io.ReadWriteCloser {
	b := packetio.NewBuffer()
	if t == packetio.RTPBufferPacket {
		b.SetLimitSize(rtpStreamBuffer)
	} else {
		b.SetLimitSize(rtcpStreamBuffer)
	}
	return &packetBuffer{b}
}

// packetBuffer makes a packetio.Buffer an io.ReadWriteCloser, and keeps
// its attribute-carrying reads and writes and its read deadline, which
// pion's SRTP streams use when they are there.
type packetBuffer struct{ *packetio.Buffer }

func (b *packetBuffer) Read(p []byte) (int, error) {
	n, _, err := b.Buffer.Read(p, nil)
	return n, err
}

func (b *packetBuffer) Write(p []byte) (int, error) { return b.Buffer.Write(p, nil) }

func (b *packetBuffer) ReadWithAttributes(p []byte, a packetio.Attributes) (int, packetio.Attributes, error) {
	return b.Buffer.Read(p, a)
}

func (b *packetBuffer) WriteWithAttributes(p []byte, a packetio.Attributes) (int, error) {
	return b.Buffer.Write(p, a)
}
