package overlay

import (
	"context"
	"time"

	circuitpb "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	circuitproto "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
)

// relayResources are the circuit relay v2 limits of a public peer. The
// circuits carry signalling (SIP, DHT and identify traffic): long-lived
// and light. libp2p's defaults are for hole-punching coordination only:
// 2 minutes or 128 KiB per circuit, then a reset, and 8 reservations per
// IP address, which a city Wi-Fi behind one NAT address exceeds at its
// ninth peer. libp2p's resource manager (streams of the relay service,
// scaled with the machine's memory) still bounds the total.
func relayResources() relayv2.Resources {
	return relayv2.Resources{
		Limit:                 nil, // no time or byte limit: circuits are ordinary connections
		ReservationTTL:        time.Hour,
		MaxReservations:       4096,
		MaxCircuits:           64, // per peer: each overlay peer that talks to it
		BufferSize:            4096,
		MaxReservationsPerIP:  1024, // a whole NATed LAN
		MaxReservationsPerASN: 4096,
	}
}

// hopProtocol is what a relay (circuit v2 service) speaks.
const hopProtocol = circuitproto.ProtoIDv2Hop

// memberProtocol marks overlay members whatever their DHT mode: a DHT
// client does not speak the DHT protocol, yet may reserve on our relay.
// The handler only closes the stream; identify carries the mark.
func (n *Node) memberProtocol() protocol.ID {
	return protocol.ID("/p2psip/" + n.cfg.Name + "/member/1.0.0")
}

func (n *Node) kadProtocol() protocol.ID {
	return protocol.ID("/p2psip/" + n.cfg.Name + "/kad/1.0.0")
}

func (n *Node) libp2pRelayTracer() relayv2.MetricsTracer {
	if n.cfg.Registerer == nil {
		return nil
	}
	return relayv2.NewMetricsTracer(relayv2.WithRegisterer(n.cfg.Registerer))
}

// relayACL admits overlay members only: the relay of one overlay is no
// open relay for the rest of the libp2p world.
type relayACL struct{ n *Node }

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	ok := a.n.isMember(p)
	if !ok {
		a.n.log.Info("relay reservation refused: not a member of this overlay", "peer", p)
	}
	return ok
}

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	ok := a.n.isMember(src)
	if !ok {
		a.n.log.Info("relayed connection refused: source is not a member of this overlay", "peer", src, "to", dst)
	}
	return ok
}

// isMember tells whether p belongs to this overlay: with a PSK every
// connected peer does (pnet let it in); otherwise p must speak the
// overlay's DHT or member protocol, as identify reported it. Identify may
// still be running when the peer's first request arrives, so this waits
// for it (bounded by memberWait).
func (n *Node) isMember(p peer.ID) bool {
	if n.cfg.PSK != nil {
		return true
	}
	h := n.hostNow()
	if h == nil {
		return false
	}
	speaks := func() bool {
		protos, err := h.Peerstore().SupportsProtocols(p, n.kadProtocol(), n.memberProtocol())
		return err == nil && len(protos) > 0
	}
	if speaks() {
		return true
	}
	ids, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, memberWait)
	defer cancel()
	for _, c := range h.Network().ConnsToPeer(p) {
		select {
		case <-ids.IDService().IdentifyWait(c):
		case <-ctx.Done():
			return speaks()
		}
	}
	return speaks()
}

// relayTracer counts what our relay service does, and passes it on to
// libp2p's own relay metrics.
type relayTracer struct {
	n     *Node
	inner relayv2.MetricsTracer
}

func (t *relayTracer) RelayStatus(enabled bool) {
	if t.n.reach.relayActive.Swap(enabled) != enabled {
		if enabled {
			t.n.log.Info("relay service on: undialable overlay peers may hold reservations here")
		} else {
			t.n.log.Info("relay service off: this peer no longer looks publicly reachable")
		}
	}
	if t.inner != nil {
		t.inner.RelayStatus(enabled)
	}
}

func (t *relayTracer) ConnectionOpened() {
	t.n.reach.relayCircuits.Add(1)
	if t.inner != nil {
		t.inner.ConnectionOpened()
	}
}

func (t *relayTracer) ConnectionClosed(d time.Duration) {
	t.n.reach.relayCircuits.Add(-1)
	if t.inner != nil {
		t.inner.ConnectionClosed(d)
	}
}

func (t *relayTracer) ConnectionRequestHandled(s circuitpb.Status) {
	if t.inner != nil {
		t.inner.ConnectionRequestHandled(s)
	}
}

func (t *relayTracer) ReservationAllowed(isRenewal bool) {
	if !isRenewal {
		t.n.reach.relayReservations.Add(1)
	}
	if t.inner != nil {
		t.inner.ReservationAllowed(isRenewal)
	}
}

func (t *relayTracer) ReservationClosed(cnt int) {
	t.n.reach.relayReservations.Add(-int64(cnt))
	if t.inner != nil {
		t.inner.ReservationClosed(cnt)
	}
}

func (t *relayTracer) ReservationRequestHandled(s circuitpb.Status) {
	if t.inner != nil {
		t.inner.ReservationRequestHandled(s)
	}
}

func (t *relayTracer) BytesTransferred(cnt int) {
	if t.inner != nil {
		t.inner.BytesTransferred(cnt)
	}
}
