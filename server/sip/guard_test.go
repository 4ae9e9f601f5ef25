package sip

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestMalformedResponse(t *testing.T) {
	cases := map[string]string{
		"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: -1\r\n\r\n": "SIP/2.0 400 Bad Request",
		"OPTIONS soap.beep://x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n":                                                                         "SIP/2.0 416 Unsupported URI Scheme",
		"INVITE <sip:a@b> SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n":                                                                                "SIP/2.0 400 Bad Request",
		"INVITE sip:a@b; lr SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n":                                                                            "SIP/2.0 400 Bad Request",
	}
	for in, want := range cases {
		res := string(malformedResponse([]byte(in)))
		if !strings.HasPrefix(res, want+"\r\n") || !strings.Contains(res, "branch=z9hG4bK1") || !strings.HasSuffix(res, "Content-Length: 0\r\n\r\n") {
			t.Errorf("%q:\n%s", in, res)
		}
	}
	for _, in := range []string{"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", "INVITE sip:a@b SIP/2.0\r\nFrom: x\r\n\r\n", "garbage"} {
		if res := malformedResponse([]byte(in)); res != nil {
			t.Errorf("%q answered:\n%s", in, res)
		}
	}
}

// TestStreamFraming: a malformed request on TCP gets a 400 and the
// next message on the connection still arrives; a broken Content-Length
// gets a 400 and the connection closes.
func TestStreamFraming(t *testing.T) {
	ts := newTestService(t, nil)
	good := "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: g\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	bad := "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK3\r\nFrom: Bell, Alexander <sip:a@b>;tag=1\r\nTo: <sip:x@y\r\nCall-ID: b\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	broken := "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK4\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
	client, server := net.Pipe()
	defer func() { _ = client.Close() }()
	g := newGuardStreamConn(&closeNotifyConn{Conn: server, onClose: func(string) {}}, ts.Service)
	g.linger = 50 * time.Millisecond // nobody answers good here
	go func() { _, _ = client.Write([]byte("\r\n\r\n" + bad + good + broken)) }()
	replies := make(chan string, 4)
	go func() {
		br := bufio.NewReader(client)
		for {
			head, err := readHead(br)
			if err != nil {
				close(replies)
				return
			}
			replies <- string(head)
		}
	}()
	got, err := io.ReadAll(io.LimitReader(g, int64(len("\r\n\r\n")+len(good))))
	if err != nil || string(got) != "\r\n\r\n"+good {
		t.Fatalf("sipgo would read %q, %v", got, err)
	}
	if r := <-replies; !strings.HasPrefix(r, "SIP/2.0 400") || !strings.Contains(r, "z9hG4bK3") {
		t.Fatalf("malformed request answered %q", r)
	}
	if _, err := g.Read(make([]byte, 10)); err == nil {
		t.Fatal("a repeated Content-Length did not end the stream")
	}
	select {
	case r := <-replies:
		if !strings.Contains(r, "z9hG4bK4") {
			t.Fatalf("broken framing answered %q", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no 400 for broken framing")
	}
}

// FuzzStreamFraming: any byte stream is framed without panic or an
// unbounded read, and every message handed on parses.
func FuzzStreamFraming(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("\r\n\r\nOPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabc"))
	// A stalled malformed header (baddn's shape), then its end and more;
	// a request, then bytes that are no message (dblreq's shape).
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: A, B <sip:a@b>;tag=1\r\nCall-ID: c\r\nl: 0\r\n\r\nOPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n"))
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n\r\nC\r\n\r\n"))
	ts := newTestService(f, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &guardStreamConn{closeNotifyConn: &closeNotifyConn{Conn: discardConn{}, onClose: func(string) {}},
			br: bufio.NewReader(bytes.NewReader(data)), s: ts.Service, linger: time.Nanosecond}
		for i := 0; i < 64; i++ {
			if err := g.next(); err != nil {
				return
			}
			g.pending = nil
		}
	})
}

// FuzzMalformedResponse: building the 400 from raw bytes never panics
// and, when it answers, answers a well-formed status line.
func FuzzMalformedResponse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if res := malformedResponse(data); res != nil && !bytes.HasPrefix(res, []byte("SIP/2.0 4")) {
			t.Fatalf("bad answer %q", res)
		}
	})
}

// discardConn swallows writes (the fuzzer's 400s go nowhere).
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }
func (discardConn) RemoteAddr() net.Addr        { return &net.TCPAddr{} }

// fakePacketConn hands out queued datagrams and records what is sent.
type fakePacketConn struct {
	net.PacketConn
	in   [][]byte
	sent [][]byte
}

func (f *fakePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(f.in) == 0 {
		return 0, nil, net.ErrClosed
	}
	n := copy(b, f.in[0])
	f.in = f.in[1:]
	return n, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}, nil
}

func (f *fakePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	f.sent = append(f.sent, append([]byte(nil), b...))
	return len(b), nil
}

// TestGuardConnTorture: over UDP, wsinv reaches sipgo normalised, inv2543
// with a branch that leaves its responses again, and baddn — as the RFC
// shows it, with its blank line — is answered 400.
func TestGuardConnTorture(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(torture, name+".dat"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wsinv, inv2543 := read("wsinv"), read("inv2543")
	baddn := append(read("baddn"), "\r\n"...)
	ts := newTestService(t, nil)
	pc := &fakePacketConn{in: [][]byte{baddn, wsinv, inv2543}}
	g := &guardConn{PacketConn: pc, s: ts.Service}
	buf := make([]byte, 65535)
	n, _, err := g.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], normalizeMessage(wsinv)) {
		t.Fatalf("sipgo would read %q, %v", buf[:n], err)
	}
	if len(pc.sent) != 1 || !bytes.HasPrefix(pc.sent[0], []byte("SIP/2.0 400 ")) || !bytes.Contains(pc.sent[0], []byte("Call-ID: baddn.31415")) {
		t.Fatalf("baddn answered %q", pc.sent)
	}
	n, _, _ = g.ReadFrom(buf)
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	if _, err := sip.ServerTxKeyMake(req); err != nil {
		t.Fatal(err)
	}
	res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	if _, err := g.WriteTo([]byte(res.String()), nil); err != nil {
		t.Fatal(err)
	}
	if got := string(pc.sent[1]); !strings.Contains(got, "\r\nVia: SIP/2.0/UDP iftgw.example.com\r\n") {
		t.Errorf("response to inv2543:\n%s", got)
	}
}

// TestStreamStalledHeader: a malformed request whose header stops short
// of its blank line (RFC 4475 baddn, as its corpus file has it) is
// answered while the peer waits for the rest; when the rest comes the
// message is skipped and the next one arrives.
func TestStreamStalledHeader(t *testing.T) {
	baddn, err := os.ReadFile(filepath.Join(torture, "baddn.dat"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestService(t, nil)
	good := "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: g\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	client, server := net.Pipe()
	defer func() { _ = client.Close() }()
	g := newGuardStreamConn(&closeNotifyConn{Conn: server, onClose: func(string) {}}, ts.Service)
	got := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(g, int64(len(good))))
		got <- string(b) + errString(err)
	}()
	if _, err := client.Write(baddn); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	res, err := readHead(bufio.NewReader(client))
	if err != nil || !strings.HasPrefix(string(res), "SIP/2.0 400 ") || !strings.Contains(string(res), "CSeq:    3923239 OPTIONS") {
		t.Fatalf("stalled baddn answered %q, %v", res, err)
	}
	if _, err := client.Write([]byte("\r\n" + good)); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r != good {
		t.Fatalf("sipgo would read %q", r)
	}
	// A well-formed header that stalls is not answered early.
	g.partial, g.answered = partialCheck{}, false
	g.checkPartial([]byte(good[:strings.Index(good, "Call-ID")+3]))
	if g.answered {
		t.Error("a well-formed partial header was answered")
	}
}

func errString(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// TestStreamFramingLinger: after a framing error the connection stays
// open until the requests before it have their final responses (RFC
// 4475 §3.1.1.8 dblreq over TCP), and no longer than the linger.
func TestStreamFramingLinger(t *testing.T) {
	dblreq, err := os.ReadFile(filepath.Join(torture, "dblreq.dat"))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestService(t, nil)
	client, server := net.Pipe()
	defer func() { _ = client.Close() }()
	g := newGuardStreamConn(&closeNotifyConn{Conn: server, onClose: func(string) {}}, ts.Service)
	go func() { _, _ = client.Write(dblreq) }()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	var msgs []string
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := g.Read(buf)
			if err != nil {
				readErr <- err
				return
			}
			msgs = append(msgs, string(buf[:n]))
		}
	}()
	select {
	case err := <-readErr:
		t.Fatalf("closed before the REGISTER and INVITE were answered: %v (%d read)", err, len(msgs))
	case <-time.After(200 * time.Millisecond):
	}
	for _, res := range []string{"SIP/2.0 100 Trying\r\n\r\n", "SIP/2.0 403 Forbidden\r\n\r\n"} {
		if _, err := g.Write([]byte(res)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-readErr:
		t.Fatalf("closed with the INVITE unanswered: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := g.Write([]byte("SIP/2.0 503 Service Unavailable\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr:
		if err != errFraming {
			t.Fatalf("stream ended with %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("not closed once answered")
	}
	if len(msgs) != 3 || !strings.HasPrefix(msgs[0], "REGISTER ") || msgs[1] != "\r\n" || !strings.HasPrefix(msgs[2], "INVITE ") {
		t.Fatalf("sipgo would read %q", msgs)
	}

	// Unanswered, it closes after the linger.
	client2, server2 := net.Pipe()
	defer func() { _ = client2.Close() }()
	g2 := newGuardStreamConn(&closeNotifyConn{Conn: server2, onClose: func(string) {}}, ts.Service)
	g2.linger = 100 * time.Millisecond
	go func() { _, _ = client2.Write(dblreq) }()
	go func() { _, _ = io.Copy(io.Discard, client2) }()
	start := time.Now()
	buf := make([]byte, 64<<10)
	for {
		if _, err := g2.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("closed after %s, want the 100 ms linger", d)
	}
}
