package web

import (
	"net"
	"net/http"
)

// securityHeaders sets the headers every response carries. The CSP
// allows only this origin; frame-ancestors 'self' until the widget adds an
// embedding allowlist.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' wss:; frame-ancestors 'self'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

// loopbackOnly admits requests from this machine only: the admin API
// writes registrations that the peer signs with its own key, so only the
// operator may use it.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			httpError(w, http.StatusForbidden, "this API is only for the peer's operator (requests from loopback)")
			return
		}
		next.ServeHTTP(w, r)
	})
}
