package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/p2psip/p2psip/overlay"
	"github.com/p2psip/p2psip/server/relay"
	"github.com/p2psip/p2psip/web"
	"github.com/pion/logging"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Relay discovery: a relay peer announces its TURN URIs in the overlay's
// relay service records (signed by its node key) and mints short-lived
// credentials for overlay members over the turn-cred stream protocol.
// Every peer finds the relays, probes each with one Allocate round trip
// using a credential the relay minted for it (so a record whose addresses
// are not that node's relay fails the probe: only the relay's own secret
// makes the Allocate succeed), keeps the working ones sorted by RTT, and
// hands the best two to its browsers in /api/config with fresh
// credentials.

const (
	// relayCredTTL is the lifetime of the credentials a relay mints for
	// the overlay; the page fetches new ones before they expire.
	relayCredTTL = 10 * time.Minute
	// relayCredReuse: a credential is handed to at most this many pages
	// (one user id's allocation cap holds a few calls) ...
	relayCredReuse = 4
	// relayCredFresh: ... and only while it has this much life left.
	relayCredFresh = 6 * time.Minute
	// relayProbeEvery is how often the relays are found and probed again.
	relayProbeEvery = 60 * time.Second
	// relayProbeRetry is the next round when no relay works yet.
	relayProbeRetry = 10 * time.Second
	// relayProbeTimeout bounds one relay's probe (credential and Allocate).
	relayProbeTimeout = 10 * time.Second
	// relaysHandedOut is how many overlay relays /api/config lists.
	relaysHandedOut = 2
	// relayMintWait bounds minting while /api/config waits.
	relayMintWait = 3 * time.Second
)

// relayURIs are the TURN URIs a relay announces: UDP and TCP on its
// public address and --turn port, and TURN over TLS on the HTTPS port:
// under its DNS name when it has a certificate a browser trusts, else on
// its address. A browser refuses turns: to an IP literal or with an
// untrusted certificate, so pages never get the second form
// (browserURI); the media bridges of peers behind a LAN that passes only
// HTTPS use it (they do not verify the relay's certificate: media over a
// relay is plain RTP either way).
func relayURIs(cfg Config, relayIP netip.Addr, turnPort, httpsPort int) []string {
	hp := net.JoinHostPort(relayIP.String(), strconv.Itoa(turnPort))
	uris := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	tlsHost := relayIP.String()
	if cfg.FQDN != "" && (cfg.ACME || cfg.TLSCert != "") {
		tlsHost = cfg.FQDN
	}
	return append(uris, "turns:"+net.JoinHostPort(tlsHost, strconv.Itoa(httpsPort))+"?transport=tcp")
}

// browserURI reports whether a page can use a relay URI: not turns: to an
// IP literal (see relayURIs).
func browserURI(u string) bool {
	rest, ok := strings.CutPrefix(u, "turns:")
	if !ok {
		return true
	}
	hostport, _, _ := strings.Cut(rest, "?")
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	_, err = netip.ParseAddr(strings.Trim(host, "[]"))
	return err != nil
}

// udpPort is the port of the relay's first UDP socket.
func udpPort(rly *relay.Server) (int, error) {
	for _, a := range rly.Addrs() {
		if hp, ok := strings.CutPrefix(a, "udp "); ok {
			ap, err := netip.ParseAddrPort(hp)
			if err == nil {
				return int(ap.Port()), nil
			}
		}
	}
	return 0, errors.New("the relay has no UDP socket")
}

// serveRelayRole announces this peer's relay in the overlay (the refresh
// loop republishes it, Close withdraws it) and answers credential
// requests. It returns the URIs announced.
func serveRelayRole(ctx context.Context, cfg Config, node *overlay.Node, rly *relay.Server, httpsPort int, dir *relayDirectory, log *slog.Logger) ([]string, error) {
	relayIP, err := relayAddr(cfg)
	if err != nil {
		return nil, err
	}
	port, err := udpPort(rly)
	if err != nil {
		return nil, err
	}
	uris := relayURIs(cfg, relayIP, port, httpsPort)
	node.HandleTURNCreds(0, func(_ context.Context, requester, user string) (overlay.TURNCred, error) {
		return mintFor(rly, requester, user, uris)
	})
	dir.setLocal(rly, uris)
	if cfg.FQDN == "" || (!cfg.ACME && cfg.TLSCert == "") {
		log.Info("relay: not advertising turns: on the HTTPS port (browsers accept it only with --fqdn and --acme or --tls-cert); TURN over UDP and TCP is advertised", "uris", uris)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = node.Announce(actx, overlay.ServiceEntry{Service: overlay.ServiceRelay, URIs: uris,
		Data: map[string]string{"realm": rly.Realm()}})
	if err != nil {
		log.Warn("announcing the relay role failed; the refresh loop retries", "err", err)
	}
	return uris, nil
}

// mintFor mints a credential for requester's user (requester's bridge
// when user is empty): the user id in the username names the node, so a
// credential found in the wild tells whom it was minted for.
func mintFor(rly *relay.Server, requester, user string, uris []string) (overlay.TURNCred, error) {
	id := requester
	if user != "" {
		id += "/" + user
	}
	c, err := rly.Mint(id, relayCredTTL)
	if err != nil {
		return overlay.TURNCred{}, err
	}
	return overlay.TURNCred{Username: c.Username, Password: c.Password, Expires: c.Expires.Unix(), URLs: uris}, nil
}

// probedRelay is a relay that answered its last probe.
type probedRelay struct {
	node  string
	uris  []string
	good  string // the URI the last probe allocated through
	realm string
	rtt   time.Duration
}

// cachedCred is the credential a relay's entry in /api/config carries.
type cachedCred struct {
	cred   overlay.TURNCred
	handed int
}

// relayDirectory finds, probes and ranks the overlay's relays.
type relayDirectory struct {
	node *overlay.Node
	log  *slog.Logger
	// probe is the Allocate round trip; tests replace it.
	probe func(ctx context.Context, uri, realm string, c overlay.TURNCred) (time.Duration, error)

	mu        sync.Mutex
	local     *relay.Server // this peer's own relay, if any
	localURIs []string
	working   []probedRelay // by RTT
	creds     map[string]*cachedCred
	seq       int // names the user ids of page credentials
	// selfTest reports the own relay's self-test ("" while it runs);
	// nil without the relay role.
	selfTest func() (string, float64)

	workingGauge prometheus.Gauge
	probes       *prometheus.CounterVec
}

// newRelayDirectory makes a directory; reg (may be nil) takes its
// metrics.
func newRelayDirectory(node *overlay.Node, reg prometheus.Registerer, log *slog.Logger) *relayDirectory {
	d := &relayDirectory{node: node, log: log, probe: probeTURN, creds: map[string]*cachedCred{},
		workingGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "p2psip_overlay_relays_working",
			Help: "Overlay relays (TURN) whose last probe allocated: the ones /api/config hands out."}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_overlay_relay_probes_total",
			Help: "Probes of overlay relays by result: ok, no_credential (the relay refused or was unreachable), failed (the Allocate failed)."},
			[]string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(d.workingGauge, d.probes)
	}
	return d
}

// status is the directory's part of /api/overlay: the working relays,
// fastest first, and this peer's own relay self-test.
func (d *relayDirectory) status() web.TURNStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := web.TURNStatus{Role: d.local != nil, Working: []web.TURNRelay{}}
	for _, r := range d.working {
		st.Working = append(st.Working, web.TURNRelay{Node: r.node, RTTMillis: float64(r.rtt.Microseconds()) / 1000})
	}
	if d.selfTest != nil {
		st.SelfTest, st.SelfTestRTTMillis = d.selfTest()
	}
	return st
}

func (d *relayDirectory) setLocal(rly *relay.Server, uris []string) {
	d.mu.Lock()
	d.local, d.localURIs = rly, uris
	d.mu.Unlock()
}

// run probes now and then every relayProbeEvery until ctx ends.
func (d *relayDirectory) run(ctx context.Context) {
	for {
		next := relayProbeEvery
		if d.refresh(ctx) == 0 {
			next = relayProbeRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// refresh finds the relays, probes each and keeps the working ones. It
// returns how many work.
func (d *relayDirectory) refresh(ctx context.Context) int {
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	entries, err := d.node.FindService(fctx, overlay.ServiceRelay, 10)
	cancel()
	if err != nil && !errors.Is(err, overlay.ErrNotFound) {
		d.log.Debug("finding relays failed", "err", err)
	}
	var mu sync.Mutex
	var working []probedRelay
	fresh := map[string]overlay.TURNCred{}
	var wg sync.WaitGroup
	for _, e := range entries {
		if !slices.ContainsFunc(e.URIs, isTURNURI) {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, relayProbeTimeout)
			defer cancel()
			cred, err := d.mint(pctx, e.Node, d.nextUser())
			if err != nil {
				d.log.Info("relay probe: no credential", "relay", e.Node, "err", err)
				d.probes.WithLabelValues("no_credential").Inc()
				return
			}
			rtt, uri, err := d.probeAny(pctx, probeURIs(e.URIs), e.Data["realm"], cred)
			if err != nil {
				d.log.Info("relay probe failed: not handed out", "relay", e.Node, "uri", uri, "err", err)
				d.probes.WithLabelValues("failed").Inc()
				return
			}
			d.probes.WithLabelValues("ok").Inc()
			mu.Lock()
			defer mu.Unlock()
			working = append(working, probedRelay{node: e.Node, uris: e.URIs, good: uri, realm: e.Data["realm"], rtt: rtt})
			fresh[e.Node] = cred
		})
	}
	wg.Wait()
	slices.SortFunc(working, func(a, b probedRelay) int { return cmp.Compare(a.rtt, b.rtt) })
	d.mu.Lock()
	defer d.mu.Unlock()
	before := len(d.working)
	d.working = working
	d.workingGauge.Set(float64(len(working)))
	for id := range d.creds {
		if _, ok := fresh[id]; !ok {
			delete(d.creds, id)
		}
	}
	// The probe's credential allocated once and released: the pages get it.
	for id, c := range fresh {
		if old := d.creds[id]; old == nil || !usable(old, time.Now()) {
			d.creds[id] = &cachedCred{cred: c}
		}
	}
	if len(working) != before {
		d.log.Info("overlay relays", "working", len(working), "found", len(entries))
	}
	return len(working)
}

func isTURNURI(u string) bool {
	return strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:")
}

// probeURIs are the URIs to probe, in order: TURN over UDP, over TCP,
// then over TLS. A peer behind a network that passes only HTTPS (the
// browsers it serves sit behind the same one) reaches a relay through
// turns: on port 443 only, and must still hand that relay out.
func probeURIs(uris []string) []string {
	var out []string
	for _, pick := range []func(string) bool{
		func(u string) bool { return strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=udp") },
		func(u string) bool { return strings.HasPrefix(u, "turn:") && !strings.HasSuffix(u, "?transport=udp") },
		func(u string) bool { return strings.HasPrefix(u, "turns:") },
	} {
		for _, u := range uris {
			if pick(u) && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// probeAny probes uris in order, each with an equal share of what is left
// of ctx, until one allocates; it returns that one's RTT and URI, or the
// last URI tried and its error.
func (d *relayDirectory) probeAny(ctx context.Context, uris []string, realm string, cred overlay.TURNCred) (time.Duration, string, error) {
	if len(uris) == 0 {
		return 0, "", errors.New("no TURN URI to probe")
	}
	var err error
	for i, u := range uris {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(uris)-i))
		}
		var rtt time.Duration
		rtt, err = d.probe(actx, u, realm, cred)
		cancel()
		if err == nil {
			return rtt, u, nil
		}
		if ctx.Err() != nil {
			return 0, u, err
		}
	}
	return 0, uris[len(uris)-1], err
}

// workingRelays are the relays whose last probe allocated, fastest first.
func (d *relayDirectory) workingRelays() []probedRelay {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.working)
}

func (d *relayDirectory) nextUser() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq = (d.seq + 1) % 1000
	return "web-" + strconv.Itoa(d.seq)
}

// mint gets a credential from relay id: from this peer's own relay
// directly, else over the overlay.
func (d *relayDirectory) mint(ctx context.Context, id, user string) (overlay.TURNCred, error) {
	d.mu.Lock()
	local, uris := d.local, d.localURIs
	d.mu.Unlock()
	if id == d.node.ID() {
		if local == nil {
			return overlay.TURNCred{}, errors.New("this peer's relay is not running")
		}
		return mintFor(local, id, user, uris)
	}
	return d.node.RequestTURNCred(ctx, id, user)
}

func usable(c *cachedCred, now time.Time) bool {
	return c.handed < relayCredReuse && time.Unix(c.cred.Expires, 0).Sub(now) > relayCredFresh
}

// iceServers is web.Config.ICEServers: the static --ice-servers, then up
// to relaysHandedOut working overlay relays, the fastest first, each with
// a credential and its expiry.
func (d *relayDirectory) iceServers(static func(context.Context) []web.ICEServer) func(context.Context) []web.ICEServer {
	return func(ctx context.Context) []web.ICEServer {
		var out []web.ICEServer
		if static != nil {
			out = append(out, static(ctx)...)
		}
		d.mu.Lock()
		best := slices.Clone(d.working[:min(relaysHandedOut, len(d.working))])
		d.mu.Unlock()
		creds := make([]overlay.TURNCred, len(best))
		ctx, cancel := context.WithTimeout(ctx, relayMintWait)
		defer cancel()
		var wg sync.WaitGroup
		for i, r := range best {
			wg.Go(func() { creds[i] = d.credFor(ctx, r.node) })
		}
		wg.Wait()
		for i, r := range best {
			c := creds[i]
			if c.Username == "" {
				continue
			}
			urls := slices.DeleteFunc(slices.Clone(r.uris), func(u string) bool { return !browserURI(u) })
			if len(urls) == 0 {
				continue
			}
			out = append(out, web.ICEServer{URLs: urls, Username: c.Username, Credential: c.Password, Expires: c.Expires})
		}
		return out
	}
}

// credFor returns a credential of relay id for a page: the cached one
// while it is fresh and not handed out too often, else a new one; when
// minting fails, the cached one while it lives a minute more.
func (d *relayDirectory) credFor(ctx context.Context, id string) overlay.TURNCred {
	now := time.Now()
	d.mu.Lock()
	c := d.creds[id]
	if c != nil && usable(c, now) {
		c.handed++
		cred := c.cred
		d.mu.Unlock()
		return cred
	}
	d.mu.Unlock()
	cred, err := d.mint(ctx, id, d.nextUser())
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.log.Debug("minting a TURN credential for a page failed", "relay", id, "err", err)
		if c != nil && time.Unix(c.cred.Expires, 0).Sub(now) > time.Minute {
			return c.cred
		}
		return overlay.TURNCred{}
	}
	d.creds[id] = &cachedCred{cred: cred, handed: 1}
	return cred
}

// probeTURN allocates once on the relay at uri with cred and releases
// the allocation; it returns the Allocate exchange's duration.
func probeTURN(ctx context.Context, uri, realm string, cred overlay.TURNCred) (time.Duration, error) {
	start := time.Now()
	a, err := allocateTURN(ctx, uri, realm, cred, "p2psip-probe")
	if err != nil {
		return 0, err
	}
	rtt := time.Since(start)
	_ = a.Close()
	return rtt, nil
}

// turnAllocation is a live allocation: the relayed socket, the client
// that keeps it (refreshes, permissions) and its connection to the relay.
type turnAllocation struct {
	net.PacketConn // relayed: LocalAddr is the relayed address
	client         *turn.Client
	conn           net.PacketConn
}

// CreatePermission installs permissions for peers at once (RFC 8656 §9),
// before the first packet to them.
func (a *turnAllocation) CreatePermission(addrs ...net.Addr) error {
	return a.client.CreatePermission(addrs...)
}

func (a *turnAllocation) Close() error {
	err := a.PacketConn.Close()
	a.client.Close()
	_ = a.conn.Close()
	return err
}

// allocateTURN allocates on the relay at uri (turn: over UDP or TCP,
// turns: over TLS) with cred.
func allocateTURN(ctx context.Context, uri, realm string, cred overlay.TURNCred, software string) (*turnAllocation, error) {
	rest, ok := strings.CutPrefix(uri, "turn:")
	secure := false
	if !ok {
		rest, secure = strings.CutPrefix(uri, "turns:")
		if !secure {
			return nil, fmt.Errorf("cannot use %q: want a turn: or turns: URI", uri)
		}
	}
	hostport, query, _ := strings.Cut(rest, "?")
	var conn net.PacketConn
	switch {
	case secure && (query == "" || query == "transport=tcp"):
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, err
		}
		// Not verified here: the long-term credential's password never
		// crosses the wire, media over a relay is plain RTP anyway, and
		// the browser verifies the certificate itself before it uses the
		// relay.
		d := tls.Dialer{Config: &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // see above
		c, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return nil, err
		}
		conn = turn.NewSTUNConn(c)
	case secure:
		return nil, fmt.Errorf("cannot use %q: unknown transport", uri)
	case query == "" || query == "transport=udp":
		// The client socket's family is the family pion asks to relay.
		network := "udp4"
		if h, _, err := net.SplitHostPort(hostport); err == nil && strings.Contains(h, ":") {
			network = "udp6"
		}
		pc, err := net.ListenPacket(network, ":0")
		if err != nil {
			return nil, err
		}
		conn = pc
	case query == "transport=tcp":
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return nil, err
		}
		conn = turn.NewSTUNConn(c)
	default:
		return nil, fmt.Errorf("cannot use %q: unknown transport", uri)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: hostport, TURNServerAddr: hostport,
		Username: cred.Username, Password: cred.Password, Realm: realm,
		Conn: conn, LoggerFactory: lf, Software: software,
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := c.Listen(); err != nil {
		c.Close()
		_ = conn.Close()
		return nil, err
	}
	relayed, err := c.AllocateWithContext(ctx)
	if err != nil {
		c.Close()
		_ = conn.Close()
		return nil, fmt.Errorf("allocating on %s: %w", hostport, err)
	}
	return &turnAllocation{PacketConn: relayed, client: c, conn: conn}, nil
}
