package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPRedirects: --http only sends browsers to the HTTPS port, same
// path and query.
func TestHTTPRedirects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	_ = l.Close()
	url, _ := bootPeer(t, "--http", httpAddr, "--embed-origins", "https://portal.example")
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + httpAddr + "/embed?mode=button")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if want := url + "embed?mode=button"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	var cc struct {
		Overlay      string   `json:"overlay"`
		DeviceKey    string   `json:"deviceKey"`
		EmbedOrigins []string `json:"embedOrigins"`
	}
	if code := getJSON(t, url+"api/config", &cc); code != 200 || cc.Overlay != "p2psip.local" || cc.DeviceKey == "" ||
		strings.Join(cc.EmbedOrigins, ",") != "https://portal.example" {
		t.Fatalf("/api/config: %d %+v", code, cc)
	}
	// The self-signed certificate is not trusted: no HSTS.
	resp, err = insecure.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS with a self-signed certificate")
	}
}
