package relay

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/p2psip/p2psip/internal/udpraw"
)

// Sizes of the source-address caches (addrCache), in slots: one per
// listening socket (its clients) and one per relayed socket (its peers:
// a WebRTC allocation talks to one or two).
const (
	listenerAddrSlots = 1024
	relayAddrSlots    = 4
)

// addrCache keeps the *net.UDPAddr of recently seen sources, so that a
// socket's ReadFrom can hand pion a net.Addr without allocating one per
// datagram (net.UDPConn.ReadFrom allocates two objects per call). It is
// direct-mapped: a source that collides with another is rebuilt, nothing
// grows, so spoofed sources cost an allocation each and no memory.
//
// The same *net.UDPAddr is returned for every datagram of a source, so
// its readers must not modify it; pion and this package only read
// addresses.
type addrCache struct {
	seed  uint64
	slots []atomic.Pointer[cachedAddr]
}

type cachedAddr struct {
	ap   netip.AddrPort
	addr *net.UDPAddr
}

func newAddrCache(slots int) addrCache {
	return addrCache{seed: rand.Uint64(), slots: make([]atomic.Pointer[cachedAddr], slots)}
}

// udpAddr returns a *net.UDPAddr equal to the one net.UDPConn.ReadFrom
// would have returned for a datagram from ap.
func (c *addrCache) udpAddr(ap netip.AddrPort) *net.UDPAddr {
	b := ap.Addr().As16()
	h := binary.LittleEndian.Uint64(b[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[8:]), 31) ^
		uint64(ap.Port())<<40 ^ c.seed
	h *= 0x9e3779b97f4a7c15
	slot := &c.slots[(h>>32)%uint64(len(c.slots))]
	if e := slot.Load(); e != nil && e.ap == ap {
		return e.addr
	}
	a := net.UDPAddrFromAddrPort(ap)
	slot.Store(&cachedAddr{ap: ap, addr: a})
	return a
}

// addrPortOf is the netip form of a peer address pion hands a relayed
// socket (a *net.UDPAddr) without the string round trip, IPv4-mapped
// addresses unmapped as net.UDPAddr.String writes them.
func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	if u, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(u.IP); ok && u.Port >= 0 && u.Port <= 0xffff {
			return netip.AddrPortFrom(ip.Unmap().WithZone(u.Zone), uint16(u.Port)), nil
		}
	}
	return netip.ParseAddrPort(a.String())
}

// udpSocket is the I/O of one UDP socket the relay reads and writes per
// datagram: raw system calls where udpraw works, the socket's own methods
// elsewhere; no net.Addr is allocated per datagram either way (addrCache).
type udpSocket struct {
	udp   *net.UDPConn
	raw   *udpraw.Conn // nil: use udp
	addrs addrCache
}

func newUDPSocket(udp *net.UDPConn, slots int) udpSocket {
	return udpSocket{udp: udp, raw: udpraw.New(udp), addrs: newAddrCache(slots)}
}

func (s *udpSocket) readFrom(p []byte) (int, net.Addr, error) {
	var (
		n   int
		ap  netip.AddrPort
		err error
	)
	if s.raw != nil {
		n, ap, err = s.raw.ReadFrom(p)
	} else {
		n, ap, err = s.udp.ReadFromUDPAddrPort(p)
	}
	if err != nil {
		return n, nil, err
	}
	return n, s.addrs.udpAddr(ap), nil
}

func (s *udpSocket) writeTo(p []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok && s.raw != nil {
		return s.raw.WriteTo(p, u)
	}
	return s.udp.WriteTo(p, addr)
}

// listenConn is a TURN listening socket with udpSocket's ReadFrom and
// WriteTo; the rest is the socket's own.
type listenConn struct {
	net.PacketConn
	sock udpSocket
}

// fastListen wraps pc when it is a plain UDP socket.
func fastListen(pc net.PacketConn) net.PacketConn {
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	return &listenConn{PacketConn: pc, sock: newUDPSocket(udp, listenerAddrSlots)}
}

func (c *listenConn) ReadFrom(p []byte) (int, net.Addr, error) { return c.sock.readFrom(p) }

func (c *listenConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.sock.writeTo(p, addr) }
