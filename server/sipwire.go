package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/p2psip/p2psip/overlay"
	sipsvc "github.com/p2psip/p2psip/server/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// sipListeners are the SIP sockets of a peer; Addrs lists them for the
// ready block.
type sipListeners struct {
	udp   net.PacketConn
	tcp   net.Listener
	tls   net.Listener
	Addrs []string
}

func (l *sipListeners) Close() {
	if l.udp != nil {
		_ = l.udp.Close()
	}
	if l.tcp != nil {
		_ = l.tcp.Close()
	}
	if l.tls != nil {
		_ = l.tls.Close()
	}
}

// listenSIP opens UDP and TCP on one port (a free one for port 0, so both
// transports share it as SIP expects) and TLS on --sips.
func listenSIP(cfg Config, cert tls.Certificate) (*sipListeners, error) {
	l := &sipListeners{}
	if cfg.SIP != "" {
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			l.tcp, l.udp, err = listenUDPAndTCP(cfg.SIP)
			if err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("listening on --sip %s (is another SIP server running? choose another address): %w", cfg.SIP, err)
		}
		l.Addrs = append(l.Addrs, "udp "+l.udp.LocalAddr().String(), "tcp "+l.tcp.Addr().String())
	}
	if cfg.SIPS != "" {
		ln, err := net.Listen("tcp", cfg.SIPS)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("listening on --sips %s: %w", cfg.SIPS, err)
		}
		l.tls = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		l.Addrs = append(l.Addrs, "tls "+ln.Addr().String())
	}
	return l, nil
}

func listenUDPAndTCP(addr string) (net.Listener, net.PacketConn, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(tcp.Addr().String())
	udp, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
	if err != nil {
		_ = tcp.Close()
		return nil, nil, err
	}
	return tcp, udp, nil
}

// sipHost is the address in this peer's Path and Record-Route.
func sipHost(cfg Config) string {
	if cfg.SIPHost != "" {
		return cfg.SIPHost
	}
	if cfg.PublicIP != "" {
		return cfg.PublicIP
	}
	if host, _, err := net.SplitHostPort(cfg.SIP); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return host
		}
	}
	return lanIP().String()
}

// startSIP serves SIP on the listeners until they close.
func startSIP(cfg Config, node *overlay.Node, owner overlay.Signer, l *sipListeners, media sipsvc.MediaBridge, reg prometheus.Registerer, log *slog.Logger) (*sipsvc.Service, error) {
	var users *sipsvc.Users
	if cfg.Users != "" {
		var err error
		if users, err = sipsvc.LoadUsers(cfg.Users, cfg.Overlay); err != nil {
			return nil, fmt.Errorf("--users: %w", err)
		}
	}
	scfg := sipsvc.Config{Domain: cfg.Overlay, Locator: node, Owner: owner, Users: users,
		Host: sipHost(cfg), Aliases: sipAliases(cfg), Logger: log, Registerer: reg, FindProxy: proxyFinder(node),
		Peers:                  node,
		Bridge:                 media,
		RegistrationsPerSource: cfg.RegsPerSource}
	if cfg.RegsPerSource == 0 {
		scfg.RegistrationsPerSource = -1 // the flag's 0 is "no cap"
	}
	if cfg.hasRole("proxy") {
		scfg.Proxy = &sipsvc.ProxyConfig{FQDN: cfg.FQDN, Resolver: &sipsvc.Resolver{Server: cfg.DNS},
			AllowPrivateTargets: cfg.ProxyPrivateTargets}
	}
	svc, err := sipsvc.New(scfg)
	if err != nil {
		return nil, err
	}
	serve := func(name string, f func() error) {
		go func() {
			if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("SIP transport stopped", "transport", name, "err", err)
			}
		}()
	}
	if l.udp != nil {
		serve("udp", func() error { return svc.ServeUDP(l.udp) })
		serve("tcp", func() error { return svc.ServeTCP(l.tcp) })
	}
	if l.tls != nil {
		serve("tls", func() error { return svc.ServeTLS(l.tls) })
	}
	serve("peer streams", svc.ServePeers)
	return svc, nil
}

// proxyFinder looks the overlay's proxies up in its service records and
// returns their node ids (the SIP service reaches them over streams),
// caching the answer briefly: every outbound request would otherwise
// cost a DHT query.
func proxyFinder(node *overlay.Node) func(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	var cached []string
	var at time.Time
	return func(ctx context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) < 30*time.Second && len(cached) > 0 {
			return cached, nil
		}
		entries, err := node.FindService(ctx, overlay.ServiceProxy, 5)
		if err != nil {
			return nil, err
		}
		cached = cached[:0]
		for _, e := range entries {
			if e.Node != node.ID() {
				cached = append(cached, e.Node)
			}
		}
		at = time.Now()
		return cached, nil
	}
}

// announceProxy publishes this peer in the overlay's proxy service
// records, with its public SIP URIs.
func announceProxy(ctx context.Context, cfg Config, node *overlay.Node, l *sipListeners) error {
	host := sipHost(cfg)
	_, port, _ := net.SplitHostPort(l.tcp.Addr().String())
	fqdn := cfg.FQDN
	if fqdn == "" {
		fqdn = cfg.Overlay
	}
	return node.Announce(ctx, overlay.ServiceEntry{Service: overlay.ServiceProxy,
		URIs: []string{"sip:" + net.JoinHostPort(host, port) + ";transport=tcp", "sip:" + net.JoinHostPort(host, port) + ";transport=udp"},
		Data: map[string]string{"fqdn": fqdn}})
}

// sipAliases lists this machine's addresses when SIP listens on all of
// them: a phone may address the peer by any.
func sipAliases(cfg Config) []string {
	host, _, err := net.SplitHostPort(cfg.SIP)
	if err != nil || (host != "" && !net.ParseIP(host).IsUnspecified()) {
		return nil
	}
	out := []string{"localhost"}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}
