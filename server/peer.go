package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2psip/p2psip/overlay"
	"github.com/p2psip/p2psip/server/relay"
	sipsvc "github.com/p2psip/p2psip/server/sip"
	"github.com/p2psip/p2psip/static"
	"github.com/p2psip/p2psip/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Withdrawal and close are bounded so that SIGTERM exits within 5 s even
// when the overlay is gone (the last peer standing).
const (
	withdrawBudget = 2500 * time.Millisecond
	shutdownBudget = 4 * time.Second
)

// servePeer runs a peer until ctx ends, then withdraws its records and
// closes.
func servePeer(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	gc := tuneGC(os.LookupEnv, log) // gc.go: GOGC paced by the collector's share of CPU, under a soft memory limit
	defer gc.stop()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir %s: %w", cfg.DataDir, err)
	}
	identity, err := overlay.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, "node.key"))
	if err != nil {
		return err
	}
	owner, err := overlay.LoadOrCreateP256Key(filepath.Join(cfg.DataDir, "owner.key"))
	if err != nil {
		return err
	}
	cert, err := loadCert(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPS)
	if err != nil {
		return fmt.Errorf("listening on --https %s (is another peer running? choose another port): %w", cfg.HTTPS, err)
	}
	defer func() { _ = ln.Close() }()
	var httpLn net.Listener
	if cfg.HTTP != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTP); err != nil {
			return fmt.Errorf("listening on --http %s (port 80 needs root or CAP_NET_BIND_SERVICE; choose another): %w", cfg.HTTP, err)
		}
		defer func() { _ = httpLn.Close() }()
	}

	sipLn, err := listenSIP(cfg, cert)
	if err != nil {
		return err
	}
	defer sipLn.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if gc != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2psip_gc_percent",
			Help: "GOGC as the peer last set it from its collector's share of CPU (absent when the environment sets GOGC or GOMEMLIMIT).",
		}, gc.gogc))
	}
	node, err := startOverlay(cfg, identity, ln.Addr().(*net.TCPAddr), reg, log)
	if err != nil {
		return err
	}
	relays := newRelayDirectory(node, reg, log)               // relaydisc.go: the overlay's relays for /api/config and the bridge
	media, err := newMediaBridge(cfg, node, relays, reg, log) // bridgewire.go
	if err != nil {
		_ = node.Close(context.Background())
		return fmt.Errorf("media bridge: %w", err)
	}
	defer media.Close()
	sipSvc, err := startSIP(cfg, node, owner, sipLn, media, reg, log)
	if err != nil {
		_ = node.Close(context.Background())
		return err
	}
	defer func() { _ = sipSvc.Close() }()
	if cfg.hasRole("proxy") {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := announceProxy(actx, cfg, node, sipLn)
		cancel()
		if err != nil {
			log.Warn("announcing the proxy role failed; the refresh loop retries", "err", err)
		}
	}
	wtls := newWebTLS(cfg, cert, log)
	httpsPort := ln.Addr().(*net.TCPAddr).Port
	handler, err := web.New(web.Config{Overlay: node, Owner: owner, P2PBackend: node.WSBackend(),
		SIP:  sipSvc.WebSocketHandler(httpsPort, sipsvc.AllowOrigins(cfg.EmbedOrigins)),
		Site: static.FS(), Gatherer: reg, Logger: log,
		EmbedOrigins: cfg.EmbedOrigins, HSTS: wtls.trusted,
		PublicProxy: publicProxyKnown(cfg, proxyFinder(node)), ICEServers: relays.iceServers(staticICEServers(cfg)),
		TURN:   relays.status,
		Bridge: media.status,
		SIPStreams: func() web.SIPStreams {
			p, d, r, t := sipSvc.PeerStreams()
			return web.SIPStreams{Peers: p, Direct: d, Relayed: r, Transports: t}
		}})
	if err != nil {
		_ = node.Close(context.Background())
		return err
	}
	if httpLn != nil {
		redirect := redirectServer(httpLn, httpsPort, wtls, log)
		defer func() { _ = redirect.Close() }()
	}
	// One TLS port for HTTPS and TURN over TLS: the demux handshakes each
	// connection and routes it by ALPN or by its first bytes.
	demux := relay.NewDemux(ln, wtls.config, log)
	defer func() { _ = demux.Close() }()
	if err := demux.Register(reg); err != nil {
		_ = node.Close(context.Background())
		return err
	}
	if cfg.hasRole("relay") {
		rly, selfTest, err := startRelay(cfg, demux.TURN(), reg, log) // relaywire.go; demux.TURN(): TURN over TLS on the HTTPS port
		if err != nil {
			_ = node.Close(context.Background())
			return err
		}
		relays.mu.Lock()
		relays.selfTest = selfTest.get
		relays.mu.Unlock()
		defer func() { _ = rly.Close() }()
		if _, err := serveRelayRole(ctx, cfg, node, rly, httpsPort, relays, log); err != nil {
			_ = node.Close(context.Background())
			return err
		}
	} else {
		// A peer without the relay role refuses TURN: the demux closes
		// connections routed to a closed TURN listener.
		_ = demux.TURN().Close()
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         demux.TLSConfig(), // lists "h2": Serve sets up HTTP/2
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go relays.run(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(demux.HTTP()) }()
	printReady(stdout, cfg, node, ln.Addr().(*net.TCPAddr), httpLn, cert, sipLn.Addrs)
	log.Info("peer started", "overlay", cfg.Overlay, "node", node.ID(), "https", ln.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutting down: withdrawing records")
	case err := <-served:
		_ = node.Close(context.Background())
		return fmt.Errorf("HTTPS server stopped: %w", err)
	}
	return shutdown(srv, node, log)
}

func shutdown(srv *http.Server, node *overlay.Node, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBudget)
	defer cancel()
	// Withdraw first, while the overlay connections are still up.
	wctx, wcancel := context.WithTimeout(ctx, withdrawBudget)
	defer wcancel()
	if err := node.Close(wctx); err != nil {
		log.Warn("some records could not be withdrawn; they expire by themselves", "err", err)
	}
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("closing HTTPS server: %w", err)
	}
	log.Info("peer stopped")
	return nil
}

func loadCert(cfg Config) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		return web.LoadCert(cfg.TLSCert, cfg.TLSKey)
	}
	host, _ := os.Hostname()
	return web.LoadOrCreateCert(cfg.DataDir, []string{host, cfg.Overlay})
}

func startOverlay(cfg Config, identity crypto.PrivKey, httpsAddr *net.TCPAddr, reg prometheus.Registerer, log *slog.Logger) (*overlay.Node, error) {
	ocfg := overlay.Config{
		Name:            cfg.Overlay,
		Identity:        identity,
		WSS:             httpsAddr,
		MDNS:            cfg.MDNS,
		Reachability:    cfg.Reachability,
		JoinURLs:        cfg.Join,
		Hold:            cfg.Hold,
		RefreshInterval: cfg.Refresh,
		ServiceTTL:      max(30*time.Minute, 3*cfg.Refresh),
		Logger:          log,
		Registerer:      reg,
	}
	for _, s := range cfg.p2pListenAddrs() {
		ocfg.ListenAddrs = append(ocfg.ListenAddrs, ma.StringCast(s))
	}
	for _, b := range cfg.Bootstrap {
		ai, err := peer.AddrInfoFromString(b)
		if err != nil {
			return nil, fmt.Errorf("--bootstrap %q: want a multiaddr ending in /p2p/<peer id>: %w", b, err)
		}
		ocfg.Bootstrap = append(ocfg.Bootstrap, *ai)
	}
	if cfg.PSKFile != "" {
		f, err := os.Open(cfg.PSKFile)
		if err != nil {
			return nil, fmt.Errorf("--psk-file: %w", err)
		}
		psk, err := pnet.DecodeV1PSK(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("--psk-file %s: not a libp2p swarm key: %w", cfg.PSKFile, err)
		}
		ocfg.PSK = psk
	}
	node, err := overlay.New(ocfg)
	if err != nil {
		return nil, fmt.Errorf("starting overlay: %w", err)
	}
	return node, nil
}

// printReady prints the block an operator (and the tests) read at start.
func printReady(w io.Writer, cfg Config, node *overlay.Node, https *net.TCPAddr, httpLn net.Listener, cert tls.Certificate, sip []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "p2psip peer ready\n")
	fmt.Fprintf(&b, "  overlay:    %s\n", cfg.Overlay)
	fmt.Fprintf(&b, "  node id:    %s\n", node.ID())
	fmt.Fprintf(&b, "  softphone:  %s\n", softphoneURL(https))
	fmt.Fprintf(&b, "  https:      %s\n", https)
	if httpLn != nil {
		fmt.Fprintf(&b, "  http:       %s (redirects to HTTPS)\n", httpLn.Addr())
	}
	for _, o := range cfg.EmbedOrigins {
		fmt.Fprintf(&b, "  embed from: %s\n", o)
	}
	for _, a := range node.Addrs() {
		fmt.Fprintf(&b, "  p2p:        %s\n", a)
	}
	for _, a := range sip {
		fmt.Fprintf(&b, "  sip:        %s\n", a)
	}
	fmt.Fprintf(&b, "  tls sha256: %s\n", web.Fingerprint(cert))
	fmt.Fprintf(&b, "  data:       %s\n", cfg.DataDir)
	fmt.Fprintf(&b, "  join:       p2psip --overlay %s --join %s\n", cfg.Overlay, softphoneURL(https))
	_, _ = io.WriteString(w, b.String())
}

// softphoneURL is the URL others on the network open: the listener's own
// address, or for a wildcard listener the first non-loopback address.
func softphoneURL(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = lanIP()
	}
	return "https://" + net.JoinHostPort(ip.String(), fmt.Sprint(a.Port)) + "/"
}

// lanIP is the first non-loopback IPv4 address, or 127.0.0.1.
func lanIP() net.IP {
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}
