package web

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// p2pUpgrade hands WebSocket upgrades on "/" to the overlay's libp2p
// WebSocket listener, so peers behind firewalls that pass only HTTPS can
// reach this peer on its HTTPS port. libp2p authenticates peers inside the
// WebSocket (Noise), so the proxy needs no checks of its own. Other
// upgrades (SIP at /sip) and plain requests pass through.
func (a *api) p2pUpgrade(next http.Handler) http.Handler {
	if a.cfg.P2PBackend == "" {
		return next
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: a.cfg.P2PBackend})
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		a.cfg.Logger.Warn("libp2p WebSocket proxy failed", "remote", r.RemoteAddr, "err", err)
		httpError(w, http.StatusBadGateway, "overlay transport unavailable")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
			r.Header.Get("Sec-WebSocket-Protocol") == "" {
			proxy.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
