package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestUDPSocketMatchesNet checks that udpSocket reads the same addresses
// net.UDPConn.ReadFrom returns (IP length included: pion compares and
// fingerprints them) and writes where net.UDPConn.WriteTo does, on IPv4,
// IPv6 and dual-stack sockets, reading through a batch (Linux, pion's
// buffers) and with a buffer too large for one (one recvfrom).
func TestUDPSocketMatchesNet(t *testing.T) {
	cases := []struct {
		name             string
		network, listen  string
		peerNet, peerDst string // the peer's socket and where it sends (port added)
	}{
		{"ipv4", "udp4", "127.0.0.1:0", "udp4", "127.0.0.1"},
		{"ipv6", "udp6", "[::1]:0", "udp6", "::1"},
		{"dual-stack from ipv4", "udp", ":0", "udp4", "127.0.0.1"},
	}
	for _, bufLen := range []int{1600, 65536} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/buf=%d", tc.name, bufLen), func(t *testing.T) {
				testUDPSocketMatchesNet(t, bufLen, tc.network, tc.listen, tc.peerNet, tc.peerDst)
			})
		}
	}
}

func testUDPSocketMatchesNet(t *testing.T, bufLen int, network, listen, peerNet, peerDst string) {
	pc, err := net.ListenPacket(network, listen)
	if err != nil {
		skipOrFail(t, err)
	}
	defer pc.Close()
	ref, err := net.ListenPacket(network, listen) // read with net, for comparison (byte for byte: 4- and 16-byte IPs differ for pion)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	peer, err := net.ListenPacket(peerNet, net.JoinHostPort(peerDst, "0"))
	if err != nil {
		skipOrFail(t, err)
	}
	defer peer.Close()
	sock := newUDPSocket(pc.(*net.UDPConn), relayAddrSlots)
	if sock.raw == nil {
		t.Log("no raw I/O on this platform: checking the fallback")
	}
	dst := func(c net.PacketConn) net.Addr {
		return &net.UDPAddr{IP: net.ParseIP(peerDst), Port: c.LocalAddr().(*net.UDPAddr).Port}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range []net.PacketConn{pc, ref, peer} {
		_ = c.SetDeadline(deadline)
	}

	var got, want net.Addr
	for i := range 3 { // the second and third reads come from the cache
		msg := []byte{byte(i), 'p', 'i', 'n', 'g'}
		if _, err := peer.WriteTo(msg, dst(pc)); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.WriteTo(msg, dst(ref)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, bufLen)
		n, a, err := sock.readFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("readFrom: %q, %v", buf[:n], err)
		}
		if i > 0 && a != got {
			t.Errorf("read %d: a new *net.UDPAddr for the same source", i)
		}
		got = a
		if _, want, err = ref.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		g, w := got.(*net.UDPAddr), want.(*net.UDPAddr)
		if string(g.IP) != string(w.IP) || g.Port != w.Port || g.Zone != w.Zone {
			t.Errorf("read %d: address %#v, net says %#v", i, g, w)
		}
	}

	// Back to the peer, at the address just read (as pion does).
	if _, err := sock.writeTo([]byte("pong"), got); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("peer read: %q, %v", buf[:n], err)
	}
	if from.(*net.UDPAddr).Port != pc.LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("pong from %v, want port of %v", from, pc.LocalAddr())
	}
}

// TestUDPSocketClosed checks that Close ends a blocked read with an error,
// as pion's read loops expect.
func TestUDPSocketClosed(t *testing.T) {
	for _, bufLen := range []int{1600, 65536} {
		t.Run(fmt.Sprintf("buf=%d", bufLen), func(t *testing.T) { testUDPSocketClosed(t, bufLen) })
	}
}

func testUDPSocketClosed(t *testing.T, bufLen int) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := newUDPSocket(pc.(*net.UDPConn), relayAddrSlots)
	done := make(chan error, 1)
	go func() {
		_, _, err := sock.readFrom(make([]byte, bufLen))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = pc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read after Close: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read not unblocked by Close")
	}
}

func TestAddrCache(t *testing.T) {
	c := newAddrCache(2) // tiny: collisions are certain
	for i := range 50 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i % 7), 1}), uint16(1000+i%5))
		a := c.udpAddr(ap)
		if got := a.AddrPort(); got != ap {
			t.Fatalf("udpAddr(%v) = %v", ap, got)
		}
		if len(a.IP) != 4 {
			t.Fatalf("udpAddr(%v): %d-byte IP, want 4 as net reads from an IPv4 socket", ap, len(a.IP))
		}
	}
	ap := netip.MustParseAddrPort("[fe80::1%lo]:5")
	if a := c.udpAddr(ap); a.Zone != "lo" || a.Port != 5 || !a.IP.Equal(net.ParseIP("fe80::1")) {
		t.Errorf("udpAddr(%v) = %#v", ap, a)
	}
}

// TestAddrPortOf checks the string-free conversion against the string
// round trip it replaces.
func TestAddrPortOf(t *testing.T) {
	for _, a := range []net.Addr{
		&net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478},                           // 16-byte IPv4
		&net.UDPAddr{IP: net.IP{192, 0, 2, 1}, Port: 1},                                // 4-byte
		&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 65535},                      //
		&net.UDPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 80},                    // mapped
		&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 9, Zone: "eth0"},                // zoned
		&net.UDPAddr{IP: net.ParseIP("::"), Port: 0},                                   //
		&net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 443},                          // not UDP: the string way
		&net.UDPAddr{IP: net.ParseIP("64:ff9b::7f00:1"), Port: 22},                     //
		&net.UDPAddr{IP: net.ParseIP("::127.0.0.1"), Port: 8443},                       // IPv4-compatible
		&net.UDPAddr{IP: net.ParseIP("2002:7f00:1::1"), Port: 5060},                    // 6to4
		&net.UDPAddr{IP: net.ParseIP("2001:0:4136:e378:8000:63bf:80ff:fffe"), Port: 1}, // Teredo
	} {
		want, wantErr := netip.ParseAddrPort(a.String())
		got, err := addrPortOf(a)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Errorf("addrPortOf(%v) = %v, %v; the string way: %v, %v", a, got, err, want, wantErr)
		}
	}
}

// skipOrFail skips a test whose network (IPv6 loopback) this host lacks,
// and fails it in CI, where every test must run.
func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}
