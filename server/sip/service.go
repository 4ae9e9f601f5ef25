package sip

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/p2psip/p2psip/internal/udpraw"
)

// Service is the peer's SIP element: registrar and proxy.
type Service struct {
	cfg    Config
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	flows  *flows
	// dialogs are the dialogs whose media this peer bridges.
	dialogs bridgedDialogs
	m       *metrics
	rrKey   []byte // keys the dialog tokens in Record-Route
	// tokenMACs holds HMAC-SHA256 hashes keyed with rrKey (tokenFor).
	tokenMACs sync.Pool
	// peerHost names this peer on the wire toward other peers
	// (peername.go); links carries SIP to them (nil without Config.Peers).
	peerHost string
	accepted *acceptedKept // 2xx relayed to INVITEs, for their retransmissions
	order    *dialogOrder  // in-dialog requests in the order they came (order.go)
	// respOrder keeps a branch's provisional responses ahead of those
	// read after them (resporder.go).
	respOrder *responseOrder
	links     *peerLinks
	// peerDest returns the address of a live stream to a node (links'
	// ensure); tests replace it to keep traffic off the network.
	peerDest func(ctx context.Context, node string) (string, error)

	// sendStateless sends a request outside any transaction (ACK of a
	// 2xx); tests replace it to keep traffic off the network.
	sendStateless func(*sip.Request) error

	mu      sync.Mutex
	ports   map[string]int // guarded by mu; lower-case transport → listen port
	closers []func() error // guarded by mu; run by Close
	udpAddr string         // guarded by mu; the UDP socket's local address
	udpIP   net.IP         // guarded by mu; udpAddr's IP, parsed once
	udpPort int            // guarded by mu; udpAddr's port
}

var setSipgoGlobals sync.Once

// New builds the service; serve it with ServeUDP, ServeTCP and ServeTLS.
func New(cfg Config) (*Service, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Both settings below are process-wide and read by every running
	// service's transports, so they are made once (tests start several
	// peers in one process; the first service's logger serves them all).
	setSipgoGlobals.Do(func() {
		// sipgo refuses to send a UDP message near the MTU, which loses
		// large responses (RFC 4475 longreq) that must go back over UDP
		// (§18.2.2); the kernel fragments them instead.
		sip.UDPMTUSize = 65535
		// sipgo's transaction and transport layers log through its
		// default logger; give them ours so --log-level applies to them.
		sip.SetDefaultLogger(cfg.Logger.With("component", "sipgo"))
	})
	peerHost, err := PeerHost(cfg.Locator.ID())
	if err != nil {
		return nil, fmt.Errorf("%w: node id %q: %w", ErrBadConfig, cfg.Locator.ID(), err)
	}
	var s *Service // for the hook below, which runs only once s serves
	order, m := newDialogOrder(), newMetrics(cfg.Registerer)
	respOrder := newResponseOrder(m.responsesReordered)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("p2psip"), sipgo.WithUserAgentHostname(cfg.Host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerTransports(sip.TransportsConfig{
			TCP: &sip.TransportTCP{DialerCreate: tcpDialer}}),
			// Registered before the transaction layer's handler, so it
			// runs first, on the reading goroutine (order.go).
			func(l *sip.TransportLayer) { l.OnMessage(order.stamp); l.OnMessage(respOrder.stamp) }),
		// A transaction whose stream (a peer's, or a device's TCP, TLS or
		// WebSocket flow) closes ends at once with a transport error
		// (RFC 3261 §17.1.4: 503 upstream) instead of waiting out Timer F.
		// A callee's 2xx retransmissions match no transaction here
		// (accepted.go).
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerTerminateOnConnClose(),
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) { s.onStrayResponse(r) })))
	if err != nil {
		return nil, fmt.Errorf("creating SIP user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("creating SIP server: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(cfg.Host), sipgo.WithClientLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("creating SIP client: %w", err)
	}
	s = &Service{cfg: cfg, log: cfg.Logger.With("component", "sip"), ua: ua, srv: srv, client: client,
		flows: newFlows(cfg.RegistrationsPerSource), ports: map[string]int{}, m: m, rrKey: make([]byte, 32),
		peerHost: peerHost, accepted: newAcceptedKept(), order: order, respOrder: respOrder}
	if cfg.Peers != nil {
		s.links = newPeerLinks(s, cfg.Peers, cfg.Locator.ID())
		s.peerDest = s.links.ensure
	}
	s.sendStateless = func(r *sip.Request) error { return client.WriteRequest(r, prebuilt) }
	if _, err := rand.Read(s.rrKey); err != nil {
		return nil, fmt.Errorf("generating dialog key: %w", err)
	}
	// An ACK is no transaction of its own to keep (udpfinal.go).
	srv.OnAck(s.inOrder(s.onAck))
	srv.OnRegister(s.inOrder(s.udpFinalHandler(s.onRegister)))
	srv.OnOptions(s.inOrder(s.udpFinalHandler(s.onOptions)))
	onRequest := s.inOrder(s.udpFinalHandler(s.onRequest))
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.BYE, sip.MESSAGE, sip.INFO, sip.REFER, sip.NOTIFY,
		sip.SUBSCRIBE, sip.UPDATE, sip.PRACK, sip.PUBLISH} {
		srv.OnRequest(m, onRequest)
	}
	srv.OnNoRoute(onRequest)
	return s, nil
}

// udpSocketBuffer is the receive and send buffer the UDP socket asks for
// (the kernel caps it at net.core.rmem_max / wmem_max). One goroutine
// reads the socket, and under load the Go scheduler may not run it for
// up to 10 ms (sysmon's netpoll); at thousands of messages a second the
// kernel's default 208 KiB overflows within that and drops requests and
// responses, which then cost retransmissions or fail calls.
const udpSocketBuffer = 4 << 20

// ServeUDP serves SIP on a UDP socket until it is closed.
func (s *Service) ServeUDP(pc net.PacketConn) error {
	if c, ok := pc.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		if err := c.SetReadBuffer(udpSocketBuffer); err != nil {
			s.log.Debug("enlarging the UDP receive buffer failed", "err", err)
		}
		if err := c.SetWriteBuffer(udpSocketBuffer); err != nil {
			s.log.Debug("enlarging the UDP send buffer failed", "err", err)
		}
	}
	s.setPort("udp", pc.LocalAddr())
	s.mu.Lock()
	s.udpAddr = pc.LocalAddr().String()
	if host, port, err := sip.ParseAddr(s.udpAddr); err == nil {
		s.udpIP, s.udpPort = net.ParseIP(host), port
	}
	s.mu.Unlock()
	g := &guardConn{PacketConn: pc, s: s, fin: newUDPFinals()}
	if uc, ok := pc.(*net.UDPConn); ok {
		g.raw = udpraw.New(uc)
	}
	g.reg = newUDPRegistrar(s, g)
	defer g.reg.stop()
	return s.srv.ServeUDP(g)
}

// ServeTCP serves SIP on a TCP listener; bindings registered over a
// connection go when it closes.
func (s *Service) ServeTCP(ln net.Listener) error {
	s.setPort("tcp", ln.Addr())
	return s.srv.ServeTCP(&closeNotifyListener{Listener: ln, onClose: s.connClosed("TCP"), s: s})
}

// ServeTLS serves SIP over TLS (ln must be a TLS listener).
func (s *Service) ServeTLS(ln net.Listener) error {
	s.setPort("tls", ln.Addr())
	return s.srv.ServeTLS(&closeNotifyListener{Listener: ln, onClose: s.connClosed("TLS"), s: s})
}

// ServePeers serves SIP to and from the other overlay peers, over the
// streams of Config.Peers, until Close.
func (s *Service) ServePeers() error {
	if s.links == nil {
		return fmt.Errorf("%w: no Peers configured", ErrBadConfig)
	}
	return s.srv.ServeTCP(s.links)
}

// PeerStreams counts the live SIP streams to other peers: how many peers
// have one, the streams on direct and on relayed connections, and the
// streams by the kind of connection they ride ("tcp", "quic", "wss",
// "relay"), which sets what a message costs.
func (s *Service) PeerStreams() (peers, direct, relayed int, byTransport map[string]int) {
	if s.links == nil {
		return 0, 0, 0, nil
	}
	return s.links.counts()
}

// tcpDialer is sipgo's TCP dialer, less dials to the made-up addresses of
// peer streams (peerlink.go): those go nowhere, so they fail at once.
func tcpDialer(laddr net.Addr) net.Dialer {
	return net.Dialer{Timeout: 30 * time.Second, LocalAddr: laddr,
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			if isSynthetic(address) {
				return fmt.Errorf("%w: no stream to the peer at %s", errPeerGone, address)
			}
			return nil
		}}
}

// Close stops the service's transports.
func (s *Service) Close() error {
	if s.links != nil {
		_ = s.links.Close()
	}
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range closers {
		_ = c()
	}
	return s.ua.Close()
}

func (s *Service) setPort(transport string, a net.Addr) {
	_, p, _ := net.SplitHostPort(a.String())
	port, _ := strconv.Atoi(p)
	s.mu.Lock()
	s.ports[transport] = port
	s.mu.Unlock()
}

func (s *Service) port(transport string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[transport]
}

// selfURI is this peer's SIP URI for Path and Record-Route over
// transport (RFC 3261 §16.6 step 4: lr, and the transport it listens on).
func (s *Service) selfURI(transport string) sip.Uri {
	t := sip.NetworkToLower(transport)
	if s.port(t) == 0 {
		t = "udp"
	}
	return sip.Uri{Scheme: "sip", Host: s.cfg.Host, Port: s.port(t),
		UriParams: sip.HeaderParams{{K: "transport", V: t}, {K: "lr", V: ""}}}
}

// peerURI is this peer's URI toward other peers (Path, Record-Route):
// its node name, which they resolve to a stream (peerlink.go).
func (s *Service) peerURI() sip.Uri {
	return sip.Uri{Scheme: "sip", Host: s.peerHost, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}
}

// isPeerHost reports whether host is this peer's node name.
func (s *Service) isPeerHost(host string) bool { return strings.EqualFold(host, s.peerHost) }

// isSelf reports whether u names this peer.
func (s *Service) isSelf(u sip.Uri) bool {
	if s.isPeerHost(u.Host) {
		return true
	}
	if u.Host != s.cfg.Host && !slices.Contains(s.cfg.Aliases, u.Host) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ports {
		if u.Port == p || (u.Port == 0 && p == 5060) {
			return true
		}
	}
	return false
}

// connClosed drops the bindings of a closed connection (RFC 5626 §5.4:
// a flow that fails is gone) and withdraws them from the overlay.
func (s *Service) connClosed(transport string) func(remote string) {
	return func(remote string) {
		for _, fl := range s.flows.dropSource(transport, remote) {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			if err := s.cfg.Locator.Unregister(ctx, fl.aor, fl.instance); err != nil {
				s.log.Debug("withdrawing binding of closed connection", "aor", fl.aor, "err", err)
			}
			cancel()
			s.log.Info("connection closed: binding removed", "aor", fl.aor, "contact", fl.contact)
		}
	}
}

// respond answers a server transaction, logging a failure to send.
func (s *Service) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	if rt, ok := tx.(*regTx); ok && rt.raw != nil {
		if out, ok := rawAnswer(rt.raw, code, reason, hdrs); ok {
			if err := rt.answer(out, code < 200); err != nil {
				s.log.Debug("sending response failed", "code", code, "err", err)
			}
			s.m.responses.WithLabelValues(string(req.Method), strconv.Itoa(code/100)+"xx").Inc()
			return
		}
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.SipVersion = "SIP/2.0" // never echo a version we do not speak
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("sending response failed", "code", code, "err", err)
	}
	s.m.responses.WithLabelValues(string(req.Method), strconv.Itoa(code/100)+"xx").Inc()
}

// setLocalAddr makes a request leave from this peer's SIP socket (UDP) or
// address (TCP, TLS): a fresh socket on a wildcard address would send
// from whatever source the kernel picks, and the next hop would answer
// there (RFC 3261 §18.2.2 answers to the Via port at the source IP).
func (s *Service) setLocalAddr(out *sip.Request, transport string) {
	s.mu.Lock()
	ip, port := s.udpIP, s.udpPort
	s.mu.Unlock()
	if ip == nil {
		return
	}
	if strings.EqualFold(transport, "UDP") {
		out.Laddr = sip.Addr{IP: ip, Port: port}
		return
	}
	if !ip.IsUnspecified() {
		out.Laddr = sip.Addr{IP: ip}
	}
}
