package web

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// securityHeaders sets the headers every response carries. The CSP
// allows only this origin and framing by this origin; /embed widens
// frame-ancestors to the embedding allowlist.
func (a *api) securityHeaders(next http.Handler) http.Handler {
	csp := a.csp([]string{"'self'"})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		h.Set("Permissions-Policy", "microphone=(self), camera=()")
		if a.cfg.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// checkOrigin accepts scheme://host[:port] with nothing after it, the
// form browsers send in Origin.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: embed origin %q must look like https://portal.example[:port]", ErrBadConfig, o)
	}
	return nil
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
		// A web page in the operator's own browser also connects from
		// loopback: refuse what browsers mark as coming from another site
		// (a "simple" cross-site POST needs no CORS preflight).
		if site := r.Header.Get("Sec-Fetch-Site"); (site != "" && site != "same-origin" && site != "none") ||
			(r.Header.Get("Origin") != "" && !sameHostOrigin(r.Header.Get("Origin"), r.Host)) {
			httpError(w, http.StatusForbidden, "this API is only for the peer's operator, not for web pages")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameHostOrigin reports whether origin (scheme://host[:port]) names host.
func sameHostOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}
