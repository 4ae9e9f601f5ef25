//go:build !386

// 32-bit x86 Linux has no SYS_RECVFROM/SYS_SENDTO (socketcall): it uses the
// portable path of udpio_other.go.

package udpraw

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// Conn does a UDP socket's datagram I/O with raw recvmmsg (batched reads,
// batch_linux.go) and sendto system calls, through the socket's syscall.RawConn so that
// the runtime's network poller still waits for readiness and deadlines
// and Close still apply.
//
// Why: the sockets are non-blocking, so the calls never block, but
// net.UDPConn makes them as blocking system calls (entersyscall and
// exitsyscall around each). On a relay's or a bridge's one busy core that lets the
// runtime's sysmon thread find the P "in a system call" often enough to
// keep polling every 20 µs and hand the P to another thread, which costs
// more per relayed packet than the relaying itself (measured on the TURN
// relay, bench/README.md). RawSyscall skips that
// bookkeeping; it also builds no net.Addr, and the callers cache those
// (addrCache).
type Conn struct {
	udp *net.UDPConn
	rc  syscall.RawConn
	v6  bool // an AF_INET6 socket: IPv4 peers are written v4-mapped

	// One preallocated system call per direction, not one from a
	// sync.Pool per datagram (Get and Put cost more than the uncontended
	// lock). pion reads a socket from one goroutine, so rmu is never
	// contended; writes to a listening socket come from every
	// allocation's goroutine, but the socket's own write lock (taken in
	// RawConn.Write) serializes them anyway.
	rmu sync.Mutex
	rd  udpOp // a read past the batch (a buffer over maxBatchSlot)
	wmu sync.Mutex
	wr  udpOp

	// Batched reads (udpbatch_linux.go), under rmu.
	batch *recvBatch // nil while none is held
	want  int        // the slot size the read in progress needs
	errno syscall.Errno
	recv  func(fd uintptr) bool // doRecv, bound once
}

// New returns nil when c's family cannot be learnt; the callers then
// use c's own methods.
func New(c *net.UDPConn) *Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	domain := -1
	if err := rc.Control(func(fd uintptr) {
		domain, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil || (domain != syscall.AF_INET && domain != syscall.AF_INET6) {
		return nil
	}
	r := &Conn{udp: c, rc: rc, v6: domain == syscall.AF_INET6}
	r.rd.bind()
	r.wr.bind()
	r.recv = r.doRecv
	return r
}

// udpOp is one system call's arguments and results; its read and write
// methods are bound once so that RawConn.Read and Write get a func value
// without a closure allocated per datagram.
type udpOp struct {
	p     []byte
	n     int
	errno syscall.Errno
	sa    syscall.RawSockaddrAny
	salen uint32
	read  func(fd uintptr) bool
	write func(fd uintptr) bool
}

func (op *udpOp) bind() { op.read, op.write = op.doRead, op.doWrite }

func (op *udpOp) doRead(fd uintptr) bool {
	for {
		op.salen = syscall.SizeofSockaddrAny
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(op.p))), uintptr(len(op.p)), 0,
			uintptr(unsafe.Pointer(&op.sa)), uintptr(unsafe.Pointer(&op.salen)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller
		}
		op.n, op.errno = int(n), e
		return true
	}
}

func (op *udpOp) doWrite(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(op.p))), uintptr(len(op.p)), 0,
			uintptr(unsafe.Pointer(&op.sa)), uintptr(op.salen))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.n, op.errno = int(n), e
		return true
	}
}

// ReadFrom is ReadFromUDPAddrPort.
func (r *Conn) ReadFrom(p []byte) (int, netip.AddrPort, error) {
	r.rmu.Lock()
	if len(p) <= maxBatchSlot || !r.batch.empty() {
		return r.readBatched(p) // unlocks
	}
	op := &r.rd
	op.p = p
	err := r.rc.Read(op.read)
	op.p = nil // do not keep the caller's buffer alive
	n, errno := op.n, op.errno
	ap, ok := sockaddrAddrPort(&op.sa)
	r.rmu.Unlock()
	switch {
	case err != nil:
		return 0, netip.AddrPort{}, r.opError("read", nil, err)
	case errno != 0:
		return 0, netip.AddrPort{}, r.opError("read", nil, os.NewSyscallError("recvfrom", errno))
	case !ok:
		return 0, netip.AddrPort{}, r.opError("read", nil, errSockaddr)
	}
	return n, ap, nil
}

// WriteTo is WriteTo for a *net.UDPAddr. Addresses it does not take
// (zoned IPv6, no IP, the other family on an IPv4 socket) go the
// standard way.
func (r *Conn) WriteTo(p []byte, a *net.UDPAddr) (int, error) {
	r.wmu.Lock()
	if !r.wr.setSockaddr(a, r.v6) {
		r.wmu.Unlock()
		return r.udp.WriteTo(p, a)
	}
	n, err := r.sendLocked(p)
	if err != nil {
		return 0, r.opError("write", a, err)
	}
	return n, nil
}

// WriteToAddrPort is WriteTo for a netip.AddrPort (no net.Addr per
// datagram). Addresses it does not take (zoned IPv6, the other family on
// an IPv4 socket) go the standard way.
func (r *Conn) WriteToAddrPort(p []byte, to netip.AddrPort) (int, error) {
	r.wmu.Lock()
	if !r.wr.setAddrPort(to, r.v6) {
		r.wmu.Unlock()
		return r.udp.WriteToUDPAddrPort(p, to)
	}
	n, err := r.sendLocked(p)
	if err != nil {
		return 0, r.opError("write", net.UDPAddrFromAddrPort(to), err)
	}
	return n, nil
}

// sendLocked sends p to the address set in r.wr; r.wmu is held and is
// unlocked here.
func (r *Conn) sendLocked(p []byte) (int, error) {
	op := &r.wr
	op.p = p
	err := r.rc.Write(op.write)
	op.p = nil
	n, errno := op.n, op.errno
	r.wmu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("sendto", errno)
	}
	return n, nil
}

func (r *Conn) opError(op string, addr net.Addr, err error) error {
	var ne *net.OpError
	if errors.As(err, &ne) {
		return err
	}
	return &net.OpError{Op: op, Net: "udp", Source: r.udp.LocalAddr(), Addr: addr, Err: err}
}

// setSockaddr is setAddrPort for a *net.UDPAddr.
func (op *udpOp) setSockaddr(a *net.UDPAddr, v6 bool) bool {
	if a.Port < 0 || a.Port > 0xffff || a.Zone != "" || len(a.IP) == 0 {
		return false
	}
	return op.setAddrPort(a.AddrPort(), v6)
}

// setAddrPort sets the destination of the next sendto: false for an
// address the socket cannot take that way (zoned IPv6, IPv6 on an IPv4
// socket).
func (op *udpOp) setAddrPort(a netip.AddrPort, v6 bool) bool {
	ip := a.Addr()
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	port := [2]byte{byte(a.Port() >> 8), byte(a.Port())} // network order
	if !v6 {
		ip = ip.Unmap()
		if !ip.Is4() {
			return false
		}
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&op.sa))
		*sa = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: ip.As4()}
		*(*[2]byte)(unsafe.Pointer(&sa.Port)) = port
		op.salen = syscall.SizeofSockaddrInet4
		return true
	}
	sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&op.sa))
	*sa = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ip.As16()}
	*(*[2]byte)(unsafe.Pointer(&sa.Port)) = port
	op.salen = syscall.SizeofSockaddrInet6
	return true
}

// sockaddrAddrPort converts what recvfrom wrote, as net.UDPConn does: an
// IPv4 address from an IPv4 socket, a 16-byte one (IPv4-mapped for IPv4
// peers) from an IPv6 socket, with the interface's name as the zone.
func sockaddrAddrPort(rsa *syscall.RawSockaddrAny) (netip.AddrPort, bool) {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(pb[0])<<8|uint16(pb[1])), true
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(zoneName(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(ip, uint16(pb[0])<<8|uint16(pb[1])), true
	}
	return netip.AddrPort{}, false
}

// zoneNames caches interface index → name for zoned (link-local) peers.
var zoneNames sync.Map

func zoneName(index int) string {
	if v, ok := zoneNames.Load(index); ok {
		return v.(string)
	}
	name := strconv.Itoa(index)
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		name = ifi.Name
	}
	zoneNames.Store(index, name)
	return name
}
