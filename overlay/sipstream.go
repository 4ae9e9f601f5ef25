package overlay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

// Stream is one SIP stream between two overlay peers: a libp2p stream of
// the overlay's SIP protocol on whatever connection joins them (direct,
// hole-punched or through a circuit relay). Both ends are authenticated by
// their node keys in the connection's security handshake, so RemoteNode is
// the sender's identity.
type Stream interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
	// Reset aborts the stream in both directions.
	Reset() error
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// RemoteNode is the node ID of the other end.
	RemoteNode() string
	// Relayed reports whether the stream runs through a circuit relay.
	Relayed() bool
	// Transport names the kind of connection the stream rides: "tcp",
	// "quic", "wss" or "relay" (see connTransport).
	Transport() string
}

// SIPProtocol is the stream protocol that carries SIP between the peers of
// this overlay, framed as SIP over TCP (RFC 3261 §18.3).
func (n *Node) SIPProtocol() protocol.ID {
	return protocol.ID("/p2psip/" + n.cfg.Name + "/sip/1.0.0")
}

// sipStream adapts a libp2p stream.
type sipStream struct {
	network.Stream
}

func (s sipStream) RemoteNode() string { return s.Conn().RemotePeer().String() }
func (s sipStream) Relayed() bool      { return s.Conn().Stat().Limited || isCircuit(s.Conn()) }
func (s sipStream) Transport() string  { return connTransport(s.Conn()) }

// connTransport names the kind of connection c is: "relay" (a circuit),
// "quic", "wss" (WebSocket; the node dials only /tls/ws, and its plain
// /ws listener is the back end of its HTTPS port, so a WebSocket
// connection is WSS on the wire in either direction), "tcp", or the
// last protocol of its address for anything else.
func connTransport(c network.Conn) string {
	if isCircuit(c) {
		return "relay"
	}
	a := c.RemoteMultiaddr()
	has := func(code int) bool { _, err := a.ValueForProtocol(code); return err == nil }
	switch {
	case has(ma.P_QUIC_V1):
		return "quic"
	case has(ma.P_WS) || has(ma.P_WSS):
		return "wss"
	case has(ma.P_TCP):
		return "tcp"
	}
	if ps := a.Protocols(); len(ps) > 0 {
		return ps[len(ps)-1].Name
	}
	return "unknown"
}

// sipConnCost ranks connections for SIP streams, lowest first: those
// that are not limited and not relayed, then by the CPU a SIP message
// costs on each kind: TCP (with its security and yamux) is the cheapest,
// WSS adds a TLS layer and WebSocket framing, QUIC costs the most (a
// packet and ACKs per small message in user space, and timers): 29-38,
// 34-39 and 42-47 us per 800-byte request and answer on this machine
// (BenchmarkStreamTransports); see also tcpFirstDialRanker.
func sipConnCost(c network.Conn) int {
	cost := 0
	if c.Stat().Limited {
		cost += 100
	}
	switch connTransport(c) {
	case "tcp":
	case "wss":
		cost++
	case "quic":
		cost += 2
	case "relay":
		cost += 50
	default:
		cost += 10
	}
	return cost
}

// sipConn is the connection to pid that a new SIP stream should ride:
// the cheapest by sipConnCost, or nil when there is none. libp2p's own
// choice (the connection with the most streams) ignores what a
// connection costs per message, and SIP streams live as long as the
// connection, so the choice is made once, here.
func sipConn(conns []network.Conn) network.Conn {
	var best network.Conn
	bestCost := 0
	for _, c := range conns {
		if c.IsClosed() {
			continue
		}
		if cost := sipConnCost(c); best == nil || cost < bestCost {
			best, bestCost = c, cost
		}
	}
	return best
}

func isCircuit(c network.Conn) bool {
	for _, p := range c.RemoteMultiaddr().Protocols() {
		if p.Name == "p2p-circuit" {
			return true
		}
	}
	return false
}

// HandleSIPStreams passes every inbound SIP stream to f, which owns it.
func (n *Node) HandleSIPStreams(f func(Stream)) {
	n.host.SetStreamHandler(n.SIPProtocol(), func(s network.Stream) { f(sipStream{s}) })
}

// sipDialTimeout bounds finding and connecting a peer for a SIP stream:
// a call must not wait on addresses a firewall silently drops.
const sipDialTimeout = 10 * time.Second

// OpenSIPStream opens a SIP stream to node id: over an existing connection
// when there is one, else after finding the node's addresses (the
// peerstore, then a DHT FindPeer) and connecting by any of them, circuit
// relay addresses included.
func (n *Node) OpenSIPStream(ctx context.Context, id string) (Stream, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("%w: node id %q: %w", ErrBadConfig, id, err)
	}
	if pid == n.host.ID() {
		return nil, fmt.Errorf("%w: a SIP stream to this node itself", ErrBadConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, sipDialTimeout)
	defer cancel()
	if n.host.Network().Connectedness(pid) != network.Connected {
		if err := n.connectPeer(ctx, pid); err != nil {
			return nil, err
		}
	}
	// A relayed connection is "limited" when the relay sets limits; SIP
	// signalling is small, and the relay's limits bound it anyway.
	ctx = network.WithAllowLimitedConn(ctx, "sip")
	c := sipConn(n.host.Network().ConnsToPeer(pid))
	if c == nil {
		// Closed since the check above: let the host dial again.
		s, err := n.host.NewStream(ctx, pid, n.SIPProtocol())
		if err != nil {
			return nil, fmt.Errorf("%w: opening a SIP stream to %s: %w", ErrUnreachable, id, err)
		}
		return sipStream{s}, nil
	}
	s, err := n.newStreamOn(ctx, c, n.SIPProtocol())
	if err != nil {
		return nil, fmt.Errorf("%w: opening a SIP stream to %s over %s: %w", ErrUnreachable, id, connTransport(c), err)
	}
	return sipStream{s}, nil
}

// newStreamOn opens a stream of proto on connection c, as host.NewStream
// does on the connection it picks itself: negotiated with multistream
// (bounded by ctx), then charged to proto's resource scope.
func (n *Node) newStreamOn(ctx context.Context, c network.Conn, proto protocol.ID) (network.Stream, error) {
	s, err := c.NewStream(ctx)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- msmux.SelectProtoOrFail(proto, s) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.ResetWithError(network.StreamProtocolNegotiationFailed)
		<-errc
		err = ctx.Err()
	}
	if err != nil {
		s.ResetWithError(network.StreamProtocolNegotiationFailed)
		return nil, fmt.Errorf("negotiating %s: %w", proto, err)
	}
	if err := s.SetProtocol(proto); err != nil {
		s.ResetWithError(network.StreamResourceLimitExceeded)
		return nil, err
	}
	return s, nil
}

// connectPeer connects to pid, looking its addresses up in the DHT when
// the peerstore has none (or none that work). A failure that came fast is
// tried once more (see quickDialFailure).
func (n *Node) connectPeer(ctx context.Context, pid peer.ID) error {
	start := time.Now()
	err := n.connectPeerOnce(ctx, pid)
	if err == nil || ctx.Err() != nil || time.Since(start) > quickDialFailure {
		return err
	}
	select {
	case <-time.After(quickDialFailure/8 + rand.N(quickDialFailure/4)):
	case <-ctx.Done():
		return err
	}
	if sw, ok := n.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(pid)
	}
	n.metrics.dialRetries.Inc()
	n.log.Debug("connect to node failed fast, trying once more", "peer", pid, "err", err)
	return n.connectPeerOnce(ctx, pid)
}

func (n *Node) connectPeerOnce(ctx context.Context, pid peer.ID) error {
	ai := n.host.Peerstore().PeerInfo(pid)
	if len(ai.Addrs) > 0 {
		if err := n.host.Connect(network.WithAllowLimitedConn(ctx, "sip"), ai); err == nil {
			return nil
		}
	}
	found, err := n.dht.FindPeer(ctx, pid)
	if err != nil {
		return fmt.Errorf("%w: finding node %s in the overlay: %w", ErrUnreachable, pid, err)
	}
	if err := n.host.Connect(network.WithAllowLimitedConn(ctx, "sip"), found); err != nil {
		return fmt.Errorf("%w: connecting to node %s at %v: %w", ErrUnreachable, pid, found.Addrs, err)
	}
	return nil
}
