package relay

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// EVEN-PORT and RESERVATION-TOKEN (RFC 8656 §7.2 steps 5–6, §14.9, §14.6).
//
// An RTP client allocates an even relayed port with the R bit set and
// later a second allocation with the returned token, which must get
// port+1 (its RTCP). pion runs this through the generator in three calls:
//
//  1. a probe, AllocatePacketConn with no user and no port, which pion
//     closes at once and retries until the port it got is even;
//  2. the allocation itself, on the probed port;
//  3. up to 30 s later, the token's allocation, on port+1.
//
// Between those calls the ports would be free for any socket on the host to
// take (the relayed range often overlaps the kernel's ephemeral ports), and
// the client would get 508 for a port the relay promised. So the probe
// binds an even port and port+1 together and holds both: the even one
// until step 2 takes it, port+1 until step 3 takes it or the reservation
// expires (pion forgets its tokens after 30 s; it sets a token whether or
// not R was set, so port+1 is held in both cases).

// Hold times of probed ports.
const (
	// probeHold is how long an even port waits for the allocation that
	// follows its probe within the same request; it runs out only when
	// that request is refused after the probe, and then port+1 is
	// released with it.
	probeHold = 5 * time.Second
	// reservationHold outlives pion's 30 s reservations, so a valid token
	// always finds its port.
	reservationHold = 31 * time.Second
	// maxHeld bounds the sockets held at once (two per EVEN-PORT
	// allocation, for at most reservationHold). Past it EVEN-PORT
	// allocations get 508 until holds expire; other allocations still
	// get the rest of the range.
	maxHeld = 512
)

// heldPorts are relayed sockets bound ahead of the allocation that will use
// them, by port.
type heldPorts struct {
	mu   sync.Mutex
	byPt map[int]*heldPort // guarded by mu
}

type heldPort struct {
	pc    net.PacketConn
	timer *time.Timer
}

// hold keeps pc for port until take or d elapses; false (pc closed) when
// the table is full. When port's hold expires unclaimed, the hold of
// partner (0: none) ends with it: an allocation refused after its probe
// (a quota, RFC 8656 §7.2 step 7) gets no token, so nothing will claim
// port+1 either.
func (h *heldPorts) hold(port, partner int, pc net.PacketConn, d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byPt == nil {
		h.byPt = map[int]*heldPort{}
	}
	if len(h.byPt) >= maxHeld {
		_ = pc.Close()
		return false
	}
	hp := &heldPort{pc: pc}
	hp.timer = time.AfterFunc(d, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.byPt[port] != hp {
			return // taken
		}
		h.dropLocked(port)
		if partner != 0 {
			h.dropLocked(partner)
		}
	})
	h.byPt[port] = hp
	return true
}

func (h *heldPorts) dropLocked(port int) {
	if hp := h.byPt[port]; hp != nil {
		hp.timer.Stop()
		_ = hp.pc.Close()
		delete(h.byPt, port)
	}
}

// take hands over the socket held for port, if any.
func (h *heldPorts) take(port int) net.PacketConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	hp := h.byPt[port]
	if hp == nil {
		return nil
	}
	delete(h.byPt, port)
	hp.timer.Stop()
	return hp.pc
}

// closeAll releases every held socket (the server is closing).
func (h *heldPorts) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port := range h.byPt {
		h.dropLocked(port)
	}
}

// probeEven answers pion's EVEN-PORT probe: it binds an even port p and
// p+1 within the range, holds both, and returns p behind a socket whose
// Close (pion closes every probe) leaves the held one open.
func (g relayGen) probeEven(network string) (net.PacketConn, net.Addr, error) {
	s := g.s
	for _, port := range g.ports(0) {
		if port%2 != 0 || port+1 > int(s.cfg.PortMax) {
			continue
		}
		pc, err := g.bind(network, port)
		if err != nil {
			continue
		}
		next, err := g.bind(network, port+1)
		if err != nil {
			_ = pc.Close()
			continue
		}
		if !s.held.hold(port+1, 0, next, s.cfg.reservationHold) {
			_ = pc.Close()
			break
		}
		if !s.held.hold(port, port+1, pc, s.cfg.probeHold) {
			break // port+1 expires on its own
		}
		return probeConn{pc}, &net.UDPAddr{IP: s.cfg.RelayIP.AsSlice(), Port: port}, nil
	}
	s.refuse(reasonNoEvenPort)
	return nil, nil, errNoPort
}

// bind opens a relayed UDP socket on BindIP:port.
func (g relayGen) bind(network string, port int) (net.PacketConn, error) {
	return net.ListenPacket(network, net.JoinHostPort(g.s.cfg.BindIP.String(), strconv.Itoa(port)))
}

// probeConn is what pion gets for a probe: closing it keeps the socket,
// which stays held for the allocation.
type probeConn struct{ net.PacketConn }

func (probeConn) Close() error { return nil }
