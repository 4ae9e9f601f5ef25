package web

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/p2psip/p2psip/overlay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Overlay is what the web layer needs of the overlay node.
type Overlay interface {
	JoinInfo() overlay.JoinInfo
	Peers() []overlay.PeerInfo
	StoredRecords() int
	Hosted() []overlay.HostedRecord
	Lookup(ctx context.Context, aor string) (*overlay.Registration, error)
	Register(ctx context.Context, req overlay.RegisterRequest) (*overlay.Registration, error)
	Unregister(ctx context.Context, aor, instance string) error
}

// Config configures the handler. New checks it once.
type Config struct {
	// Overlay is the node whose state the API shows. Required.
	Overlay Overlay
	// Owner signs registrations made through the loopback admin API; the
	// peer owns such AORs on behalf of the phones it hosts. Required.
	Owner overlay.Signer
	// P2PBackend is the host:port of the overlay's plain WebSocket
	// listener; WebSocket upgrades on "/" are proxied there. Default "":
	// no libp2p path through this port.
	P2PBackend string
	// SIP serves SIP over WebSocket at /sip (RFC 7118). Default nil: 404.
	SIP http.Handler
	// Site is the static site. Required.
	Site fs.FS
	// Gatherer serves /metrics. Default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds API handlers that query the overlay. Default 10s.
	RequestTimeout time.Duration
	// EmbedOrigins may frame /embed (the widget), as scheme://host[:port].
	// Default none: only this peer's own pages.
	EmbedOrigins []string
	// ICEServers lists the TURN/STUN servers the softphone should use
	// (the overlay's relays). Default nil: none, host candidates only.
	ICEServers func(ctx context.Context) []ICEServer
	// ICEGather caps how long the softphone waits for ICE candidates
	// after the first one. Default 500ms.
	ICEGather time.Duration
	// TURN reports the overlay's TURN relays and this peer's relay role
	// for /api/overlay. Default nil: not reported.
	TURN func() TURNStatus
	// SIPStreams counts the SIP streams to other peers for
	// /api/overlay. Default nil: not reported.
	SIPStreams func() SIPStreams
	// Bridge reports the media bridge for /api/overlay. Default nil: not
	// reported.
	Bridge func() BridgeStatus
	// PublicProxy reports whether a proxy peer toward public SIP domains
	// is in the overlay. Default nil: false.
	PublicProxy func(ctx context.Context) bool
	// HSTS adds Strict-Transport-Security, for certificates browsers
	// trust (ACME or --tls-cert); never with the self-signed one, which
	// would lock users out. Default false.
	HSTS bool
}

func (c *Config) validate() error {
	if c.Overlay == nil || c.Owner == nil || c.Site == nil {
		return fmt.Errorf("%w: Overlay, Owner and Site are required", ErrBadConfig)
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.ICEGather == 0 {
		c.ICEGather = 500 * time.Millisecond
	}
	for i, o := range c.EmbedOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
		c.EmbedOrigins[i] = strings.ToLower(strings.TrimSuffix(o, "/"))
	}
	return nil
}

// New returns the peer's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	files, err := loadAssets(cfg.Site)
	if err != nil {
		return nil, err
	}
	a := &api{cfg: cfg, assets: files}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, a.securityHeaders, a.p2pUpgrade)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get(overlay.WellKnownPath, a.wellKnown)
	r.Route("/api", func(r chi.Router) {
		r.Use(middleware.Timeout(cfg.RequestTimeout))
		r.Get("/overlay", a.overlayStatus)
		r.Get("/config", a.clientConfig)
		r.Get("/registrations/{aor}", a.lookup)
		r.With(loopbackOnly).Post("/registrations", a.register)
		r.With(loopbackOnly).Delete("/registrations/{aor}", a.unregister)
	})
	if cfg.SIP != nil {
		r.Handle("/sip", cfg.SIP)
	}
	r.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slogErrorLog{cfg.Logger}}))
	r.Get("/embed", a.embedPage)
	r.Handle("/*", files)
	return r, nil
}

// slogErrorLog adapts promhttp's error log to slog.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) { s.l.Error("metrics", "err", fmt.Sprint(v...)) }
