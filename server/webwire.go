package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/p2psip/p2psip/web"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// webTLS is how the HTTPS port gets its certificate: the self-signed (or
// --tls-cert) one, or ACME for --fqdn with the self-signed one kept for
// clients that do not ask for that name (peers joining by IP address,
// libp2p over WebSocket).
type webTLS struct {
	config *tls.Config
	acme   *autocert.Manager // nil without --acme
	// trusted: browsers trust the certificate, so HSTS is safe to send.
	trusted bool
}

func newWebTLS(cfg Config, cert tls.Certificate, log *slog.Logger) *webTLS {
	w := &webTLS{trusted: cfg.TLSCert != ""}
	w.config = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if !cfg.ACME {
		return w
	}
	w.trusted = true
	w.acme = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "acme")),
		HostPolicy: autocert.HostWhitelist(strings.ToLower(strings.TrimSuffix(cfg.FQDN, "."))),
		Email:      cfg.ACMEEmail,
		Client:     &acme.Client{DirectoryURL: cfg.ACMEDirectory},
	}
	w.config.NextProtos = []string{"h2", "http/1.1", acme.ALPNProto}
	w.config.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if !strings.EqualFold(strings.TrimSuffix(hello.ServerName, "."), strings.TrimSuffix(cfg.FQDN, ".")) {
			return &cert, nil
		}
		c, err := w.acme.GetCertificate(hello)
		if err != nil {
			// The client sees only "internal error": say here what failed.
			log.Error("ACME: no certificate for --fqdn (check DNS for it, and that the CA reaches port 443 or --http :80)",
				"fqdn", cfg.FQDN, "err", err)
		}
		return c, err
	}
	w.config.Certificates = nil
	return w
}

// redirectServer is the --http listener: it sends every request to the
// same path on HTTPS, and answers ACME HTTP-01 challenges when ACME is on.
func redirectServer(ln net.Listener, httpsPort int, w *webTLS, log *slog.Logger) *http.Server {
	var h http.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if host == "" {
			host = "localhost"
		}
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		} else if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		http.Redirect(rw, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
	if w.acme != nil {
		h = w.acme.HTTPHandler(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("HTTP redirect listener stopped", "err", err)
		}
	}()
	return srv
}

// publicProxyKnown reports, for the softphone, whether a proxy toward
// public SIP domains is in the overlay. Answers are kept for a while, so
// page loads do not each search the overlay.
func publicProxyKnown(cfg Config, find func(context.Context) ([]string, error)) func(context.Context) bool {
	if cfg.hasRole("proxy") {
		return func(context.Context) bool { return true }
	}
	var mu sync.Mutex
	var known bool
	var at time.Time
	return func(ctx context.Context) bool {
		mu.Lock()
		defer mu.Unlock()
		// A proxy stays known for 30 s; its absence is asked again after
		// 10 s, so a proxy that joins shows up soon.
		if ttl := map[bool]time.Duration{true: 30 * time.Second, false: 10 * time.Second}[known]; time.Since(at) < ttl {
			return known
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		uris, err := find(ctx)
		known, at = err == nil && len(uris) > 0, time.Now()
		return known
	}
}

// staticICEServers gives the softphone the operator's --ice-servers (the
// overlay's own TURN relays will join them once the relay role exists).
func staticICEServers(cfg Config) func(context.Context) []web.ICEServer {
	if len(cfg.ICEServers) == 0 {
		return nil
	}
	servers := []web.ICEServer{{URLs: cfg.ICEServers, Username: cfg.ICEUser, Credential: cfg.ICECredential}}
	return func(context.Context) []web.ICEServer { return servers }
}
