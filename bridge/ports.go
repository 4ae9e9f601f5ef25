package bridge

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// portPool hands out UDP ports of the range for plain legs. A released
// port rests for the quarantine before it is handed out again: packets of
// the finished call may still be on their way (a phone that has not seen
// the BYE yet), and they must not land in a new call.
type portPool struct {
	min, max   int
	quarantine time.Duration

	mu      sync.Mutex
	next    int               // guarded by mu; where the search starts
	inUse   map[int]bool      // guarded by mu
	resting map[int]time.Time // guarded by mu; released at
}

func newPortPool(min, max int, quarantine time.Duration) *portPool {
	return &portPool{min: min, max: max, quarantine: quarantine, next: min,
		inUse: map[int]bool{}, resting: map[int]time.Time{}}
}

// listen binds a UDP socket on ip at a free port of the range.
func (p *portPool) listen(ip netip.Addr) (*net.UDPConn, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := p.max - p.min + 1
	for range n {
		port := p.next
		p.next++
		if p.next > p.max {
			p.next = p.min
		}
		if p.inUse[port] {
			continue
		}
		if at, ok := p.resting[port]; ok {
			if now.Sub(at) < p.quarantine {
				continue
			}
			delete(p.resting, port)
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			continue // taken by another program (or an ICE socket)
		}
		p.inUse[port] = true
		return c, port, nil
	}
	return nil, 0, ErrNoPorts
}

// release returns a port; it rests before it is used again.
func (p *portPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inUse, port)
	p.resting[port] = time.Now()
}

// reserve keeps port out of the pool for good (the shared ICE port).
func (p *portPool) reserve(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse[port] = true
}
