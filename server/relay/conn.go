package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/transport/v5/reuseport"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

// connectTimeout bounds an RFC 6062 Connect to a peer; §5.2 wants at least
// 30 seconds before 447.
const connectTimeout = 30 * time.Second

// maxPortTries bounds the binds tried for one allocation.
const maxPortTries = 256

// maxOwnPortLogs bounds the own-port refusals logged per allocation: a
// client spraying the relay's own ports is logged a few times and counted
// every time.
const maxOwnPortLogs = 8

// relayGen is the turn.RelayAddressGenerator of every listener: relayed
// sockets in [PortMin, PortMax] on BindIP, advertised as RelayIP, each
// wrapped to count bytes, cap bandwidth and keep the relay's own ports out
// of reach.
type relayGen struct{ s *Server }

var _ turn.RelayAddressGenerator = relayGen{}

func (g relayGen) Validate() error { return nil }

func (g relayGen) family(network string) error {
	if strings.HasSuffix(network, "6") == g.s.cfg.RelayIP.Is4() {
		return fmt.Errorf("%w: %s", errFamily, network)
	}
	return nil
}

// ports yields the ports to try: the requested one (RFC 8656 EVEN-PORT
// reservations) if it is in range, else up to maxPortTries consecutive
// ports from a random start (RFC 8656 §7.2 wants the choice
// unpredictable), so a small range is searched exhaustively even when it
// is nearly full.
func (g relayGen) ports(requested int) []int {
	lo, hi := int(g.s.cfg.PortMin), int(g.s.cfg.PortMax)
	if requested != 0 {
		if requested < lo || requested > hi {
			return nil
		}
		return []int{requested}
	}
	size := hi - lo + 1
	start := rand.IntN(size)
	out := make([]int, min(size, maxPortTries))
	for i := range out {
		out[i] = lo + (start+i)%size
	}
	return out
}

func (g relayGen) acquire(user string) (*allocState, error) {
	release, reason, ok := g.s.allocs.acquire(user)
	if !ok {
		g.s.refuse(reason, "user", user)
		return nil, fmt.Errorf("%w: %s", errAllocQuota, reason)
	}
	return g.s.newAllocState(user, release), nil
}

func (g relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if c.UserID == "" && c.Network == "udp4" && !g.s.cfg.RelayIP.Is4() {
		// pion's EVEN-PORT search (RFC 8656 §7.2) probes for a free port
		// with "udp4" and no user whatever the allocation's family; probe
		// in the relay's family instead.
		c.Network = "udp6"
	}
	if err := g.family(c.Network); err != nil {
		return nil, nil, err
	}
	if c.UserID == "" && c.RequestedPort == 0 {
		return g.probeEven(c.Network)
	}
	st, err := g.acquire(c.UserID)
	if err != nil {
		return nil, nil, err
	}
	if pc := g.s.held.take(c.RequestedPort); pc != nil { // reserve.go
		return g.relayed(pc, st), g.advertised(pc), nil
	}
	for _, port := range g.ports(c.RequestedPort) {
		pc, err := g.bind(c.Network, port)
		if err != nil {
			continue
		}
		return g.relayed(pc, st), g.advertised(pc), nil
	}
	st.close()
	return nil, nil, errNoPort
}

// advertised is pc's relayed address as clients see it: RelayIP, which a
// host behind 1:1 NAT does not bind.
func (g relayGen) advertised(pc net.PacketConn) *net.UDPAddr {
	return &net.UDPAddr{IP: g.s.cfg.RelayIP.AsSlice(), Port: pc.LocalAddr().(*net.UDPAddr).Port}
}

// relayed wraps an allocation's socket and counts it.
func (g relayGen) relayed(pc net.PacketConn, st *allocState) net.PacketConn {
	growBuffers(pc)
	g.s.metrics.allocations.WithLabelValues("udp").Inc()
	st.onClose = func() { g.s.metrics.allocations.WithLabelValues("udp").Dec() }
	return newRelayPacketConn(pc, st)
}

// AllocateListener makes an RFC 6062 TCP allocation's relayed listener.
// SO_REUSEPORT lets Connect dial out from the same address (AllocateConn).
func (g relayGen) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if err := g.family(c.Network); err != nil {
		return nil, nil, err
	}
	st, err := g.acquire(c.UserID)
	if err != nil {
		return nil, nil, err
	}
	lc := net.ListenConfig{Control: reuseport.Control}
	for _, port := range g.ports(c.RequestedPort) {
		ln, err := lc.Listen(context.Background(), c.Network, net.JoinHostPort(g.s.cfg.BindIP.String(), strconv.Itoa(port)))
		if err != nil {
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		g.s.metrics.allocations.WithLabelValues("tcp").Inc()
		g.s.tcpAllocs.Store(port, st)
		st.onClose = func() {
			g.s.tcpAllocs.CompareAndDelete(port, st)
			g.s.metrics.allocations.WithLabelValues("tcp").Dec()
		}
		return &relayListener{Listener: ln, st: st},
			&net.TCPAddr{IP: g.s.cfg.RelayIP.AsSlice(), Port: port}, nil
	}
	st.close()
	return nil, nil, errNoPort
}

// AllocateConn dials a peer for an RFC 6062 Connect, from the allocation's
// relayed port. It binds BindIP, not the advertised address pion passes
// (which a host behind 1:1 NAT does not have).
func (g relayGen) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	remote, err := netip.ParseAddrPort(c.RemoteAddr.String())
	if err != nil {
		return nil, err
	}
	if g.s.ownPort(remote) {
		g.s.refuse(reasonOwnPort, "user", c.UserID, "peer", remote.String(), "transport", "tcp")
		return nil, errRefused
	}
	local, ok := c.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("%w: relayed address %v", errFamily, c.LocalAddr)
	}
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: g.s.cfg.BindIP.AsSlice(), Port: local.Port},
		Control:   reuseport.Control,
		Timeout:   connectTimeout,
	}
	conn, err := d.Dial(c.Network, remote.String())
	if err != nil {
		return nil, err
	}
	st, ok := g.s.tcpAllocs.Load(local.Port)
	if !ok { // the allocation closed meanwhile
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	return &relayConn{Conn: conn, st: st.(*allocState)}, nil
}

// allocState is what the wrapped sockets of one allocation share.
type allocState struct {
	s       *Server
	user    string
	in, out *rate.Limiter // nil: no cap
	release func()
	onClose func()
	once    sync.Once

	mu      sync.Mutex
	ownLogs int
}

func (s *Server) newAllocState(user string, release func()) *allocState {
	st := &allocState{s: s, user: user, release: release}
	if bw := s.cfg.Bandwidth; bw > 0 {
		// A burst of one second, and at least one maximal datagram so a
		// single large packet can pass.
		burst := int(max(bw, 65536))
		st.in = rate.NewLimiter(rate.Limit(bw), burst)
		st.out = rate.NewLimiter(rate.Limit(bw), burst)
	}
	return st
}

func (st *allocState) close() {
	st.once.Do(func() {
		st.release()
		if st.onClose != nil {
			st.onClose()
		}
	})
}

// sendAllowed applies the own-port rule and the outbound cap to n bytes to
// ap; a refused datagram is dropped silently, like a firewall would.
func (st *allocState) sendAllowed(ap netip.AddrPort, n int) bool {
	if st.s.ownPort(ap) {
		st.s.metrics.refusals.WithLabelValues(reasonOwnPort).Inc()
		st.mu.Lock()
		log := st.ownLogs < maxOwnPortLogs
		st.ownLogs++
		st.mu.Unlock()
		if log {
			st.s.log.Info("relay refused", "reason", reasonOwnPort, "user", st.user, "peer", ap.String())
		}
		return false
	}
	if st.out != nil && !st.out.AllowN(time.Now(), n) {
		st.s.metrics.dropped.WithLabelValues(dirToPeer).Inc()
		return false
	}
	return true
}

// relayPacketConn is a UDP allocation's relayed socket.
type relayPacketConn struct {
	net.PacketConn
	sock *udpSocket // the same socket's per-datagram I/O; nil if it is not a *net.UDPConn
	st   *allocState
}

func newRelayPacketConn(pc net.PacketConn, st *allocState) *relayPacketConn {
	c := &relayPacketConn{PacketConn: pc, st: st}
	if udp, ok := pc.(*net.UDPConn); ok {
		sock := newUDPSocket(udp, relayAddrSlots)
		c.sock = &sock
	}
	return c
}

func (c *relayPacketConn) readFrom(p []byte) (int, net.Addr, error) {
	if c.sock == nil {
		return c.PacketConn.ReadFrom(p)
	}
	return c.sock.readFrom(p)
}

// ReadFrom returns the next datagram from a peer within the inbound cap.
func (c *relayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.readFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.st.in != nil && !c.st.in.AllowN(time.Now(), n) {
			c.st.s.metrics.dropped.WithLabelValues(dirFromPeer).Inc()
			continue
		}
		c.st.s.metrics.count(dirFromPeer, n)
		return n, addr, nil
	}
}

func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, err := addrPortOf(addr)
	if err != nil {
		return 0, err
	}
	if !c.st.sendAllowed(ap, len(p)) {
		return len(p), nil
	}
	var n int
	if c.sock != nil {
		n, err = c.sock.writeTo(p, addr)
	} else {
		n, err = c.PacketConn.WriteTo(p, addr)
	}
	c.st.s.metrics.count(dirToPeer, n)
	return n, err
}

func (c *relayPacketConn) Close() error {
	c.st.close()
	return c.PacketConn.Close()
}

// relayListener is a TCP allocation's relayed listener (RFC 6062 §5.3:
// peers connect to it).
type relayListener struct {
	net.Listener
	st *allocState
}

func (l *relayListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &relayConn{Conn: conn, st: l.st}, nil
}

func (l *relayListener) Close() error {
	l.st.close()
	return l.Listener.Close()
}

// relayConn is an RFC 6062 peer data connection. Over the cap it slows
// down rather than drops: TCP has no datagrams to drop.
type relayConn struct {
	net.Conn
	st *allocState
}

func (c *relayConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.st.s.metrics.count(dirFromPeer, n)
		wait(c.st.in, n)
	}
	return n, err
}

func (c *relayConn) Write(p []byte) (int, error) {
	wait(c.st.out, len(p))
	n, err := c.Conn.Write(p)
	c.st.s.metrics.count(dirToPeer, n)
	return n, err
}

// wait blocks until l lets n bytes through.
func wait(l *rate.Limiter, n int) {
	if l == nil {
		return
	}
	for n > 0 {
		k := min(n, l.Burst())
		_ = l.WaitN(context.Background(), k)
		n -= k
	}
}
