package overlay

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
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
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "sip"), pid, n.SIPProtocol())
	if err != nil {
		return nil, fmt.Errorf("%w: opening a SIP stream to %s: %w", ErrUnreachable, id, err)
	}
	return sipStream{s}, nil
}

// connectPeer connects to pid, looking its addresses up in the DHT when
// the peerstore has none (or none that work).
func (n *Node) connectPeer(ctx context.Context, pid peer.ID) error {
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
