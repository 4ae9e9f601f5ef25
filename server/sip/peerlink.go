package sip

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2psip/p2psip/overlay"
	"golang.org/x/sync/singleflight"
)

// PeerNet is how the service reaches the other peers of the overlay: SIP
// streams on the overlay's own connections (overlay.Node satisfies it).
type PeerNet interface {
	OpenSIPStream(ctx context.Context, id string) (overlay.Stream, error)
	HandleSIPStreams(func(overlay.Stream))
}

// SIP between peers rides libp2p streams, fed to sipgo as TCP connections.
//
// sipgo has no pluggable transport (its transport interface is unexported,
// and its client can only dial real sockets), but its TCP transport serves
// any net.Listener and keeps every accepted connection in a pool under the
// connection's remote address, and its client sends a request over the
// pooled connection whose address matches the request's destination
// before it would dial. So peerLinks is a net.Listener whose Accept yields
// streams, inbound and outbound alike, each dressed as a TCP connection
// with a made-up address of its own: an IPv6 address in the discard-only
// block 100::/64 (RFC 6666) derived from the remote node id, and a port
// unique to the stream. Before a request goes to a peer, ensure finds (or
// opens) a stream to it and sets the request's destination to that
// stream's address; responses go back on the stream the request came in
// on (RFC 3261 §18.2.2), and an inbound stream serves requests in the
// other direction too. A request's source address tells the node that
// sent it, authenticated by the connection's handshake.
//
// This keeps sipgo unpatched and every SIP feature (transactions, the
// stream parser, keep-alives) the same on both transports. A dial that
// sipgo might still attempt to a made-up address (a stream that closed
// between ensure and the send) is refused at once by the TCP transport's
// dialer (refuseDiscard), so it fails as "next hop unreachable".
type peerLinks struct {
	s    *Service
	net  PeerNet
	self string // this node's id

	accept chan net.Conn // streams waiting for sipgo's Accept
	done   chan struct{} // closed by Close
	once   sync.Once     // closes done
	sf     singleflight.Group

	mu     sync.Mutex
	seq    uint16                 // guarded by mu; the last port handed out
	byNode map[string][]*peerConn // guarded by mu; live streams per node, oldest first
	byAddr map[string]*peerConn   // guarded by mu; open streams by remote address, taken or not
	open   map[string]int         // guarded by mu; open streams per node, taken or not
}

// maxStreamsPerNode bounds the streams one peer may hold open with this
// one; a stream beyond it is refused (reset), never one in use closed to
// make room. Two (one each way) is the norm.
const maxStreamsPerNode = 16

// peerStreamWait bounds how long a new stream waits for sipgo to take it.
const peerStreamWait = 5 * time.Second

func newPeerLinks(s *Service, pn PeerNet, self string) *peerLinks {
	l := &peerLinks{s: s, net: pn, self: self, accept: make(chan net.Conn), done: make(chan struct{}),
		byNode: map[string][]*peerConn{}, byAddr: map[string]*peerConn{}, open: map[string]int{}}
	pn.HandleSIPStreams(func(st overlay.Stream) {
		ctx, cancel := context.WithTimeout(context.Background(), peerStreamWait)
		defer cancel()
		if _, err := l.hand(ctx, st, "in"); err != nil {
			s.log.Debug("inbound SIP stream dropped", "node", st.RemoteNode(), "err", err)
		}
	})
	return l
}

// Accept implements net.Listener for sipgo's TCP transport.
func (l *peerLinks) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; the streams close with sipgo's pool.
func (l *peerLinks) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the listener's made-up address; its port is SIP's, so that
// sipgo's record of TCP listen ports stays sensible.
func (l *peerLinks) Addr() net.Addr { return &net.TCPAddr{IP: syntheticIP(l.self), Port: 5060} }

// ensure returns the address of a live stream to node, opening one if
// there is none.
func (l *peerLinks) ensure(ctx context.Context, node string) (string, error) {
	if node == l.self {
		return "", fmt.Errorf("%w: a request addressed to this peer's own name", ErrBadRequest)
	}
	if c := l.live(node); c != nil {
		return c.raddr.String(), nil
	}
	v, err, _ := l.sf.Do(node, func() (any, error) {
		if c := l.live(node); c != nil {
			return c.raddr.String(), nil
		}
		start := time.Now()
		st, err := l.net.OpenSIPStream(ctx, node)
		if err != nil {
			l.s.m.peerOpens.WithLabelValues("failed").Inc()
			return "", err
		}
		c, err := l.hand(ctx, st, "out")
		if err != nil {
			return "", err
		}
		l.s.m.peerOpens.WithLabelValues("ok").Inc()
		l.s.log.Debug("SIP stream to peer opened", "node", node, "transport", st.Transport(), "relayed", st.Relayed(), "took", time.Since(start))
		return c.raddr.String(), nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// live is the newest live stream to node, or nil.
func (l *peerLinks) live(node string) *peerConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.byNode[node]
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

// counts returns how many peers have a stream, the streams on direct
// and on relayed connections, and the streams by kind of connection
// (overlay.Stream's Transport).
func (l *peerLinks) counts() (peers, direct, relayed int, byTransport map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byTransport = map[string]int{}
	for _, cs := range l.byNode {
		peers++
		for _, c := range cs {
			if c.path == "relayed" {
				relayed++
			} else {
				direct++
			}
			byTransport[c.transport]++
		}
	}
	return peers, direct, relayed, byTransport
}

// nodeOf returns the node that a message's source address is a stream of.
func (l *peerLinks) nodeOf(source string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.byAddr[source]; c != nil {
		return c.node, true
	}
	return "", false
}

// hand gives a stream to sipgo and waits until sipgo reads it, which it
// does only once the stream is in its connection pool.
func (l *peerLinks) hand(ctx context.Context, st overlay.Stream, dir string) (*peerConn, error) {
	c := l.newConn(st, dir)
	if c == nil {
		_ = st.Reset()
		l.s.log.Warn("refused a SIP stream: the peer holds too many", "node", st.RemoteNode(), "max", maxStreamsPerNode)
		return nil, fmt.Errorf("%w: %s holds %d SIP streams", errTooManyStreams, st.RemoteNode(), maxStreamsPerNode)
	}
	conn := newGuardStreamConn(&closeNotifyConn{Conn: c, onClose: func(string) {}}, l.s)
	conn.frameOnly = true
	select {
	case l.accept <- conn:
	case <-ctx.Done():
		l.drop(c)
		_ = st.Reset()
		return nil, ctx.Err()
	case <-l.done:
		l.drop(c)
		_ = st.Reset()
		return nil, net.ErrClosed
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		_ = conn.Close()
		return nil, ctx.Err()
	}
	l.add(c)
	return c, nil
}

// newConn dresses st, or returns nil when its node holds too many streams.
func (l *peerLinks) newConn(st overlay.Stream, dir string) *peerConn {
	node := st.RemoteNode()
	l.mu.Lock()
	if l.open[node] >= maxStreamsPerNode {
		l.mu.Unlock()
		return nil
	}
	l.open[node]++
	var port uint16
	for {
		l.seq++
		if l.seq == 0 {
			l.seq = 1
		}
		port = l.seq
		addr := &net.TCPAddr{IP: syntheticIP(node), Port: int(port)}
		if l.byAddr[addr.String()] == nil {
			break
		}
	}
	path := "direct"
	if st.Relayed() {
		path = "relayed"
	}
	c := &peerConn{st: st, node: node, links: l, dir: dir, path: path, transport: st.Transport(), ready: make(chan struct{}),
		laddr: &net.TCPAddr{IP: syntheticIP(l.self), Port: int(port)},
		raddr: &net.TCPAddr{IP: syntheticIP(node), Port: int(port)}}
	// The sender of what arrives on c is known from the first byte: sipgo
	// may hand a request to a handler before add runs.
	l.byAddr[c.raddr.String()] = c
	l.mu.Unlock()
	return c
}

// add records a stream sipgo has taken.
func (l *peerLinks) add(c *peerConn) {
	l.mu.Lock()
	if c.closed {
		l.mu.Unlock()
		return
	}
	l.byNode[c.node] = append(l.byNode[c.node], c)
	c.added = true
	l.mu.Unlock()
	l.s.m.peerStreams.WithLabelValues(c.dir, c.path).Inc()
	if c.dir == "in" {
		l.s.log.Debug("SIP stream from peer accepted", "node", c.node, "transport", c.transport, "relayed", c.path == "relayed")
	}
}

// drop forgets a closed stream.
func (l *peerLinks) drop(c *peerConn) {
	l.mu.Lock()
	if c.closed {
		l.mu.Unlock()
		return
	}
	c.closed = true
	if l.open[c.node]--; l.open[c.node] <= 0 {
		delete(l.open, c.node)
	}
	added := c.added
	if added {
		cs := l.byNode[c.node]
		for i, x := range cs {
			if x == c {
				cs = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		if len(cs) == 0 {
			delete(l.byNode, c.node)
		} else {
			l.byNode[c.node] = cs
		}
	}
	delete(l.byAddr, c.raddr.String())
	l.mu.Unlock()
	if added {
		l.s.m.peerStreams.WithLabelValues(c.dir, c.path).Dec()
	}
}

// syntheticIP is node's made-up address in the discard-only block
// 100::/64 (RFC 6666): 64 bits of SHA-256 of the node id.
func syntheticIP(node string) net.IP {
	sum := sha256.Sum256([]byte(node))
	var a [16]byte
	a[0], a[1] = 0x01, 0x00
	copy(a[8:], sum[:8])
	return net.IP(a[:])
}

// discardPrefix is RFC 6666's block, where the made-up addresses live.
var discardPrefix = netip.MustParsePrefix("100::/64")

// isSynthetic reports whether a host:port is a made-up stream address.
func isSynthetic(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	return err == nil && discardPrefix.Contains(ap.Addr())
}

// peerConn dresses a stream as the TCP connection sipgo expects.
type peerConn struct {
	st           overlay.Stream
	node         string
	links        *peerLinks
	dir, path    string // "in"/"out", "direct"/"relayed": metric labels
	transport    string // the kind of connection st rides: "tcp", "quic", "wss", "relay"
	laddr, raddr *net.TCPAddr

	wmu       sync.Mutex    // serialises Write
	ready     chan struct{} // closed at sipgo's first Read: it has pooled the conn
	readyOnce sync.Once
	closeOnce sync.Once
	closed    bool // guarded by links.mu
	added     bool // guarded by links.mu
}

func (c *peerConn) Read(b []byte) (int, error) {
	c.readyOnce.Do(func() { close(c.ready) })
	return c.st.Read(b)
}

// Write sends one whole message. sipgo writes from many goroutines at
// once, as a net.TCPConn allows; a yamux stream does not (its Write splits
// a message at the flow-control window and keeps no lock), and concurrent
// writers interleave messages and overrun the window, which makes the
// remote reset the whole connection.
func (c *peerConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.st.Write(b)
}

func (c *peerConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.links.drop(c)
		err = c.st.Close()
	})
	return err
}

func (c *peerConn) LocalAddr() net.Addr                { return c.laddr }
func (c *peerConn) RemoteAddr() net.Addr               { return c.raddr }
func (c *peerConn) SetDeadline(t time.Time) error      { return c.st.SetDeadline(t) }
func (c *peerConn) SetReadDeadline(t time.Time) error  { return c.st.SetReadDeadline(t) }
func (c *peerConn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }
