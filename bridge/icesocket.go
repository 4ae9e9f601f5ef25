package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/p2psip/p2psip/internal/udpraw"
	"github.com/pion/ice/v4"
)

// iceSocket is one socket of the shared ICE port. The bridge reads it
// itself: SRTP from a browser whose call has its keys is decrypted and
// relayed to the phone right on this socket's reader goroutine (see
// fastTable). Everything else, ICE checks, DTLS, SRTCP and SRTP before the
// keys are known, goes to pion's UDP mux, which reads an iceSocket as its
// PacketConn.
//
// Why not leave the socket to pion: an RTP packet from a browser passed
// four goroutines there (the mux's reader, the candidate's, the DTLS/SRTP
// demultiplexer's and the SRTP session's, each handing over through a
// buffer) before the bridge's own reader got it; at a few hundred calls
// those hand-overs cost more CPU than the decryption.
type iceSocket struct {
	conn *net.UDPConn
	raw  *udpraw.Conn // conn's raw I/O (recvmmsg batches, sendto), nil off Linux
	fast *fastTable
	m    *metrics

	slow      chan slowPacket // to pion's mux
	done      chan struct{}
	closeOnce sync.Once
}

// slowPacket is a datagram for pion.
type slowPacket struct {
	b    []byte
	from netip.AddrPort
}

// slowQueue bounds what waits for pion's reader: STUN, DTLS and RTCP
// arrive a few times a second per call, so a full queue means pion's
// reader is stuck, and dropping is what the kernel would do.
const slowQueue = 1024

func newICESocket(c *net.UDPConn, fast *fastTable, m *metrics) *iceSocket {
	s := &iceSocket{conn: c, raw: udpraw.New(c), fast: fast, m: m, slow: make(chan slowPacket, slowQueue), done: make(chan struct{})}
	go s.run()
	return s
}

// run reads the socket until it closes.
func (s *iceSocket) run() {
	buf := make([]byte, 8192) // pion's receive MTU for ICE
	for {
		n, from, err := s.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.Close()
				return
			}
			continue // ICMP errors surface here on Linux; the socket is fine
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if s.fast.relay(s, buf[:n], from) {
			continue
		}
		select {
		case s.slow <- slowPacket{b: append([]byte(nil), buf[:n]...), from: from}:
		default:
			s.m.dropped.WithLabelValues("ice_queue_full").Inc()
		}
	}
}

// read reads one datagram: from the current recvmmsg batch where there is
// one. Every browser sends to this one socket, so datagrams do queue, and
// a batch saves the system call (and the wake-up) per datagram.
func (s *iceSocket) read(b []byte) (int, netip.AddrPort, error) {
	if s.raw != nil {
		return s.raw.ReadFrom(b)
	}
	return s.conn.ReadFromUDPAddrPort(b)
}

// write sends one datagram.
func (s *iceSocket) write(b []byte, to netip.AddrPort) (int, error) {
	if s.raw != nil {
		return s.raw.WriteToAddrPort(b, to)
	}
	return s.conn.WriteToUDPAddrPort(b, to)
}

// ReadFromAddrPort hands pion the next datagram the fast path left
// (ice.AddrPortReaderWriter: no net.Addr per packet).
func (s *iceSocket) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-s.slow:
		return copy(b, p.b), p.from, nil
	case <-s.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

// WriteToAddrPort sends for pion (ICE checks and answers, DTLS, SRTCP).
func (s *iceSocket) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return s.write(b, to)
}

// ReadFrom is net.PacketConn's read, for callers that do not take the
// AddrPort form.
func (s *iceSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := s.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo is net.PacketConn's write.
func (s *iceSocket) WriteTo(b []byte, to net.Addr) (int, error) { return s.conn.WriteTo(b, to) }

// Close closes the socket and wakes pion's reader.
func (s *iceSocket) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return s.conn.Close()
}

// LocalAddr is the socket's address (pion names its host candidate after it).
func (s *iceSocket) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// SetDeadline and SetReadDeadline only reach the socket's write side: the
// reads pion makes come from the queue, and pion sets no read deadline.
func (s *iceSocket) SetDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }

// SetReadDeadline: see SetDeadline.
func (s *iceSocket) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline bounds pion's writes (it aborts stuck ones this way).
func (s *iceSocket) SetWriteDeadline(t time.Time) error { return s.conn.SetWriteDeadline(t) }

// addr is the socket's local address.
func (s *iceSocket) addr() netip.AddrPort {
	ap := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// iceReadBuffer is the shared ICE socket's receive buffer (SO_RCVBUF; the
// kernel caps it at net.core.rmem_max). Every browser's packets queue in
// this one socket, 50 a second per call: the default 208 KiB holds
// about 20 ms of them at 250 calls, less than one GC cycle or a busy run
// queue on a single P, and the kernel drops the rest.
const iceReadBuffer = 4 << 20

// listenICE opens the shared ICE port: the highest free port of the range
// (plain legs take ports from the bottom), on cfg.ICEIPs, or by default on
// every interface address but link-local ones. An IPv6 address still in
// duplicate address detection cannot be bound yet (a host or namespace that
// just came up): then the default port serves IPv4 alone rather than
// failing the peer.
func listenICE(cfg Config) ([]*net.UDPConn, int, error) {
	if len(cfg.ICEIPs) > 0 {
		conns, port, err := listenICEOn(cfg, cfg.ICEIPs)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, 0, fmt.Errorf("bridge: %w (not an address of this host, or an IPv6 one still in duplicate address detection)", err)
		}
		return conns, port, err
	}
	var lastErr error
	for _, v6 := range []bool{true, false} {
		ips, err := interfaceIPs(cfg.IncludeLoopback, v6)
		if err != nil {
			return nil, 0, err
		}
		if len(ips) == 0 {
			// Nothing but loopback (a namespace with only lo, a host
			// whose network is not up yet): the peer still serves SIP and
			// the overlay; New warns that no browser leg can be bridged.
			return nil, 0, nil
		}
		conns, port, err := listenICEOn(cfg, ips)
		if err == nil {
			return conns, port, nil
		}
		lastErr = err
	}
	return nil, 0, lastErr
}

// listenICEOn binds the same port on each of ips, trying the top 64 ports
// of the range.
func listenICEOn(cfg Config, ips []netip.Addr) ([]*net.UDPConn, int, error) {
	var lastErr error
	for p := cfg.PortMax; p >= cfg.PortMin && p > cfg.PortMax-64; p-- {
		conns := make([]*net.UDPConn, 0, len(ips))
		var err error
		for _, ip := range ips {
			var c *net.UDPConn
			if c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p)))); err != nil {
				err = fmt.Errorf("ICE address %s: %w", ip, err)
				break
			}
			_ = c.SetReadBuffer(iceReadBuffer)
			conns = append(conns, c)
		}
		if err == nil {
			return conns, p, nil
		}
		for _, c := range conns {
			_ = c.Close()
		}
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, 0, err
		}
		lastErr = err
	}
	return nil, 0, fmt.Errorf("bridge: no free port for ICE at the top of the range %d-%d: %w", cfg.PortMin, cfg.PortMax, lastErr)
}

// interfaceIPs are the addresses of the interfaces that are up, without
// link-local ones (a browser on another host cannot know their zone),
// loopback only when asked, IPv6 only when asked.
func interfaceIPs(loopback, v6 bool) ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("bridge: listing interfaces: %w", err)
	}
	var ips []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || (ifc.Flags&net.FlagLoopback != 0 && !loopback) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() ||
				(ip.IsLoopback() && !loopback) || (ip.Is6() && !v6) {
				continue
			}
			ips = append(ips, ip)
		}
	}
	return ips, nil
}

// newICEMux wraps each socket for the fast path and pion's mux over them.
func newICEMux(conns []*net.UDPConn, fast *fastTable, m *metrics, cfg Config) (*ice.MultiUDPMuxDefault, []*iceSocket) {
	socks := make([]*iceSocket, len(conns))
	muxes := make([]ice.UDPMux, len(conns))
	for i, c := range conns {
		socks[i] = newICESocket(c, fast, m)
		muxes[i] = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: socks[i], Logger: pionLogs{cfg.Logger}.NewLogger("ice")})
	}
	return ice.NewMultiUDPMuxDefault(muxes...), socks
}
