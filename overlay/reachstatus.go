package overlay

import (
	"fmt"
	"sort"

	manet "github.com/multiformats/go-multiaddr/net"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// ReachabilityStatus is what Node.Reachability reports.
type ReachabilityStatus struct {
	// Setting is Config.Reachability: auto, public or private.
	Setting string `json:"setting"`
	// Reachability is what libp2p believes: public, private or unknown.
	Reachability string `json:"reachability"`
	// DHTServer tells whether the node serves the DHT (stores records).
	DHTServer bool `json:"dht_server"`
	// Relays are the peer ids of the relays we hold reservations on.
	Relays []string `json:"relays"`
	// CircuitAddrs are the /p2p-circuit addresses we advertise.
	CircuitAddrs []string `json:"circuit_addrs"`
	// RelayService tells whether our relay service runs, and
	// RelayCircuits and RelayReservations what it carries.
	RelayService      bool `json:"relay_service"`
	RelayCircuits     int  `json:"relay_circuits"`
	RelayReservations int  `json:"relay_reservations"`
	// DirectConns and RelayedConns count our open connections.
	DirectConns  int `json:"direct_conns"`
	RelayedConns int `json:"relayed_conns"`
}

// Reachability summarises how other peers reach this one.
func (n *Node) Reachability() ReachabilityStatus {
	st := ReachabilityStatus{
		Setting:           n.cfg.Reachability,
		DHTServer:         n.reach.dhtServer.Load(),
		Relays:            []string{},
		CircuitAddrs:      []string{},
		RelayService:      n.reach.relayActive.Load(),
		RelayCircuits:     int(max(0, n.reach.relayCircuits.Load())),
		RelayReservations: int(max(0, n.reach.relayReservations.Load())),
	}
	n.reach.mu.Lock()
	st.Reachability = reachString(n.reach.libp2p)
	n.reach.mu.Unlock()
	for _, r := range n.heldRelays() {
		st.Relays = append(st.Relays, r.String())
	}
	for _, a := range n.host.Addrs() {
		if isCircuitAddr(a) {
			st.CircuitAddrs = append(st.CircuitAddrs, a.String())
		}
	}
	st.DirectConns, st.RelayedConns = n.connCounts()
	return st
}

func (n *Node) connCounts() (direct, relayed int) {
	for _, c := range n.host.Network().Conns() {
		if isCircuitAddr(c.RemoteMultiaddr()) {
			relayed++
		} else {
			direct++
		}
	}
	return direct, relayed
}

// autorelayTag is how libp2p's AutoRelay protects the connection to a
// relay it holds a reservation on (relay_finder.go). AutoRelay offers no
// other way to ask which relays it uses; the circuit addresses it
// announces are no substitute, since it builds them from the relays'
// public addresses only, and a relay on a private network (a LAN, a test
// namespace, loopback) yields none.
const autorelayTag = "autorelay"

// heldRelays returns the relays this node holds reservations on: the
// connected peers AutoRelay protects, while libp2p sees the node as not
// public (AutoRelay stops when it is public, and a relay that went away
// stays protected until it returns).
func (n *Node) heldRelays() []peer.ID {
	h := n.hostNow()
	if h == nil {
		return nil
	}
	n.reach.mu.Lock()
	public := n.reach.libp2p == network.ReachabilityPublic
	n.reach.mu.Unlock()
	if public {
		return nil
	}
	var out []peer.ID
	for _, p := range h.Network().Peers() {
		if h.ConnManager().IsProtected(p, autorelayTag) && h.Network().Connectedness(p) == network.Connected {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// circuitAddrsFor returns the circuit addresses through the relays this
// node holds reservations on that addrs lacks: AutoRelay builds them only
// from a relay's public addresses, so a relay reachable only on private
// ones gets them here, from its private addresses (loopback only when it
// has nothing else).
func (n *Node) circuitAddrsFor(addrs []ma.Multiaddr) []ma.Multiaddr {
	h := n.hostNow()
	if h == nil {
		return nil
	}
	have := map[peer.ID]bool{}
	for _, id := range relayIDs(addrs) {
		have[id] = true
	}
	var out []ma.Multiaddr
	for _, r := range n.heldRelays() {
		if have[r] {
			continue
		}
		var private, loopback []ma.Multiaddr
		for _, a := range h.Peerstore().Addrs(r) {
			switch {
			case isCircuitAddr(a) || manet.IsIPUnspecified(a):
			case manet.IsIPLoopback(a):
				loopback = append(loopback, a)
			case manet.IsPrivateAddr(a) || manet.IsPublicAddr(a):
				private = append(private, a)
			}
		}
		if len(private) == 0 {
			private = loopback
		}
		circuit := ma.StringCast("/p2p/" + r.String() + "/p2p-circuit")
		for _, a := range private {
			out = append(out, a.Encapsulate(circuit))
		}
	}
	return out
}

// relayIDs returns the relays named in circuit addresses
// (<relay addr>/p2p/<relay>/p2p-circuit), sorted.
func relayIDs(circuits []ma.Multiaddr) []peer.ID {
	set := map[peer.ID]bool{}
	for _, a := range circuits {
		relayPart, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
		if relayPart == nil {
			continue
		}
		if id, err := peer.IDFromP2PAddr(relayPart); err == nil {
			set[id] = true
		}
	}
	out := make([]peer.ID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// isCircuitAddr reports whether a goes through a relay.
func isCircuitAddr(a ma.Multiaddr) bool {
	for _, c := range a {
		if c.Protocol().Code == ma.P_CIRCUIT {
			return true
		}
	}
	return false
}

func reachString(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	default:
		return "unknown"
	}
}

// logReachability logs, when it changes, why other peers can or cannot
// reach this one.
func (n *Node) logReachability() {
	n.reach.mu.Lock()
	r := n.reach.libp2p
	n.reach.mu.Unlock()
	relays := n.heldRelays()
	var msg string
	var args []any
	switch {
	case r == network.ReachabilityPublic:
		msg = "reachability public: other peers dial this peer directly"
		args = []any{"relay_service", n.reach.relayActive.Load()}
	case r == network.ReachabilityPrivate && len(relays) > 0:
		msg = "reachability private: holding relay reservations"
		args = []any{"relays", relays}
	case r == network.ReachabilityPrivate && n.countRelayPeers() == 0:
		msg = "no relay reservation: no public peer with a relay service known; peers on other networks cannot reach this one"
	case r == network.ReachabilityPrivate:
		msg = "no relay reservation yet: asking the known relays"
		args = []any{"relay_peers", n.countRelayPeers()}
	case len(relays) > 0:
		msg = "reachability unknown (no public peer could check it): holding relay reservations in case peers cannot dial this one"
		args = []any{"relays", relays}
	default:
		msg = "reachability unknown (no public peer could check it) and no relay reservation: peers on other networks may not reach this one"
		args = []any{"relay_peers", n.countRelayPeers()}
	}
	key := fmt.Sprint(msg, args)
	n.reach.mu.Lock()
	same := key == n.reach.logged
	n.reach.logged = key
	n.reach.mu.Unlock()
	if !same {
		n.log.Info(msg, args...)
	}
}

func (n *Node) countRelayPeers() int {
	h := n.hostNow()
	if h == nil {
		return 0
	}
	count := 0
	for _, p := range h.Network().Peers() {
		if protos, err := h.Peerstore().SupportsProtocols(p, hopProtocol); err == nil && len(protos) > 0 {
			count++
		}
	}
	return count
}

// reachCollectors are the Prometheus series of reachability.
func (n *Node) reachCollectors() []prometheus.Collector {
	g := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	out := []prometheus.Collector{
		g("p2psip_overlay_relay_reservations", "Relay reservations this peer holds on public peers.", nil, func() float64 {
			return float64(len(n.heldRelays()))
		}),
		g("p2psip_overlay_connections", "Open overlay connections by kind.", prometheus.Labels{"kind": "direct"}, func() float64 {
			d, _ := n.connCounts()
			return float64(d)
		}),
		g("p2psip_overlay_connections", "Open overlay connections by kind.", prometheus.Labels{"kind": "relayed"}, func() float64 {
			_, r := n.connCounts()
			return float64(r)
		}),
		g("p2psip_overlay_dht_server", "1 when this peer serves the DHT, 0 when it is a DHT client.", nil, func() float64 {
			return b(n.reach.dhtServer.Load())
		}),
		g("p2psip_overlay_relay_service_active", "1 when this peer runs the circuit relay service.", nil, func() float64 {
			return b(n.reach.relayActive.Load())
		}),
		g("p2psip_overlay_relay_service_circuits", "Circuits open through this peer's relay service.", nil, func() float64 {
			return float64(max(0, n.reach.relayCircuits.Load()))
		}),
		g("p2psip_overlay_relay_service_reservations", "Reservations this peer's relay service holds for others.", nil, func() float64 {
			return float64(max(0, n.reach.relayReservations.Load()))
		}),
	}
	for _, r := range []network.Reachability{network.ReachabilityUnknown, network.ReachabilityPublic, network.ReachabilityPrivate} {
		out = append(out, g("p2psip_overlay_reachability", "1 for the reachability libp2p currently sees.",
			prometheus.Labels{"reachability": reachString(r)}, func() float64 {
				n.reach.mu.Lock()
				defer n.reach.mu.Unlock()
				return b(n.reach.libp2p == r)
			}))
	}
	return out
}
