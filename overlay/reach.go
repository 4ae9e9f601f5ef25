package overlay

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	circuitpb "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	circuitproto "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
)

// The values of Config.Reachability.
const (
	// ReachAuto lets libp2p's AutoNAT find out whether the peer can be
	// dialled, and follows what it finds.
	ReachAuto = "auto"
	// ReachPublic declares the peer dialable from everywhere: it serves
	// the DHT, runs the circuit relay service for the overlay and answers
	// AutoNAT probes.
	ReachPublic = "public"
	// ReachPrivate declares the peer undialable (NAT, a firewall that
	// passes only outbound HTTPS): it is a DHT client and holds relay
	// reservations on public peers.
	ReachPrivate = "private"
)

// Options of reachability. They are constants rather than Config fields:
// they are what signalling needs, not what an operator should tune.
const (
	// addrDialTimeout bounds one dial to one public address. A SYN that a
	// 443-only firewall drops never comes back; libp2p's own default is
	// 15 s. Other addresses of the same peer are dialled in parallel
	// (staggered by the swarm's dial ranker), so this bounds only how long
	// a dead address holds a dial slot, and when its failure is noted.
	addrDialTimeout = 8 * time.Second
	// localDialTimeout is the same for private (LAN) addresses, which
	// answer within milliseconds when they answer at all.
	localDialTimeout = 4 * time.Second
	// relayBackoff is how long AutoRelay leaves a relay alone after a
	// failed reservation (libp2p's default is an hour, far too long when
	// the relay only restarted).
	relayBackoff = 30 * time.Second
	// relayMinInterval is how often AutoRelay may ask for new relay
	// candidates; a lost relay is replaced from candidates it already has,
	// so this only matters when it has none.
	relayMinInterval = 10 * time.Second
	// relayCount is how many relays an undialable peer holds reservations
	// on: one can die while the other keeps the peer reachable.
	relayCount = 2
	// privateGrace is how long a peer that AutoNAT found private stays a
	// DHT client after it last saw a public DHT server (see dhtPolicy).
	privateGrace = 30 * time.Second
	// memberWait bounds how long the relay service waits for identify to
	// tell whether a peer asking for a reservation is an overlay member.
	memberWait = 5 * time.Second
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
		Limit:                  nil, // no time or byte limit: circuits are ordinary connections
		ReservationTTL:         time.Hour,
		MaxReservations:        4096,
		MaxCircuits:            64, // per peer: each overlay peer that talks to it
		BufferSize:             4096,
		MaxReservationsPerPeer: 1,
		MaxReservationsPerIP:   1024, // a whole NATed LAN
		MaxReservationsPerASN:  4096,
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

// reach is the node's reachability state.
type reach struct {
	host atomic.Value // host.Host; set once libp2p.New returned

	relayActive       atomic.Bool  // the relay service runs
	relayCircuits     atomic.Int64 // open circuits through our relay service
	relayReservations atomic.Int64 // reservations our relay service holds
	dhtServer         atomic.Bool

	mu         sync.Mutex
	libp2p     network.Reachability // as AutoNAT sees it
	circuits   []ma.Multiaddr       // from AutoRelay: our circuit addresses
	lastPublic time.Time            // last time a public DHT server was known
	dhtReach   network.Reachability // last fed to the DHT (auto mode)
	logged     string               // last reachability summary logged
}

func (n *Node) hostNow() host.Host {
	h, _ := n.reach.host.Load().(host.Host)
	return h
}

// reachOptions are the libp2p options of reachability: relay service,
// AutoRelay, AutoNAT, hole punching and bounded dials.
func (n *Node) reachOptions() []libp2p.Option {
	opts := []libp2p.Option{
		libp2p.EnableHolePunching(),
		libp2p.WithDialTimeout(addrDialTimeout),
		libp2p.SwarmOpts(swarm.WithDialTimeoutLocal(localDialTimeout)),
		// AutoRelay runs while AutoNAT says private or unknown: at once
		// on a forced-private or auto peer (see newReachWatch), and it
		// stops on a peer found or declared public.
		libp2p.EnableAutoRelayWithPeerSource(n.relayCandidates,
			autorelay.WithNumRelays(relayCount),
			autorelay.WithMinCandidates(1),
			autorelay.WithBootDelay(5*time.Second),
			autorelay.WithBackoff(relayBackoff),
			autorelay.WithMinInterval(relayMinInterval),
		),
	}
	relayService := libp2p.EnableRelayService(
		relayv2.WithResources(relayResources()),
		relayv2.WithInfiniteLimits(),
		relayv2.WithACL(relayACL{n}),
		relayv2.WithMetricsTracer(&relayTracer{n: n, inner: n.libp2pRelayTracer()}),
	)
	switch n.cfg.Reachability {
	case ReachPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic(), libp2p.EnableNATService(), relayService,
			// Every undialable peer of the overlay may hold a connection
			// here; libp2p's default manager trims above 192.
			libp2p.ConnectionManager(mustConnManager(1024, 2560)))
	case ReachPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	default:
		// The relay service starts only if AutoNAT finds us public. No
		// AutoNAT service: it runs a second libp2p swarm per peer, and
		// the peers that can answer usefully are the public ones.
		opts = append(opts, relayService)
	}
	return opts
}

func mustConnManager(low, high int) *connmgr.BasicConnMgr {
	cm, err := connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		panic(err) // only for low > high
	}
	return cm
}

func (n *Node) libp2pRelayTracer() relayv2.MetricsTracer {
	if n.cfg.Registerer == nil {
		return nil
	}
	return relayv2.NewMetricsTracer(relayv2.WithRegisterer(n.cfg.Registerer))
}

// relayCandidates is AutoRelay's peer source: the peers we are connected
// to that run a relay service (identify lists the hop protocol), then the
// configured bootstrap peers, which a private peer's operator chose
// because they are public. AutoRelay connects to each and reserves.
func (n *Node) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	h := n.hostNow()
	if h == nil {
		return out
	}
	seen := map[peer.ID]bool{h.ID(): true}
	add := func(ai peer.AddrInfo) bool {
		if seen[ai.ID] || len(out) == cap(out) {
			return len(out) < cap(out)
		}
		seen[ai.ID] = true
		out <- ai
		return len(out) < cap(out)
	}
	for _, p := range h.Network().Peers() {
		if protos, err := h.Peerstore().SupportsProtocols(p, hopProtocol); err != nil || len(protos) == 0 {
			continue
		}
		if !add(peer.AddrInfo{ID: p, Addrs: h.Peerstore().Addrs(p)}) {
			return out
		}
	}
	for _, ai := range n.cfg.Bootstrap {
		if !add(ai) {
			return out
		}
	}
	n.log.Debug("relay candidates", "count", len(out))
	return out
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

// dhtMode picks the DHT mode for the node's reachability setting.
//
//   - public: server. It is dialable, so others may store records on it.
//   - private: client. A peer nobody can dial directly would only slow
//     every lookup that tries it (through a relay at best).
//   - auto: ModeAutoServer fed by dhtPolicy: server while reachability is
//     unknown or public, client while AutoNAT says private and a public
//     DHT server is known. Plain ModeAuto would make every peer of an
//     ad-hoc LAN a client (AutoNAT never learns anything there: it
//     probes only peers with public addresses), and a LAN of clients
//     stores nothing. For the same reason a private peer that has seen no
//     public DHT server for privateGrace (its public peer went away, or
//     it moved to an ad-hoc LAN: AutoNAT keeps its last verdict when it
//     has nobody to ask) serves the DHT again.
func (n *Node) dhtMode() dht.ModeOpt {
	switch n.cfg.Reachability {
	case ReachPublic:
		return dht.ModeServer
	case ReachPrivate:
		return dht.ModeClient
	default:
		return dht.ModeAutoServer
	}
}

// dhtHost is the host as the DHT sees it in auto mode: the same host,
// but with an event bus of the node's own, on which the node forwards
// the events the DHT follows, except reachability, which dhtPolicy
// decides. The DHT uses the event bus for nothing else (kad-dht v0.42:
// startNetworkSubscriber).
type dhtHost struct {
	host.Host
	bus event.Bus
}

func (h dhtHost) EventBus() event.Bus { return h.bus }

// dhtForwarded are the events the DHT subscribes to, besides
// reachability.
var dhtForwarded = []any{
	new(event.EvtPeerIdentificationCompleted),
	new(event.EvtPeerProtocolsUpdated),
	new(event.EvtLocalAddressesUpdated),
	new(event.EvtPeerConnectednessChanged),
}

// reachWatch follows libp2p's reachability events on the host's bus
// (and, in auto mode, forwards the DHT's events to its own bus). It must
// be subscribed before the DHT starts; watch runs it.
type reachWatch struct {
	sub      event.Subscription
	bus      event.Bus // the DHT's bus, auto mode only
	emitters map[string]event.Emitter
	reachEm  event.Emitter
	unknown  event.Emitter // host bus, auto mode only: see newReachWatch
}

func (n *Node) newReachWatch(h host.Host) (*reachWatch, error) {
	w := &reachWatch{emitters: map[string]event.Emitter{}}
	evts := []any{new(event.EvtLocalReachabilityChanged), new(event.EvtAutoRelayAddrsUpdated)}
	if n.cfg.Reachability == ReachAuto {
		w.bus = eventbus.NewBus()
		for _, e := range dhtForwarded {
			em, err := w.bus.Emitter(e)
			if err != nil {
				return nil, fmt.Errorf("DHT event bus: %w", err)
			}
			w.emitters[strings.TrimPrefix(fmt.Sprintf("%T", e), "*")] = em
		}
		em, err := w.bus.Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
		if err != nil {
			return nil, fmt.Errorf("DHT event bus: %w", err)
		}
		w.reachEm = em
		evts = append(evts, dhtForwarded...)
	}
	sub, err := h.EventBus().Subscribe(evts, eventbus.BufSize(256), eventbus.Name("p2psip overlay reachability"))
	if err != nil {
		return nil, fmt.Errorf("subscribing to reachability events: %w", err)
	}
	w.sub = sub
	if n.cfg.Reachability == ReachAuto {
		// AutoNAT starts at "unknown" without saying so, and AutoRelay
		// starts only when told "private" or "unknown". AutoNAT may never
		// learn more: it asks only peers with public IP addresses, and
		// only about our public IP addresses, so behind a NAT whose
		// outside is itself a private network, or with only private
		// addresses (HTTPS-only LANs), it stays unknown. A peer whose
		// reachability is unknown therefore holds relay reservations
		// (when relays exist), as a private one does; AutoRelay stops
		// when AutoNAT finds the peer public.
		em, err := h.EventBus().Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("reachability emitter: %w", err)
		}
		w.unknown = em
		_ = em.Emit(event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityUnknown})
	}
	return w, nil
}

// dhtHostFor returns the host the DHT should be given.
func (w *reachWatch) dhtHostFor(h host.Host) host.Host {
	if w.bus == nil {
		return h
	}
	return dhtHost{Host: h, bus: w.bus}
}

func (w *reachWatch) close() {
	if w.unknown != nil {
		_ = w.unknown.Close()
	}
	_ = w.sub.Close()
	for _, em := range w.emitters {
		_ = em.Close()
	}
	if w.reachEm != nil {
		_ = w.reachEm.Close()
	}
}

// watchReachability runs until the node closes: it forwards events,
// applies the DHT policy, and logs what an operator needs to know about
// the peer's reachability when it changes.
func (n *Node) watchReachability(w *reachWatch) {
	defer n.wg.Done()
	defer w.close()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case e, ok := <-w.sub.Out():
			if !ok {
				return
			}
			switch ev := e.(type) {
			case event.EvtLocalReachabilityChanged:
				n.reach.mu.Lock()
				n.reach.libp2p = ev.Reachability
				n.reach.mu.Unlock()
				n.log.Info("libp2p reachability changed", "reachability", reachString(ev.Reachability))
			case event.EvtAutoRelayAddrsUpdated:
				n.reach.mu.Lock()
				n.reach.circuits = slices.Clone(ev.RelayAddrs)
				n.reach.mu.Unlock()
			default:
				if em := w.emitters[fmt.Sprintf("%T", e)]; em != nil {
					_ = em.Emit(e)
				}
				continue // no need to re-evaluate on every peer event
			}
		}
		if w.reachEm != nil {
			n.dhtPolicy(w.reachEm)
		}
		n.logReachability()
	}
}

// dhtPolicy feeds the DHT (ModeAutoServer) the reachability that decides
// its mode in auto mode; see dhtMode.
func (n *Node) dhtPolicy(em event.Emitter) {
	now := time.Now()
	public := n.knowsPublicServer()
	n.reach.mu.Lock()
	r := n.reach.libp2p
	if public {
		n.reach.lastPublic = now
	}
	if r == network.ReachabilityPrivate && !public && now.Sub(n.reach.lastPublic) > privateGrace {
		r = network.ReachabilityUnknown // serve the DHT: nobody else may
	}
	changed := r != n.reach.dhtReach
	n.reach.dhtReach = r
	n.reach.mu.Unlock()
	if !changed {
		return
	}
	_ = em.Emit(event.EvtLocalReachabilityChanged{Reachability: r})
	server := r != network.ReachabilityPrivate
	n.reach.dhtServer.Store(server)
	if server {
		n.log.Info("DHT mode: server", "why", "reachability "+reachString(r)+"; no public DHT server is known or this peer is dialable")
	} else {
		n.log.Info("DHT mode: client", "why", "reachability private and a public DHT server is known")
	}
}

// knowsPublicServer reports whether a peer in the routing table (DHT
// servers only) has a public address.
func (n *Node) knowsPublicServer() bool {
	h := n.hostNow()
	if h == nil || n.dht == nil {
		return false
	}
	for _, p := range n.dht.RoutingTable().ListPeers() {
		if slices.ContainsFunc(h.Peerstore().Addrs(p), manet.IsPublicAddr) {
			return true
		}
	}
	return false
}

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
