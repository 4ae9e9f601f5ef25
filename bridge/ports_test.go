package bridge

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freeBlock finds n consecutive free UDP ports on loopback below Linux's
// ephemeral range and above the session tests' 31000–31999.
func freeBlock(t *testing.T, n int) int {
	t.Helper()
	for base := 32000; base+n <= 32700; base += n {
		ok := true
		for p := base; p < base+n && ok; p++ {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, uint16(p))))
			if err != nil {
				ok = false
				continue
			}
			_ = c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free block of UDP ports on loopback: something holds the whole test range")
	return 0
}

func TestPortPoolQuarantine(t *testing.T) {
	base := freeBlock(t, 2)
	p := newPortPool(base, base+1, time.Hour)
	c1, port1, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	_ = c1.Close()
	p.release(port1)
	c2, port2, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c2.Close() }()
	if port2 == port1 {
		t.Fatalf("port %d handed out again within its quarantine", port1)
	}
	// One port resting, the other in use: none left.
	if c, port, err := p.listen(loopback); !errors.Is(err, ErrNoPorts) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("listen = %d, %v; want ErrNoPorts", port, err)
	}
	// After the quarantine the port serves again.
	p.mu.Lock()
	p.resting[port1] = time.Now().Add(-time.Hour - time.Second)
	p.mu.Unlock()
	c3, port3, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	_ = c3.Close()
	if port3 != port1 {
		t.Fatalf("after the quarantine got %d, want %d", port3, port1)
	}
	p.mu.Lock()
	_, still := p.resting[port1]
	p.mu.Unlock()
	if still {
		t.Fatal("a port handed out again is still resting")
	}
}

func TestPortPoolShortQuarantine(t *testing.T) {
	base := freeBlock(t, 2)
	p := newPortPool(base, base+1, 50*time.Millisecond)
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	c, port, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	p.release(port)
	c, other, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, c)
	if _, _, err := p.listen(loopback); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("listen during the quarantine: %v", err)
	}
	time.Sleep(80 * time.Millisecond)
	c, again, err := p.listen(loopback)
	if err != nil {
		t.Fatalf("listen after the quarantine: %v", err)
	}
	conns = append(conns, c)
	if again != port || again == other {
		t.Fatalf("got %d after the quarantine, want %d", again, port)
	}
}

func TestPortPoolExhaustion(t *testing.T) {
	base := freeBlock(t, 4)
	p := newPortPool(base, base+3, time.Minute)
	seen := map[int]bool{}
	for range 4 {
		c, port, err := p.listen(loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if port < base || port > base+3 || seen[port] {
			t.Fatalf("port %d (range %d-%d, had %v)", port, base, base+3, seen)
		}
		seen[port] = true
	}
	if c, _, err := p.listen(loopback); !errors.Is(err, ErrNoPorts) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("a fifth port from four: %v", err)
	}
}

// A port another program holds is passed over.
func TestPortPoolSkipsTakenPorts(t *testing.T) {
	base := freeBlock(t, 3)
	taken, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, uint16(base))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	p := newPortPool(base, base+2, time.Minute)
	c, port, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if port != base+1 {
		t.Fatalf("got %d, want %d (the first free one)", port, base+1)
	}
	c2, port2, err := p.listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.Close()
	if port2 != base+2 {
		t.Fatalf("got %d, want %d", port2, base+2)
	}
	if p.inUse[base] {
		t.Fatal("a port that failed to bind is marked in use")
	}
}
