package relay

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// stunBinding is a STUN Binding request (RFC 8489): type, length 0, magic
// cookie, transaction ID.
func stunBinding() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], 0x0001)
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	copy(b[8:], "demux-txid12")
	return b
}

func TestIsSTUN(t *testing.T) {
	allocate := stunBinding()
	binary.BigEndian.PutUint16(allocate[0:], 0x0003)
	cases := []struct {
		name string
		in   []byte
		want bool
	}{
		{"binding request", stunBinding(), true},
		{"allocate request", allocate, true},
		{"header prefix only", stunBinding()[:8], true},
		{"7 bytes", stunBinding()[:7], false},
		{"empty", nil, false},
		{"first byte 3", append([]byte{3}, stunBinding()[1:]...), true},
		{"first byte 4", append([]byte{4}, stunBinding()[1:]...), false},
		{"first byte 0x40 (ChannelData)", append([]byte{0x40}, stunBinding()[1:]...), false},
		{"first byte 0x80", append([]byte{0x80}, stunBinding()[1:]...), false},
		{"no cookie", []byte{0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x43, 0, 0, 0, 0}, false},
		{"RFC 3489 STUN (no cookie)", []byte{0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, false},
		{"HTTP GET", []byte("GET / HTTP/1.1\r\n"), false},
		{"HTTP OPTIONS", []byte("OPTIONS * HTTP/1.1\r\n"), false},
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), false},
		{"ChannelData", []byte{0x40, 0x00, 0x00, 0x04, 0x21, 0x12, 0xA4, 0x42}, false},
		{"TLS record", []byte{0x16, 0x03, 0x01, 0x00, 0x21, 0x12, 0xA4, 0x42}, false},
	}
	for _, c := range cases {
		if got := isSTUN(c.in); got != c.want {
			t.Errorf("%s: isSTUN(% x) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
}

func FuzzIsSTUN(f *testing.F) {
	f.Add(stunBinding())
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{0x40, 0, 0, 4, 0x21, 0x12, 0xA4, 0x42})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		want := len(b) >= 8 && b[0] < 4 && binary.BigEndian.Uint32(b[4:8]) == 0x2112A442
		if got := isSTUN(b); got != want {
			t.Fatalf("isSTUN(% x) = %v, want %v", b, got, want)
		}
		// A STUN message never starts with a printable ASCII byte, so no
		// HTTP request is ever routed to TURN.
		if want && b[0] >= 0x20 {
			t.Fatalf("STUN with printable first byte % x", b)
		}
		// readPrefix sees the same verdict whatever the segmentation.
		buf, _ := readPrefix(&oneByteReader{b: b})
		if isSTUN(buf) != want {
			t.Fatalf("readPrefix(% x) = % x: verdict differs", b, buf)
		}
	})
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "demux test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// demuxEnv is a demux on a loopback port with an HTTP server on HTTP().
type demuxEnv struct {
	d    *Demux
	addr string
	srv  *http.Server
	reg  *prometheus.Registry
}

func startDemux(t *testing.T) *demuxEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := NewDemux(ln, &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MinVersion: tls.VersionTLS12}, nil)
	reg := prometheus.NewRegistry()
	if err := d.Register(reg); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no r.TLS", http.StatusInternalServerError)
			return
		}
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			// Enough of RFC 6455 to see the upgrade and an echo over it.
			hj, ok := w.(http.Hijacker)
			if !ok {
				http.Error(w, "no hijacker", http.StatusInternalServerError)
				return
			}
			c, brw, err := hj.Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: %s\r\n\r\n", r.Header.Get("Sec-WebSocket-Protocol"))
			_ = brw.Flush()
			line, _ := brw.ReadString('\n')
			_, _ = io.WriteString(c, "echo "+line)
			return
		}
		fmt.Fprintf(w, "%s %s alpn=%q", r.Proto, r.URL.Path, r.TLS.NegotiatedProtocol)
	})
	srv := &http.Server{Handler: mux, TLSConfig: d.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(d.HTTP()) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = d.Close()
	})
	return &demuxEnv{d: d, addr: ln.Addr().String(), srv: srv, reg: reg}
}

func (e *demuxEnv) client(protos ...string) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: protos},
		ForceAttemptHTTP2: len(protos) > 0 && protos[0] == "h2",
	}
	if len(protos) == 1 && protos[0] == "http/1.1" {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (e *demuxEnv) get(t *testing.T, c *http.Client, path string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get("https://" + e.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	return resp, string(body)
}

// dialTLS connects with the given ALPN protocols (none: no ALPN extension).
func (e *demuxEnv) dialTLS(t *testing.T, protos ...string) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: protos, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// acceptTURN accepts one connection from the TURN listener.
func (e *demuxEnv) acceptTURN(t *testing.T) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := e.d.TURN().Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { _ = r.c.Close() })
		_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection on the TURN listener")
		return nil
	}
}

// checkTURN sends a Binding request on c and reads it from the TURN
// listener, then answers through it.
func (e *demuxEnv) checkTURN(t *testing.T, c *tls.Conn, wantALPN string) {
	t.Helper()
	if got := c.ConnectionState().NegotiatedProtocol; got != wantALPN {
		t.Fatalf("negotiated %q, want %q", got, wantALPN)
	}
	req := stunBinding()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	sc := e.acceptTURN(t)
	got := make([]byte, len(req))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, req) {
		t.Fatalf("TURN listener read % x, want % x", got, req)
	}
	st, ok := sc.(interface{ ConnectionState() tls.ConnectionState })
	if !ok || !st.ConnectionState().HandshakeComplete {
		t.Fatalf("TURN conn %T has no TLS state", sc)
	}
	if _, err := sc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 4)
	if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "pong" {
		t.Fatalf("reply over TURN conn: %q, %v", pong, err)
	}
}

// TestDemuxPortMatrix is the HTTPS port matrix on one listener.
func TestDemuxPortMatrix(t *testing.T) {
	e := startDemux(t)

	// A client that connects and sends nothing, and one that handshakes
	// without ALPN and then sends nothing: neither blocks the others.
	silent, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentTLS := e.dialTLS(t)
	_ = silentTLS

	t.Run("HTTP/2", func(t *testing.T) {
		resp, body := e.get(t, e.client("h2", "http/1.1"), "/h2")
		if resp.ProtoMajor != 2 || body != `HTTP/2.0 /h2 alpn="h2"` {
			t.Fatalf("proto %s, body %q", resp.Proto, body)
		}
	})
	t.Run("HTTP/1.1", func(t *testing.T) {
		resp, body := e.get(t, e.client("http/1.1"), "/h1")
		if resp.ProtoMajor != 1 || body != `HTTP/1.1 /h1 alpn="http/1.1"` {
			t.Fatalf("proto %s, body %q", resp.Proto, body)
		}
	})
	t.Run("HTTP/1.1 without ALPN", func(t *testing.T) {
		// The peeked, wrapped conn: r.TLS is still set (the handler
		// answers 500 without it), keep-alive works.
		c := e.dialTLS(t)
		br := bufio.NewReader(c)
		for i := range 2 {
			fmt.Fprintf(c, "GET /noalpn%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf(`HTTP/1.1 /noalpn%d alpn=""`, i) {
				t.Fatalf("%s %q", resp.Status, body)
			}
		}
	})
	for _, ws := range []struct{ name, path, proto string }{
		{"SIP WebSocket", "/sip", "sip"},
		{"libp2p WebSocket", "/", ""},
	} {
		for _, alpn := range [][]string{{"http/1.1"}, nil} {
			t.Run(fmt.Sprintf("%s ALPN %q", ws.name, alpn), func(t *testing.T) {
				c := e.dialTLS(t, alpn...)
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ws.path)
				if ws.proto != "" {
					fmt.Fprintf(c, "Sec-WebSocket-Protocol: %s\r\n", ws.proto)
				}
				_, _ = io.WriteString(c, "\r\n")
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != ws.proto {
					t.Fatalf("upgrade: %s, protocol %q", resp.Status, resp.Header.Get("Sec-WebSocket-Protocol"))
				}
				_, _ = io.WriteString(c, "hello\n")
				line, err := br.ReadString('\n')
				if err != nil || line != "echo hello\n" {
					t.Fatalf("over the upgraded conn: %q, %v", line, err)
				}
			})
		}
	}
	t.Run("TURN ALPN stun.turn beside http/1.1", func(t *testing.T) {
		// coturn's turnutils_uclient offers both: the TURN client wins.
		e.checkTURN(t, e.dialTLS(t, "http/1.1", ALPNTURN), ALPNTURN)
	})
	t.Run("TURN ALPN stun.turn", func(t *testing.T) {
		e.checkTURN(t, e.dialTLS(t, ALPNTURN), ALPNTURN)
	})
	t.Run("TURN no ALPN", func(t *testing.T) {
		e.checkTURN(t, e.dialTLS(t), "")
	})
	t.Run("TURN no ALPN one byte at a time", func(t *testing.T) {
		c := e.dialTLS(t)
		req := stunBinding()
		for i := range 8 {
			if _, err := c.Write(req[i : i+1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := c.Write(req[8:]); err != nil {
			t.Fatal(err)
		}
		sc := e.acceptTURN(t)
		got := make([]byte, len(req))
		if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, req) {
			t.Fatalf("read % x, %v", got, err)
		}
	})
	t.Run("no ALPN, small first byte, no cookie", func(t *testing.T) {
		// Not STUN: HTTP, which rejects it.
		c := e.dialTLS(t)
		_, _ = c.Write([]byte{1, 1, 0, 0, 1, 2, 3, 4, '\r', '\n', '\r', '\n'})
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got %s", resp.Status)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		got, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(got), "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.") {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("unknown ALPN", func(t *testing.T) {
		_, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"spdy/1"}})
		if err == nil {
			t.Fatal("handshake with an unknown ALPN protocol succeeded")
		}
	})

	// The silent clients are still pending: nothing waited for them.
	if _, err := silent.Write(nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		route string
		min   float64
	}{{routeHTTP, 7}, {routeTURN, 3}, {routePlainHTTP, 1}, {routeHandshake, 1}} {
		if got := waitCounter(t, e.d, c.route, c.min); got < c.min {
			t.Errorf("counter %s = %v, want ≥ %v", c.route, got, c.min)
		}
	}
}

// TestDemuxSilentClients: many clients that send nothing, before and after
// the TLS handshake, do not delay a request.
func TestDemuxSilentClients(t *testing.T) {
	e := startDemux(t)
	for range 50 {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range 10 {
		e.dialTLS(t)
	}
	start := time.Now()
	e.get(t, e.client("h2"), "/")
	e.checkTURN(t, e.dialTLS(t), "")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with silent clients pending", d)
	}
}

// TestDemuxPeekDeadline: a TLS client without ALPN that sends nothing is
// closed after the peek deadline.
func TestDemuxPeekDeadline(t *testing.T) {
	e := startDemux(t) // waits out the 5 s peek deadline
	c := e.dialTLS(t)
	_ = c.SetReadDeadline(time.Now().Add(demuxPeekTimeout + 5*time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from a silent conn")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("not closed after %v", time.Since(start))
	}
	if got := waitCounter(t, e.d, routePeekFailed, 1); got != 1 {
		t.Fatalf("peek_failed = %v", got)
	}
}

// TestDemuxTURNRefused: with TURN() closed (no relay role), TURN
// connections are closed and HTTP goes on.
func TestDemuxTURNRefused(t *testing.T) {
	e := startDemux(t)
	_ = e.d.TURN().Close()
	for _, protos := range [][]string{{ALPNTURN}, nil} {
		c := e.dialTLS(t, protos...)
		_, _ = c.Write(stunBinding())
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("ALPN %q: read %d bytes from a refused TURN conn", protos, n)
		}
	}
	e.get(t, e.client("h2"), "/")
	if got := waitCounter(t, e.d, routeRefused, 2); got != 2 {
		t.Fatalf("refused = %v", got)
	}
}

// TestDemuxClose: Close ends Accept on both listeners and frees the port.
func TestDemuxClose(t *testing.T) {
	e := startDemux(t)
	_ = e.srv.Close()
	errs := make(chan error, 1)
	go func() {
		_, err := e.d.TURN().Accept()
		errs <- err
	}()
	if err := e.d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept blocked after Close")
	}
	if _, err := e.d.HTTP().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("HTTP Accept after Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Fatal("port still open")
	}
}

func counter(t *testing.T, d *Demux, route string) float64 {
	t.Helper()
	var m dto.Metric
	if err := d.conns.WithLabelValues(route).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitCounter waits up to 5 s for the counter to reach min: the demux
// counts after the client has seen the outcome.
func waitCounter(t *testing.T, d *Demux, route string, min float64) float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := counter(t, d, route)
		if got >= min || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}
