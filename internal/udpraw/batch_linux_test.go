//go:build !386

// 32-bit x86 Linux has no SYS_RECVFROM/SYS_SENDTO (socketcall): it uses the
// portable path of udpio_other.go.

package udpraw

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// listenBatched is a loopback socket of network read through Conn, and
// a peer socket to send to it from.
func listenBatched(t *testing.T, network, addr string) (pc *net.UDPConn, sock *Conn, peer *net.UDPConn) {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	growBuffer(c) // many datagrams are queued before the first read
	p, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	sock = New(c.(*net.UDPConn))
	if sock == nil {
		t.Fatal("no raw I/O on Linux")
	}
	deadline := time.Now().Add(10 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = p.SetDeadline(deadline)
	return c.(*net.UDPConn), sock, p.(*net.UDPConn)
}

func TestMmsghdrLayout(t *testing.T) {
	// struct mmsghdr: a msghdr, an unsigned int, padded to the pointer size.
	if got, want := unsafe.Sizeof(mmsghdr{}), unsafe.Sizeof(syscall.Msghdr{})+unsafe.Sizeof(uintptr(0)); got != want {
		t.Fatalf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
}

// TestBatchManyDatagrams queues more datagrams than a batch holds, from
// several sources, and checks every one comes back whole, in order per
// source, with its own source address; and that reads were batched.
func TestBatchManyDatagrams(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			pc, sock, peer := listenBatched(t, tc.network, tc.addr)
			peers := []*net.UDPConn{peer}
			for range 2 {
				c, err := net.ListenPacket(tc.network, tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				peers = append(peers, c.(*net.UDPConn))
			}
			// Rounds of 42 datagrams (more than a batch; few enough for a
			// default-sized receive buffer, should growBuffers be capped).
			const rounds, per = 8, 14
			msg := func(j, i int) []byte {
				return fmt.Appendf(nil, "%d/%d/%s", j, i, bytes.Repeat([]byte{'x'}, (i*37+j)%300))
			}
			next := make([]int, len(peers))
			buf := make([]byte, 1600)
			maxBatch := 0
			for r := range rounds {
				for i := r * per; i < (r+1)*per; i++ {
					for j, p := range peers {
						if _, err := p.WriteTo(msg(j, i), pc.LocalAddr()); err != nil {
							t.Fatal(err)
						}
					}
				}
				for range per * len(peers) {
					n, a, err := sock.ReadFrom(buf)
					if err != nil {
						t.Fatal(err)
					}
					maxBatch = max(maxBatch, sock.batch.n)
					j := -1
					for k, p := range peers {
						if la := p.LocalAddr().(*net.UDPAddr).AddrPort(); la.Port() == a.Port() && la.Addr().Unmap() == a.Addr().Unmap() {
							j = k
						}
					}
					if j < 0 {
						t.Fatalf("datagram from %v: not a peer", a)
					}
					if want := msg(j, next[j]); !bytes.Equal(buf[:n], want) {
						t.Fatalf("from peer %d: %q, want %q", j, buf[:n], want)
					}
					next[j]++
				}
			}
			if maxBatch < 2 {
				t.Errorf("no read returned more than one datagram (most: %d)", maxBatch)
			}
			t.Logf("largest batch: %d", maxBatch)
		})
	}
}

// TestBatchTruncation checks that batched reads cut long datagrams as
// recvfrom into the same buffer does (net.UDPConn.ReadFrom on a second
// socket gets the same datagrams), for datagrams longer than the read
// buffer and longer than a batch slot, and that reads with larger buffers
// (a grown batch, or no batch) get them whole.
func TestBatchTruncation(t *testing.T) {
	pc, sock, peer := listenBatched(t, "udp4", "127.0.0.1:0")
	ref, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	growBuffer(ref)
	_ = ref.SetDeadline(time.Now().Add(10 * time.Second))

	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	send := func(sizes ...int) {
		t.Helper()
		for _, n := range sizes {
			for _, dst := range []net.Addr{pc.LocalAddr(), ref.LocalAddr()} {
				if _, err := peer.WriteTo(payload(n), dst); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	check := func(bufLen int, sizes ...int) {
		t.Helper()
		for _, size := range sizes {
			got, want := make([]byte, bufLen), make([]byte, bufLen)
			n, _, err := sock.ReadFrom(got)
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := ref.ReadFrom(want)
			if err != nil {
				t.Fatal(err)
			}
			if n != m || !bytes.Equal(got[:n], want[:m]) {
				t.Fatalf("%d-byte datagram into %d bytes: read %d bytes, recvfrom reads %d", size, bufLen, n, m)
			}
			if wantN := min(size, bufLen); n != wantN {
				t.Fatalf("%d-byte datagram into %d bytes: read %d", size, bufLen, n)
			}
		}
	}

	// pion's buffer: a datagram of 1600 bytes or more is dropped by pion
	// as "possibly truncated", so it must come back as 1600 bytes.
	sizes := []int{0, 10, 1599, 1600, 1601, minBatchSlot - 1, minBatchSlot, minBatchSlot + 1, 9000, 100}
	send(sizes...)
	check(1600, sizes...)
	send(sizes...)
	check(16, sizes...)

	// A larger buffer, read when the batch is empty: the slots grow.
	sizes = []int{9000, 12000, 5}
	send(sizes...)
	check(12000, sizes...)
	if b := sock.batch; b == nil || b.slot < 12000 {
		t.Errorf("batch %+v after a read with 12000 bytes", b)
	}

	// Larger than maxBatchSlot: read with recvfrom past the batch.
	sizes = []int{40000, 3}
	send(sizes...)
	check(65536, sizes...)
	if b := sock.batch; b != nil && b.slot > maxBatchSlot {
		t.Errorf("slot grew to %d", b.slot)
	}
}

// TestBatchDeadline checks that the read deadline applies to datagrams
// already in the batch, as it does to those still queued in the kernel
// (they stay and are read once the deadline is lifted), and ends a read
// that waits.
func TestBatchDeadline(t *testing.T) {
	pc, sock, peer := listenBatched(t, "udp4", "127.0.0.1:0")
	buf := make([]byte, 1600)
	// Loopback queues a datagram within its sendto, so all four are in the
	// first batch; should a loaded machine defer one past the first read,
	// drain and try again.
	for attempt := 1; ; attempt++ {
		for i := range 4 {
			if _, err := peer.WriteTo([]byte{byte(i)}, pc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if n, _, err := sock.ReadFrom(buf); err != nil || n != 1 || buf[0] != 0 {
			t.Fatalf("first read: %d %v", n, err)
		}
		if sock.batch.n == 4 {
			break
		}
		if attempt == 10 {
			t.Fatalf("the first read found %d of 4 datagrams queued, %d times", sock.batch.n, attempt)
		}
		_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, _, err := sock.ReadFrom(buf); err != nil {
				break
			}
		}
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	}

	_ = pc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := sock.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline with datagrams in the batch: %v", err)
	}
	var ne net.Error
	if _, _, err := sock.ReadFrom(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, not a net.Error timeout", err)
	}

	_ = pc.SetReadDeadline(time.Time{})
	for i := 1; i < 4; i++ {
		if n, _, err := sock.ReadFrom(buf); err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("read %d after the deadline was lifted: %d %q %v", i, n, buf[:n], err)
		}
	}

	_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, _, err := sock.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting read: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waiting read ended after %v", d)
	}
	if sock.batch != nil {
		t.Error("a socket waiting for datagrams holds a batch")
	}
}

// TestBatchClosedWithPending checks that Close ends reads even with
// datagrams left in the batch.
func TestBatchClosedWithPending(t *testing.T) {
	pc, sock, peer := listenBatched(t, "udp4", "127.0.0.1:0")
	for range 3 {
		if _, err := peer.WriteTo([]byte("x"), pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	buf := make([]byte, 1600)
	if _, _, err := sock.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	_ = pc.Close()
	if _, _, err := sock.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

// TestRawUDPConcurrent has several goroutines write through one Conn and
// several read from a batched one at once (run it with -race): every
// datagram arrives once and whole. A window of unread datagrams keeps the
// receive buffer from overflowing.
func TestRawUDPConcurrent(t *testing.T) {
	pc, sock, _ := listenBatched(t, "udp4", "127.0.0.1:0")
	sc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sender := New(sc.(*net.UDPConn))
	if sender == nil {
		t.Fatal("no raw I/O on Linux")
	}
	const writers, readers, per, window = 4, 3, 500, 64
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	dst := pc.LocalAddr().(*net.UDPAddr)
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				<-credit
				msg := fmt.Appendf(nil, "%d:%d:%s", w, i, bytes.Repeat([]byte{byte('a' + w)}, i%200))
				if n, err := sender.WriteTo(msg, dst); err != nil || n != len(msg) {
					errs <- fmt.Errorf("write: %d %v", n, err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	for range readers {
		wg.Go(func() {
			buf := make([]byte, 1600)
			for {
				n, a, err := sock.ReadFrom(buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return // the others read the rest
				}
				if err != nil {
					errs <- err
					return
				}
				credit <- struct{}{}
				if int(a.Port()) != sc.LocalAddr().(*net.UDPAddr).Port {
					errs <- fmt.Errorf("datagram from %v", a)
					return
				}
				var w, i int
				if _, err := fmt.Sscanf(string(buf[:n]), "%d:%d:", &w, &i); err != nil {
					errs <- fmt.Errorf("datagram %q: %v", buf[:n], err)
					return
				}
				if want := fmt.Appendf(nil, "%d:%d:%s", w, i, bytes.Repeat([]byte{byte('a' + w)}, i%200)); !bytes.Equal(buf[:n], want) {
					errs <- fmt.Errorf("datagram %q, want %q", buf[:n], want)
					return
				}
				mu.Lock()
				dup := seen[string(buf[:n])]
				seen[string(buf[:n])] = true
				done := len(seen) == writers*per
				mu.Unlock()
				if dup {
					errs <- fmt.Errorf("datagram %q twice", buf[:n])
					return
				}
				if done {
					_ = pc.SetReadDeadline(time.Now()) // release the other readers
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != writers*per {
		t.Errorf("%d datagrams read, %d sent", len(seen), writers*per)
	}
}

// growBuffer gives c a receive buffer for the datagrams a test queues
// before its first read.
func growBuffer(c net.PacketConn) { _ = c.(*net.UDPConn).SetReadBuffer(4 << 20) }

// TestWriteToAddrPort sends through WriteToAddrPort from an IPv4 and a
// dual-stack socket, to IPv4 and IPv6 loopback, and checks the datagram
// arrives whole from the sender's address.
func TestWriteToAddrPort(t *testing.T) {
	for _, tc := range []struct{ sender, to string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::]:0", "127.0.0.1:0"},
		{"[::]:0", "[::1]:0"},
	} {
		t.Run(tc.sender+"->"+tc.to, func(t *testing.T) {
			sc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.sender)))
			if err != nil {
				skipOrFail(t, err)
			}
			defer sc.Close()
			rc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.to)))
			if err != nil {
				skipOrFail(t, err)
			}
			defer rc.Close()
			_ = rc.SetDeadline(time.Now().Add(5 * time.Second))
			s := New(sc)
			if s == nil {
				t.Fatal("no raw I/O on Linux")
			}
			to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
			if n, err := s.WriteToAddrPort([]byte("hello"), to); err != nil || n != 5 {
				t.Fatalf("WriteToAddrPort = %d, %v", n, err)
			}
			buf := make([]byte, 64)
			n, from, err := rc.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			if from.Port() != sc.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
				t.Errorf("from %v, sender %v", from, sc.LocalAddr())
			}
		})
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
