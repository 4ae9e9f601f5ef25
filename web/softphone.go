package web

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// ICEServer is one entry of RTCPeerConnection's iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
	// Expires is when a short-lived credential stops working for new
	// allocations, Unix seconds (0: it does not expire); the page fetches
	// /api/config again before then.
	Expires int64 `json:"expires,omitempty"`
}

// ClientConfig is the body of GET /api/config: what the softphone needs
// to register and call (docs/softphone.md).
type ClientConfig struct {
	Overlay      string      `json:"overlay"`
	Node         string      `json:"node"`
	DeviceKey    string      `json:"deviceKey"` // base64url P-256 point the browser certifies
	ICEServers   []ICEServer `json:"iceServers"`
	ICEGatherMs  int         `json:"iceGatherMs"`
	EmbedOrigins []string    `json:"embedOrigins"`
	PublicProxy  bool        `json:"publicProxy"`
	// Time is the peer's clock, Unix seconds: the page signs its owner
	// proof with it, so a device with a wrong clock still registers.
	Time int64 `json:"time"`
}

func (a *api) clientConfig(w http.ResponseWriter, r *http.Request) {
	info := a.cfg.Overlay.JoinInfo()
	cc := ClientConfig{
		Overlay: info.Overlay, Node: info.NodeID,
		DeviceKey:    b64(a.cfg.Owner.PublicKey()),
		ICEServers:   []ICEServer{},
		ICEGatherMs:  int(a.cfg.ICEGather.Milliseconds()),
		EmbedOrigins: append([]string{}, a.cfg.EmbedOrigins...),
		Time:         time.Now().Unix(),
	}
	if a.cfg.ICEServers != nil {
		cc.ICEServers = append(cc.ICEServers, a.cfg.ICEServers(r.Context())...)
	}
	if a.cfg.PublicProxy != nil {
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout/2)
		cc.PublicProxy = a.cfg.PublicProxy(ctx)
		cancel()
	}
	writeJSON(w, http.StatusOK, cc)
}

// embedPage serves the phone for the widget's iframe. Only this peer and
// the allowlisted origins may frame it (frame-ancestors); the page posts
// call events to the origin named in its query, which must be one of
// them.
func (a *api) embedPage(w http.ResponseWriter, r *http.Request) {
	if o := r.URL.Query().Get("origin"); o != "" && !a.embedAllowed(o) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.Error(w, "this page may not embed the phone: add its origin to the peer's --embed-origins", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Security-Policy", a.csp(append([]string{"'self'"}, a.cfg.EmbedOrigins...)))
	a.assets.serveFile(w, r, "embed.html")
}

func (a *api) embedAllowed(origin string) bool {
	for _, o := range a.cfg.EmbedOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// csp is the Content-Security-Policy of every page: only this origin's
// scripts and styles, SIP over WSS to this host, and framing by
// ancestors only.
func (a *api) csp(ancestors []string) string {
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"media-src 'self' blob:; connect-src 'self' wss:; object-src 'none'; base-uri 'none'; " +
		"form-action 'self'; frame-ancestors " + strings.Join(ancestors, " ")
}
