package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPlainDestAndChromeLike(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 30020 RTP/AVP 0 8 126\r\nc=IN IP4 127.0.0.1\r\na=rtcp-mux\r\na=sendrecv\r\n"
	ap, mux, err := plainDest(sdp)
	if err != nil || ap != netip.MustParseAddrPort("127.0.0.1:30020") || !mux {
		t.Fatalf("plainDest: %v %v %v", ap, mux, err)
	}
	if _, _, err := plainDest("v=0\r\n"); err == nil {
		t.Fatal("plainDest accepted an SDP without media")
	}
	web := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\n"
	got := chromeLike(web, netip.MustParseAddrPort("127.0.0.71:5000"))
	if !strings.Contains(got, "m=audio 5000 UDP/TLS/RTP/SAVPF") || !strings.Contains(got, "c=IN IP4 127.0.0.71\r\n") {
		t.Fatalf("chromeLike:\n%s", got)
	}
}

func TestRTPHelpers(t *testing.T) {
	// V=2, X=1, CC=1: 12 + 4 (CSRC) + 4 (extension header) + 4 (one word) bytes of header.
	p := []byte{0x91, 0, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 'x', 'y'}
	ssrc, seq, ok := rtpHeader(p)
	if !ok || ssrc != 0xdeadbeef || seq != 0x1234 || string(rtpPayload(p)) != "xy" {
		t.Fatalf("rtpHeader %x %x %v, payload %q", ssrc, seq, ok, rtpPayload(p))
	}
	rtcp := []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0}
	if _, _, ok := rtpHeader(rtcp); ok {
		t.Fatal("RTCP taken for RTP")
	}
}

func TestKernelTimestamp(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := enableTimestamps(b); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixNano()
	if _, err := a.WriteToUDPAddrPort([]byte("x"), b.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 16), make([]byte, 128)
	_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, oobn, _, _, err := b.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	ts := rxTime(oob[:oobn])
	if ts < before || ts > time.Now().UnixNano() {
		t.Fatalf("kernel timestamp %d outside [%d, now]", ts, before)
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 100; i++ {
		h.add(int64(i) * 1000) // 1..100 µs
	}
	if p50, p99 := h.quantile(0.5), h.quantile(0.99); p50 != 51 || p99 != 100 {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
}
