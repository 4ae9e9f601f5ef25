package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestSIPOverWebSocket: a WebSocket SIP client (RFC 7118) registers at
// /sip on the HTTPS port with an unroutable .invalid contact; the binding
// is in the overlay while the connection lives and gone when it closes.
func TestSIPOverWebSocket(t *testing.T) {
	url, _ := bootPeer(t)
	wsURL := "wss://" + strings.TrimPrefix(strings.TrimSuffix(url, "/"), "https://") + "/sip"
	dialer := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: &tls.Config{InsecureSkipVerify: true}, Timeout: 5 * time.Second}
	conn, _, hs, err := dialer.Dial(context.Background(), wsURL)
	if err != nil {
		t.Fatal(err)
	}
	if hs.Protocol != "sip" {
		t.Fatalf("subprotocol %q", hs.Protocol)
	}
	reg := strings.Join([]string{
		"REGISTER sip:p2psip.local SIP/2.0",
		"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK-ws1;rport",
		"Max-Forwards: 70",
		"From: <sip:wsuser@p2psip.local>;tag=w1",
		"To: <sip:wsuser@p2psip.local>",
		"Call-ID: ws-reg-1",
		"CSeq: 1 REGISTER",
		`Contact: <sip:k8j3@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`,
		"Expires: 600",
		"Content-Length: 0", "", ""}, "\r\n")
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientText(conn, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	res, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(res), "SIP/2.0 200") {
		t.Fatalf("REGISTER over WebSocket: %s", res)
	}
	lookup := func() int { return getJSON(t, url+"api/registrations/sip:wsuser@p2psip.local", nil) }
	if code := lookup(); code != 200 {
		t.Fatalf("binding not in the overlay: %d", code)
	}
	_ = conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for lookup() != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("binding still there after the WebSocket closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSIPWebSocketChecks(t *testing.T) {
	url, _ := bootPeer(t)
	for name, c := range map[string]struct {
		proto, origin string
		want          int
	}{
		"no sip subprotocol": {"", "", 400},
		"foreign origin":     {"sip", "https://evil.example", 403},
	} {
		req, _ := http.NewRequest("GET", url+"sip", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if c.proto != "" {
			req.Header.Set("Sec-WebSocket-Protocol", c.proto)
		}
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, c.want)
		}
	}
}
