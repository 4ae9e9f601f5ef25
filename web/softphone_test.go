package web

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClientConfig(t *testing.T) {
	h, node := newTestHandlerWith(t, func(c *Config) {
		c.EmbedOrigins = []string{"https://portal.example/"}
		c.ICEServers = func(context.Context) []ICEServer {
			return []ICEServer{{URLs: []string{"turn:relay.example:3478"}, Username: "u", Credential: "c"}}
		}
		c.PublicProxy = func(context.Context) bool { return true }
	})
	rec := do(h, "GET", "/api/config", "", remote)
	var cc ClientConfig
	if err := json.Unmarshal(rec.Body.Bytes(), &cc); rec.Code != 200 || err != nil {
		t.Fatalf("/api/config: %d %s", rec.Code, rec.Body)
	}
	key, err := base64.RawURLEncoding.DecodeString(cc.DeviceKey)
	if cc.Overlay != "test.overlay" || cc.Node != node.ID() || err != nil || len(key) != 65 {
		t.Fatalf("config: %+v", cc)
	}
	if d := time.Now().Unix() - cc.Time; d < 0 || d > 5 {
		t.Fatalf("config time %d is not the peer's clock", cc.Time)
	}
	if cc.ICEGatherMs != 500 || !cc.PublicProxy || len(cc.ICEServers) != 1 ||
		len(cc.EmbedOrigins) != 1 || cc.EmbedOrigins[0] != "https://portal.example" {
		t.Fatalf("config: %+v", cc)
	}
}

func TestEmbedFraming(t *testing.T) {
	h, _ := newTestHandlerWith(t, func(c *Config) { c.EmbedOrigins = []string{"https://portal.example"} })
	rec := do(h, "GET", "/embed?mode=button&origin=https://portal.example", "", remote)
	csp := rec.Header().Get("Content-Security-Policy")
	if rec.Code != 200 || !strings.Contains(csp, "frame-ancestors 'self' https://portal.example") ||
		!strings.Contains(rec.Body.String(), "embedded phone") {
		t.Fatalf("embed: %d csp=%q", rec.Code, csp)
	}
	// The softphone itself may be framed by this origin only.
	if csp := do(h, "GET", "/", "", remote).Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") ||
		strings.Contains(csp, "portal.example") {
		t.Fatalf("softphone csp: %q", csp)
	}
	// A page of another origin is told why it may not embed the phone.
	rec = do(h, "GET", "/embed?origin=https://evil.example", "", remote)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "--embed-origins") {
		t.Fatalf("foreign origin: %d %s", rec.Code, rec.Body)
	}
}

func TestBadEmbedOrigin(t *testing.T) {
	for _, o := range []string{"portal.example", "https://portal.example/path", "ftp://x", "https://", "https://a.example?x=1"} {
		if err := checkOrigin(o); err == nil {
			t.Errorf("%q accepted", o)
		}
	}
	for _, o := range []string{"https://portal.example", "http://127.0.0.1:8080", "https://portal.example/"} {
		if err := checkOrigin(o); err != nil {
			t.Errorf("%q refused: %v", o, err)
		}
	}
}

func TestAssetsCompressedAndCached(t *testing.T) {
	h, _ := newTestHandlerWith(t, func(c *Config) { c.HSTS = true })
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("Accept-Encoding", "br, gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
		t.Fatalf("app.js: %d %v", rec.Code, rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !strings.HasPrefix(string(plain), "console.log") {
		t.Fatalf("body: %.40q", plain)
	}
	if rec.Header().Get("Strict-Transport-Security") == "" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers: %v", rec.Header())
	}
	// Revalidation with the ETag costs a 304 and no body.
	req = httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec2 := httptest.NewRecorder()
	h.ServeHTTP(rec2, req)
	if rec2.Code != 304 || rec2.Body.Len() != 0 {
		t.Fatalf("revalidation: %d", rec2.Code)
	}
	// Without gzip support the plain file, under its own ETag.
	rec3 := do(h, "GET", "/app.js", "", remote)
	if rec3.Header().Get("Content-Encoding") != "" || rec3.Header().Get("ETag") == rec.Header().Get("ETag") {
		t.Fatalf("identity: %v", rec3.Header())
	}
	if do(h, "GET", "/nope.js", "", remote).Code != 404 || do(h, "POST", "/app.js", "", remote).Code != 405 {
		t.Fatal("missing file or wrong method")
	}
}
