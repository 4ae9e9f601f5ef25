package overlay

import (
	"context"
	"fmt"
	"slices"
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
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
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
	// the relay only restarted). It must stay well under the 30 s in
	// which a private peer is to be reachable again after its relay dies:
	// the spare relay it moves to may be one that refused it once (a
	// restart, an overload, its membership check still waiting for
	// identify), and with a 30 s backoff the move waited that long (a
	// flaky TestPrivatePeerIsReachedThroughRelays). Retrying a refusing
	// relay every 5 s costs one stream.
	relayBackoff = 5 * time.Second
	// relayMinInterval is how often AutoRelay may ask for new relay
	// candidates (our peer source only lists connected peers, so asking is
	// cheap). A lost relay is replaced from candidates it already has, but
	// a candidate that once refused a reservation is dropped until the
	// source lists it again: a move can wait for the backoff, then this
	// interval, then the reservation itself (up to 10 s in go-libp2p), and
	// with 10 s for both the chain passed the test's 25 s under -race on
	// a loaded 2-core machine.
	relayMinInterval = 5 * time.Second
	// relayCount is how many relays an undialable peer holds reservations
	// on: one can die while the other keeps the peer reachable.
	relayCount = 2
	// privateGrace is how long a peer that AutoNAT found private stays a
	// DHT client after it last saw a public DHT server (see dhtPolicy).
	privateGrace = 30 * time.Second
	// quickDialFailure: a connect to a node that failed within this time
	// is tried once more, after a random pause and with the swarm's dial
	// backoff for that node cleared. Two peers that dial each other at
	// the same moment from their listening ports (libp2p's TCP transport
	// dials with SO_REUSEPORT) get one TCP connection by simultaneous open
	// (RFC 9293 §3.5), on which both start the security handshake as its
	// initiator; both dials fail at once and the swarm then refuses to
	// dial that node for 5 s, failing SIP streams and credential requests
	// meanwhile. A dial to an address that drops SYNs takes the whole dial
	// timeout, so it is not tried again: what fails slowly stays
	// remembered.
	quickDialFailure = 2 * time.Second
	// memberWait bounds how long the relay service waits for identify to
	// tell whether a peer asking for a reservation is an overlay member.
	memberWait = 5 * time.Second
)

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
		libp2p.SwarmOpts(swarm.WithDialTimeoutLocal(localDialTimeout), swarm.WithDialRanker(tcpFirstDialRanker)),
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
