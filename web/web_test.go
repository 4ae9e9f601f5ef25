package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2psip/p2psip/overlay"
	"github.com/prometheus/client_golang/prometheus"
)

func newTestHandler(t *testing.T) (http.Handler, *overlay.Node) {
	return newTestHandlerWith(t, func(*Config) {})
}

func newTestHandlerWith(t *testing.T, edit func(*Config)) (http.Handler, *overlay.Node) {
	t.Helper()
	id, err := overlay.LoadOrCreateIdentity(t.TempDir() + "/node.key")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	node, err := overlay.New(overlay.Config{Name: "test.overlay", Identity: id, Registerer: reg,
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close(context.Background()) })
	owner, _ := overlay.NewP256Key()
	cfg := Config{Overlay: node, Owner: owner, Gatherer: reg,
		Site: fstest.MapFS{"index.html": {Data: []byte("<h1>hi</h1>")},
			"embed.html": {Data: []byte("<p>embedded phone</p>")},
			"app.js":     {Data: []byte(strings.Repeat("console.log('softphone');\n", 200))}}}
	edit(&cfg)
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, node
}

func do(h http.Handler, method, path, body, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const local, remote = "127.0.0.1:5555", "203.0.113.9:5555"

func TestEndpoints(t *testing.T) {
	h, node := newTestHandler(t)
	for path, want := range map[string]string{
		"/healthz": "ok", "/.well-known/p2psip": node.ID(), "/api/overlay": `"records"`, "/": "<h1>hi</h1>",
		"/metrics": "p2psip_overlay_peers",
	} {
		rec := do(h, "GET", path, "", remote)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d %q", path, rec.Code, rec.Body.String())
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: security headers missing", path)
		}
	}
}

func TestRegistrationAPI(t *testing.T) {
	h, _ := newTestHandler(t)
	aor := "/api/registrations/sip:alice@test.overlay"
	if rec := do(h, "GET", aor, "", remote); rec.Code != 404 {
		t.Fatalf("unknown AOR: %d", rec.Code)
	}
	body := `{"aor":"sip:alice@test.overlay","contact":"sip:alice@127.0.0.1:5099","expires":60}`
	if rec := do(h, "POST", "/api/registrations", body, remote); rec.Code != 403 {
		t.Fatalf("register from a remote address: %d, want 403", rec.Code)
	}
	// A web page in the operator's browser is on loopback too: what the
	// browser marks as cross-site is refused.
	for name, hdr := range map[string][2]string{"cross-site": {"Sec-Fetch-Site", "cross-site"},
		"foreign origin": {"Origin", "https://evil.example"}} {
		req := httptest.NewRequest("POST", "/api/registrations", strings.NewReader(body))
		req.RemoteAddr = local
		req.Header.Set(hdr[0], hdr[1])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 403 {
			t.Fatalf("%s POST from loopback: %d, want 403", name, rec.Code)
		}
	}
	if rec := do(h, "POST", "/api/registrations", body, local); rec.Code != 201 {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	rec := do(h, "GET", "/api/registrations/sip%3Aalice%40test.overlay", "", remote)
	var v RegistrationView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); rec.Code != 200 || err != nil || len(v.Bindings) != 1 ||
		v.Bindings[0].Contact != "sip:alice@127.0.0.1:5099" || time.Until(v.Bindings[0].ExpiresAt()) > time.Minute {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	for _, bad := range []string{`{`, `{"aor":"sip:a@test.overlay"}`, `{"aor":"sip:a@other.example","contact":"sip:x@y"}`,
		`{"aor":"sip:a@test.overlay","contact":"sip:x@y","expires":999999}`, `{"aor":"x","contact":"y","extra":1}`} {
		if rec := do(h, "POST", "/api/registrations", bad, local); rec.Code != 400 {
			t.Errorf("%s: %d, want 400", bad, rec.Code)
		}
	}
	if rec := do(h, "DELETE", aor, "", remote); rec.Code != 403 {
		t.Fatalf("unregister from a remote address: %d", rec.Code)
	}
	if rec := do(h, "DELETE", aor, "", local); rec.Code != 204 {
		t.Fatalf("unregister: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", aor, "", remote); rec.Code != 404 || !strings.Contains(rec.Body.String(), "no bindings") {
		t.Fatalf("after unregister: %d %s", rec.Code, rec.Body)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
}
