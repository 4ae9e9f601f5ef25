package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/p2psip/p2psip/server/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// selfTestBudget bounds the relay's start-up self-test.
const selfTestBudget = 15 * time.Second

// startRelay opens UDP and TCP on --turn and serves TURN there and on
// tlsTURN (the TURN connections of the HTTPS port's demultiplexer; nil
// until it is wired). The self-test runs in the background and logs its
// result: a relay that cannot allocate on itself through its public
// address is misconfigured (wrong --public-addr, closed ports), and the
// operator should read so at start rather than in a failed call.
func startRelay(cfg Config, tlsTURN net.Listener, reg prometheus.Registerer, log *slog.Logger) (*relay.Server, *selfTestResult, error) {
	relayIP, err := relayAddr(cfg)
	if err != nil {
		return nil, nil, err
	}
	var secret []byte
	if cfg.RelaySecretFile != "" {
		b, err := os.ReadFile(cfg.RelaySecretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--relay-secret-file: %w", err)
		}
		if secret = bytes.TrimSpace(b); len(secret) == 0 {
			return nil, nil, fmt.Errorf("--relay-secret-file %s is empty", cfg.RelaySecretFile)
		}
	}
	tcp, udp, err := listenUDPAndTCP(cfg.TURN)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on --turn %s (is another TURN server running? choose another address): %w", cfg.TURN, err)
	}
	rcfg := relay.Config{
		PacketConns:       []net.PacketConn{udp},
		Listeners:         []net.Listener{tcp},
		RelayIP:           relayIP,
		PortMin:           cfg.RelayPortMin,
		PortMax:           cfg.RelayPortMax,
		StaticSecret:      secret,
		AllowPrivatePeers: cfg.RelayPrivatePeers,
		Bandwidth:         cfg.RelayBandwidth,
		Logger:            log,
		Registerer:        reg,
	}
	if cfg.RelayBandwidth == 0 {
		rcfg.Bandwidth = -1 // the flag's 0 is "no cap"; the package's is "default"
	}
	if tlsTURN != nil {
		rcfg.Listeners = append(rcfg.Listeners, tlsTURN)
	}
	srv, err := relay.New(rcfg)
	if err != nil {
		return nil, nil, err
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	self := net.JoinHostPort(relayIP.String(), strconv.Itoa(port))
	res := &selfTestResult{}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), selfTestBudget)
		defer cancel()
		rtt, err := srv.SelfTest(ctx, self)
		res.set(rtt, err)
		if err != nil {
			log.Warn("relay self-test failed: clients may not reach this relay (check --public-addr and that the --turn and --relay-ports ports are open)",
				"addr", self, "err", err)
			return
		}
		log.Info("relay self-test passed", "addr", self, "rtt", rtt.Round(time.Microsecond))
	}()
	return srv, res, nil
}

// selfTestResult keeps the relay's start-up self-test for /api/overlay
// and p2psip status.
type selfTestResult struct {
	mu     sync.Mutex
	result string  // guarded by mu; "" while it runs, "ok" or the error
	rttMS  float64 // guarded by mu
}

func (r *selfTestResult) set(rtt time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.result = err.Error()
		return
	}
	r.result, r.rttMS = "ok", float64(rtt.Microseconds())/1000
}

func (r *selfTestResult) get() (string, float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result, r.rttMS
}

// relayAddr is the relayed address: --public-addr, else the first LAN
// IPv4 address (a relay for a LAN or a test bed).
func relayAddr(cfg Config) (netip.Addr, error) {
	s := cfg.PublicIP
	if s == "" {
		s = lanIP().String()
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--public-addr %q: %w", s, err)
	}
	return a.Unmap(), nil
}
