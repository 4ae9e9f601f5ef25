package bridge

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/p2psip/p2psip/internal/udpraw"
)

// plainLeg is the socket (or relay allocation) of the phone's side.
// Symmetric RTP (RFC 4961): the bridge sends to the address the phone's
// SDP gave until a valid packet arrives, then to where that packet came
// from (the phone may sit behind NAT); a new SDP re-arms the latch.
type plainLeg struct {
	conn  net.PacketConn
	raw   *udpraw.Conn   // conn's raw I/O, nil for a relay or off Linux
	relay RelayConn      // nil when the leg is on this peer's own socket
	port  int            // own port to give back, 0 for a relay
	addr  netip.AddrPort // what the SDP advertises
	pool  *portPool

	mu          sync.Mutex
	rtpDst      netip.AddrPort // guarded by mu; unspecified address: send nothing
	rtcpDst     netip.AddrPort // guarded by mu
	rtpLatched  bool           // guarded by mu
	rtcpLatched bool           // guarded by mu

	lastTo atomic.Pointer[sendAddr] // write's last destination, for conns other than *net.UDPConn
}

// sendAddr is a destination as both an AddrPort and the net.Addr a
// PacketConn's WriteTo takes.
type sendAddr struct {
	ap   netip.AddrPort
	addr net.Addr
}

func (b *Bridge) openLeg(ctx context.Context, l Leg) (*plainLeg, error) {
	if l.Relay != nil {
		rc, err := l.Relay(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoRelay, err)
		}
		ua, ok := rc.LocalAddr().(*net.UDPAddr)
		if !ok {
			_ = rc.Close()
			return nil, fmt.Errorf("%w: relayed address %v is not UDP", ErrNoRelay, rc.LocalAddr())
		}
		ap := ua.AddrPort()
		return &plainLeg{conn: rc, relay: rc, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
	}
	if !l.IP.IsValid() || l.IP.IsUnspecified() {
		return nil, fmt.Errorf("bridge: the RTP leg needs an address the phone can reach")
	}
	c, port, err := b.ports.listen(b.cfg.ListenIP)
	if err != nil {
		return nil, err
	}
	return &plainLeg{conn: c, raw: udpraw.New(c), port: port, pool: b.ports, addr: netip.AddrPortFrom(l.IP.Unmap(), uint16(port))}, nil
}

// setFar takes the phone's new description: send there, and re-arm the
// latch. On a relay the permission is installed at once, so the phone's
// first packets (early media, or a phone that waits to hear before it
// sends) are not dropped by the relay (RFC 8656 §9).
func (l *plainLeg) setFar(fe *farEnd) error {
	l.mu.Lock()
	l.rtpDst, l.rtcpDst = fe.rtp, fe.rtcp
	l.rtpLatched, l.rtcpLatched = false, false
	l.mu.Unlock()
	if l.relay == nil || !fe.rtp.Addr().IsValid() || fe.rtp.Addr().IsUnspecified() {
		return nil
	}
	addrs := []net.Addr{net.UDPAddrFromAddrPort(fe.rtp)}
	if fe.rtcp.Addr() != fe.rtp.Addr() {
		addrs = append(addrs, net.UDPAddrFromAddrPort(fe.rtcp))
	}
	return l.relay.CreatePermission(addrs...)
}

// learn latches to src, the source of a valid RTP (or RTCP) packet.
func (l *plainLeg) learn(src netip.AddrPort, rtcp bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.rtpDst.Addr().IsValid() || l.rtpDst.Addr().IsUnspecified() {
		return // on hold: nothing to send anyway
	}
	if rtcp {
		if !l.rtcpLatched {
			l.rtcpDst, l.rtcpLatched = src, true
		}
		return
	}
	if !l.rtpLatched {
		l.rtpDst, l.rtpLatched = src, true
	}
}

// dest is where RTP (or RTCP) goes now; ok is false on hold.
func (l *plainLeg) dest(rtcp bool) (netip.AddrPort, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.rtpDst
	if rtcp {
		d = l.rtcpDst
	}
	return d, d.Addr().IsValid() && !d.Addr().IsUnspecified() && d.Port() != 0
}

func (l *plainLeg) write(b []byte, to netip.AddrPort) error {
	if l.raw != nil {
		_, err := l.raw.WriteToAddrPort(b, to)
		return err
	}
	if u, ok := l.conn.(*net.UDPConn); ok {
		_, err := u.WriteToUDPAddrPort(b, to) // no net.Addr per packet
		return err
	}
	// A relay's WriteTo takes a net.Addr: made once per destination, not
	// per packet.
	d := l.lastTo.Load()
	if d == nil || d.ap != to {
		d = &sendAddr{ap: to, addr: net.UDPAddrFromAddrPort(to)}
		l.lastTo.Store(d)
	}
	_, err := l.conn.WriteTo(b, d.addr)
	return err
}

// read reads one datagram and its source.
func (l *plainLeg) read(b []byte) (int, netip.AddrPort, error) {
	if l.raw != nil {
		n, ap, err := l.raw.ReadFrom(b)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
	}
	if u, ok := l.conn.(*net.UDPConn); ok {
		n, ap, err := u.ReadFromUDPAddrPort(b)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
	}
	n, a, err := l.conn.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	return n, addrPortOf(a), nil
}

func (l *plainLeg) close() {
	_ = l.conn.Close()
	if l.pool != nil {
		l.pool.release(l.port)
	}
}

// addrPortOf turns a ReadFrom address into an AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
