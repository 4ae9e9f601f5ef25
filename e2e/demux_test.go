//go:build e2e

package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestHTTPSPortMatrix: the HTTPS port of a real peer, shared with TURN over
// TLS (server/relay/demux.go), still serves HTTP/2, HTTP/1.1 with and
// without ALPN, and the /sip and libp2p WebSocket upgrades; TURN with ALPN
// stun.turn and with no ALPN does not reach HTTP (a peer without the relay
// role closes it); silent clients block nobody; plaintext HTTP gets 400.
func TestHTTPSPortMatrix(t *testing.T) {
	p := startPeer(t)
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	addr := u.Host

	// Clients that connect and send nothing, before and after the TLS
	// handshake: held open for the whole test.
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range 5 {
		c := dialPeerTLS(t, addr)
		defer c.Close()
	}
	start := time.Now()

	t.Run("HTTP/2", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed test peer
			ForceAttemptHTTP2: true,
		}}
		resp, err := c.Get(p.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("GET /healthz: %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN: %+v", resp.TLS)
		}
	})
	t.Run("HTTP/1.1", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, //nolint:gosec // self-signed test peer
		}}
		resp, err := c.Get(p.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("GET /healthz: %s over %s (ALPN %q)", resp.Status, resp.Proto, resp.TLS.NegotiatedProtocol)
		}
	})
	t.Run("HTTP/1.1 without ALPN", func(t *testing.T) {
		// httpClient sends no ALPN: the demux peeks at these.
		if code, body := get(t, p.URL+"/healthz"); code != http.StatusOK {
			t.Fatalf("GET /healthz: %d %s", code, body)
		}
	})
	for _, alpn := range [][]string{{"http/1.1"}, nil} {
		t.Run(fmt.Sprintf("SIP WebSocket ALPN %q", alpn), func(t *testing.T) {
			resp := wsUpgrade(t, addr, "/sip", "sip", p.URL, alpn)
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "sip" {
				t.Fatalf("upgrade of /sip: %s, protocol %q", resp.Status, resp.Header.Get("Sec-WebSocket-Protocol"))
			}
		})
		t.Run(fmt.Sprintf("libp2p WebSocket ALPN %q", alpn), func(t *testing.T) {
			resp := wsUpgrade(t, addr, "/", "", "", alpn)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade of /: %s", resp.Status)
			}
		})
	}
	for _, alpn := range [][]string{{"stun.turn"}, nil} {
		t.Run(fmt.Sprintf("TURN ALPN %q", alpn), func(t *testing.T) {
			// No relay role: the connection is closed, with no HTTP answer.
			c := dialPeerTLS(t, addr, alpn...)
			defer c.Close()
			if want := strings.Join(alpn, ""); c.ConnectionState().NegotiatedProtocol != want {
				t.Fatalf("ALPN %q, want %q", c.ConnectionState().NegotiatedProtocol, want)
			}
			if _, err := c.Write(stunBindingRequest()); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if len(got) != 0 || err != nil && isTimeout(err) {
				t.Fatalf("TURN without the relay role: read %q, %v; want the connection closed", got, err)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
		got, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(got), "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.") {
			t.Fatalf("plaintext HTTP to the TLS port: %q", got)
		}
	})
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the matrix took %v with silent clients pending: were they waited for?", d)
	}
	code, body := get(t, p.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{`p2psip_https_port_conns_total{result="refused"} 2`, `p2psip_https_port_conns_total{result="plain_http"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func dialPeerTLS(t *testing.T, addr string, protos ...string) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: protos}) //nolint:gosec // self-signed test peer
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// wsUpgrade sends a WebSocket upgrade over a TLS connection with the given
// ALPN protocols and returns the response.
func wsUpgrade(t *testing.T, addr, path, subproto, origin string, alpn []string) *http.Response {
	t.Helper()
	c := dialPeerTLS(t, addr, alpn...)
	t.Cleanup(func() { _ = c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", path, addr)
	if subproto != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", subproto)
	}
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("upgrade of %s: %v", path, err)
	}
	return resp
}

// stunBindingRequest is a STUN Binding request (RFC 8489) with no attributes.
func stunBindingRequest() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], 0x0001)
	binary.BigEndian.PutUint32(b[4:], 0x2112A442)
	copy(b[8:], "e2e-demux-tx")
	return b
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestHTTPSPortTURN: on a peer with the relay role, TURN over TLS on the
// HTTPS port reaches the TURN server, with ALPN stun.turn and with none
// (as Chromium connects), while HTTPS goes on.
func TestHTTPSPortTURN(t *testing.T) {
	p := startPeer(t, "--roles", "relay", "--turn", "127.0.0.1:0", "--public-addr", "127.0.0.1")
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, alpn := range [][]string{{"stun.turn"}, nil} {
		t.Run(fmt.Sprintf("ALPN %q", alpn), func(t *testing.T) {
			c := dialPeerTLS(t, u.Host, alpn...)
			defer c.Close()
			req := stunBindingRequest()
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			resp := make([]byte, 20)
			if _, err := io.ReadFull(c, resp); err != nil {
				t.Fatalf("no STUN answer over TLS: %v", err)
			}
			// Binding success response, same transaction.
			if binary.BigEndian.Uint16(resp) != 0x0101 || string(resp[4:20]) != string(req[4:20]) {
				t.Fatalf("answer % x to Binding request % x", resp, req)
			}
		})
	}
	if code, body := get(t, p.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz: %d %s", code, body)
	}
}
