package relay

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

// Server is a running relay.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	turn      *turn.Server
	keys      *keyring
	mintQuota *mintLimiter
	allocs    *allocCounter
	tcpAllocs sync.Map // relayed port (int) → *allocState of RFC 6062 allocations
	held      heldPorts
	now       func() time.Time

	stop      chan struct{}
	closeOnce sync.Once
	done      sync.WaitGroup
}

// New starts serving TURN on cfg's sockets. It owns them from then on,
// whether it succeeds or not.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		closeAll(cfg)
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "relay"),
		metrics:   newMetrics(cfg.Registerer),
		keys:      &keyring{},
		mintQuota: &mintLimiter{limit: cfg.MintsPerMinute},
		now:       cfg.now,
		stop:      make(chan struct{}),
	}
	s.allocs = &allocCounter{perUser: cfg.AllocationsPerUser, total: cfg.AllocationsTotal, byUser: map[string]int{},
		onChange: func(int) {}}
	if len(cfg.StaticSecret) > 0 {
		s.keys.static = cfg.StaticSecret
	} else {
		s.keys.cur = newSecret(0)
	}

	gen := relayGen{s}
	sc := turn.ServerConfig{
		Realm:              cfg.Realm,
		AuthHandler:        s.authHandler,
		QuotaHandler:       s.quotaHandler,
		EventHandler:       s.eventHandler(),
		LoggerFactory:      pionLogger{s.log},
		AllocationLifetime: cfg.AllocationLifetime,
		// RFC 6156 §4.2: without REQUESTED-ADDRESS-FAMILY an allocation is
		// IPv4. pion otherwise follows the family of the listener, and an
		// IPv6 client of a dual-stack listener would ask for a family an
		// IPv4 relay address does not have.
		StrictAddressFamily: cfg.RelayIP.Is4(),
	}
	for _, pc := range cfg.PacketConns {
		growBuffers(pc)
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: fastListen(pc), RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler})
	}
	for _, l := range cfg.Listeners {
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen, PermissionHandler: s.permissionHandler})
	}
	ts, err := turn.NewServer(sc)
	if err != nil {
		closeAll(cfg)
		return nil, fmt.Errorf("relay: starting TURN: %w", err)
	}
	s.turn = ts
	if s.keys.static == nil {
		s.done.Add(1)
		go s.rotateLoop()
	}
	s.log.Info("relay started", "relay_ip", cfg.RelayIP, "bind_ip", cfg.BindIP,
		"ports", fmt.Sprintf("%d-%d", cfg.PortMin, cfg.PortMax), "addrs", s.Addrs(),
		"private_peers", cfg.AllowPrivatePeers, "bandwidth", cfg.Bandwidth,
		"allocations_per_user", cfg.AllocationsPerUser, "allocations_total", cfg.AllocationsTotal)
	return s, nil
}

func closeAll(cfg Config) {
	for _, pc := range cfg.PacketConns {
		_ = pc.Close()
	}
	for _, l := range cfg.Listeners {
		_ = l.Close()
	}
}

// Addrs lists the addresses TURN is served on: "udp 1.2.3.4:3478",
// "tcp 1.2.3.4:3478".
func (s *Server) Addrs() []string {
	var out []string
	for _, pc := range s.cfg.PacketConns {
		out = append(out, "udp "+pc.LocalAddr().String())
	}
	for _, l := range s.cfg.Listeners {
		out = append(out, l.Addr().Network()+" "+l.Addr().String())
	}
	return out
}

// Realm is the realm clients must use.
func (s *Server) Realm() string { return s.cfg.Realm }

// Close stops the server, its sockets and every allocation.
func (s *Server) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		close(s.stop)
		err = s.turn.Close()
		s.held.closeAll()
		s.done.Wait()
	})
	return err
}

// rotateLoop replaces the secret every SecretRotation.
func (s *Server) rotateLoop() {
	defer s.done.Done()
	t := time.NewTicker(s.cfg.SecretRotation)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.keys.rotate()
			s.log.Info("relay secret rotated; the previous one is accepted for one more period")
		}
	}
}

// eventHandler keeps the permission gauge and counts failed
// MESSAGE-INTEGRITY checks (wrong passwords: the auth callback only sees
// the username).
func (s *Server) eventHandler() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _ string, method string, verdict bool) {
			if !verdict {
				s.metrics.authFailures.WithLabelValues("bad_password").Inc()
				s.log.Debug("relay auth failed", "reason", "bad_password", "username", username,
					"method", method, "client", addrString(src))
			}
		},
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) {
			s.metrics.permissions.Inc()
			s.metrics.permsCreated.Inc()
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) {
			s.metrics.permissions.Dec()
		},
	}
}

// udpBuffer is the kernel buffer the relay asks for on its UDP sockets
// (capped by net.core.rmem_max/wmem_max): every client sends to one
// listening socket, and the default ≈ 208 KiB overflows in bursts long
// before the CPU is busy.
const udpBuffer = 4 << 20

// growBuffers enlarges a UDP socket's kernel buffers; failures are
// harmless (the default stays).
func growBuffers(pc net.PacketConn) {
	if u, ok := pc.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(udpBuffer)
		_ = u.SetWriteBuffer(udpBuffer)
	}
}
