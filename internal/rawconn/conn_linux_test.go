//go:build !386

package rawconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpPair is a connected loopback TCP pair: a, wrapped, and its peer b.
func tcpPair(t *testing.T) (a net.Conn, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	a = Wrap(c)
	if _, ok := a.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c, a)
	}
	return a, peer.(*net.TCPConn)
}

func TestWrapPassesOthersThrough(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := Wrap(p1); got != p1 {
		t.Errorf("Wrap(net.Pipe) = %T, want it unchanged", got)
	}
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	d, err := net.DialUDP("udp", nil, u.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := Wrap(d); got != net.Conn(d) {
		t.Errorf("Wrap(UDP) = %T, want it unchanged (not a stream)", got)
	}
}

// TestLargeWritesBothWays sends writes larger than the socket buffers in
// both directions at once, so that writes are partial and wait for the
// poller.
func TestLargeWritesBothWays(t *testing.T) {
	a, b := tcpPair(t)
	want := make([]byte, 8<<20)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	copyAndCheck := func(w io.Writer, r io.Reader) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for off := 0; off < len(want); off += 2 << 20 {
				end := min(off+2<<20, len(want))
				if n, err := w.Write(want[off:end]); err != nil || n != end-off {
					errs <- errors.Join(err, errors.New("short write"))
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(r, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				errs <- errors.New("data differs")
			}
		}()
	}
	copyAndCheck(a, b)
	copyAndCheck(b, a)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReadDeadline(t *testing.T) {
	a, _ := tcpPair(t)
	_ = a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := a.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	if msg := err.Error(); strings.Contains(msg, "raw-read") {
		t.Errorf("error %q names RawConn's operation, not the Read", msg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Read returned after %v", d)
	}
}

func TestEOFAndClosed(t *testing.T) {
	a, b := tcpPair(t)
	if _, err := b.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\" and EOF", got, err)
	}
	_ = a.Close()
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
}

// TestWriteToResetPeer: a peer that reset the connection gives an error
// (EPIPE or ECONNRESET), never a SIGPIPE that kills the process.
func TestWriteToResetPeer(t *testing.T) {
	a, b := tcpPair(t)
	_ = b.SetLinger(0)
	_ = b.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = a.Write(make([]byte, 1024))
		time.Sleep(time.Millisecond)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) || ne.Op != "write" {
		t.Fatalf("Write to a reset peer: %v, want a write *net.OpError", err)
	}
}

// TestCloseUnblocksRead: Close from another goroutine ends a Read that is
// waiting for data, as with net.TCPConn.
func TestCloseUnblocksRead(t *testing.T) {
	a, _ := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5 s after Close")
	}
}
