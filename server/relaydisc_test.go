package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2psip/p2psip/overlay"
	"github.com/p2psip/p2psip/server/relay"
	"github.com/p2psip/p2psip/web"
	"github.com/prometheus/client_golang/prometheus"
)

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// discNode starts an overlay node for the discovery tests, joined to
// join when given.
func discNode(t *testing.T, join *overlay.Node) *overlay.Node {
	t.Helper()
	id, err := overlay.LoadOrCreateIdentity(t.TempDir() + "/node.key")
	if err != nil {
		t.Fatal(err)
	}
	n, err := overlay.New(overlay.Config{Name: "disc.test", Identity: id, Logger: quietLog(),
		Hold: time.Minute, RefreshInterval: time.Minute, ServiceTTL: 5 * time.Minute,
		ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	if join != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Connect(ctx, join.Host().Peerstore().PeerInfo(join.Host().ID())); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func testRelay(t *testing.T) (*relay.Server, Config) {
	t.Helper()
	c, err := parseConfig([]string{"--roles", "relay", "--turn", "127.0.0.1:0", "--public-addr", "127.0.0.1",
		"--relay-private-peers"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, err := startRelay(c, nil, prometheus.NewRegistry(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, c
}

func TestRelayURIs(t *testing.T) {
	ip := netip.MustParseAddr("203.0.113.5")
	plain := relayURIs(Config{}, ip, 3478, 443)
	if !slices.Equal(plain, []string{"turn:203.0.113.5:3478?transport=udp", "turn:203.0.113.5:3478?transport=tcp", "turns:203.0.113.5:443?transport=tcp"}) {
		t.Errorf("self-signed: %v", plain)
	}
	if browserURI(plain[2]) || !browserURI(plain[0]) || !browserURI("turns:relay.example.org:443?transport=tcp") || browserURI("turns:[2001:db8::1]:443") {
		t.Errorf("browserURI: pages must not get turns: to an IP literal")
	}
	if got := relayURIs(Config{FQDN: "relay.example.org"}, ip, 3478, 443); got[2] != "turns:203.0.113.5:443?transport=tcp" {
		t.Errorf("a name without a trusted certificate advertises turns: under the name: %v", got)
	}
	got := relayURIs(Config{FQDN: "relay.example.org", ACME: true}, ip, 3478, 443)
	if len(got) != 3 || got[2] != "turns:relay.example.org:443?transport=tcp" {
		t.Errorf("ACME: %v", got)
	}
	if got := relayURIs(Config{FQDN: "relay.example.org", TLSCert: "c.pem"}, netip.MustParseAddr("2001:db8::1"), 3478, 8443); got[0] != "turn:[2001:db8::1]:3478?transport=udp" || got[2] != "turns:relay.example.org:8443?transport=tcp" {
		t.Errorf("IPv6, --tls-cert: %v", got)
	}
}

// A relay peer announces itself and mints for members; another peer
// finds it, probes it, and lists it in /api/config's ICE servers after
// the static ones, with a credential the relay accepts. A record that
// claims another node's relay fails its probe and is not handed out; a
// dead relay is dropped.
func TestRelayDiscoveryICEServers(t *testing.T) {
	a := discNode(t, nil)
	b := discNode(t, a)
	faker := discNode(t, a)
	rly, cfg := testRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uris, err := serveRelayRole(ctx, cfg, a, rly, 443, newRelayDirectory(a, nil, quietLog()), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// The faker announces a's URIs, but its credentials come from its
	// own relay's secret: a's relay refuses them.
	other, _ := testRelay(t)
	faker.HandleTURNCreds(0, func(_ context.Context, requester, user string) (overlay.TURNCred, error) {
		return mintFor(other, requester, user, uris)
	})
	if err := faker.Announce(ctx, overlay.ServiceEntry{Service: overlay.ServiceRelay, URIs: uris}); err != nil {
		t.Logf("announce: %v", err) // as above: stored either way
	}
	dir := newRelayDirectory(b, nil, quietLog())
	static := func(context.Context) []web.ICEServer {
		return []web.ICEServer{{URLs: []string{"stun:stun.example.org"}}}
	}
	deadline := time.Now().Add(20 * time.Second)
	for dir.refresh(ctx) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no working relay found")
		}
		time.Sleep(200 * time.Millisecond)
	}
	servers := dir.iceServers(static)(ctx)
	if len(servers) != 2 || servers[0].URLs[0] != "stun:stun.example.org" {
		t.Fatalf("ICE servers: %+v (the faker's record must not be handed out)", servers)
	}
	s := servers[1]
	pageURIs := slices.DeleteFunc(slices.Clone(uris), func(u string) bool { return !browserURI(u) })
	if !slices.Equal(s.URLs, pageURIs) || len(pageURIs) != len(uris)-1 || !strings.HasSuffix(s.Username, ":"+b.ID()+"/"+strings.Split(s.Username, "/")[1]) ||
		s.Credential == "" || time.Until(time.Unix(s.Expires, 0)) < 5*time.Minute {
		t.Fatalf("relay entry: %+v", s)
	}
	cred := overlay.TURNCred{Username: s.Username, Password: s.Credential}
	for _, u := range s.URLs {
		if _, err := probeTURN(ctx, u, rly.Realm(), cred); err != nil {
			t.Errorf("the handed-out credential does not allocate on %s: %v", u, err)
		}
	}
	// The credential is reused by a few pages, then a fresh one is minted.
	seen := map[string]bool{s.Username: true}
	for range relayCredReuse + 1 {
		got := dir.iceServers(nil)(ctx)
		if len(got) != 1 {
			t.Fatalf("ICE servers: %+v", got)
		}
		seen[got[0].Username] = true
	}
	if len(seen) < 2 {
		t.Error("one credential handed out without limit")
	}
	// The relay dies: the next round drops it.
	_ = rly.Close()
	if n := dir.refresh(ctx); n != 0 {
		t.Fatalf("%d relays still work after the relay closed", n)
	}
	if got := dir.iceServers(nil)(ctx); len(got) != 0 {
		t.Fatalf("a dead relay is handed out: %+v", got)
	}
}

// The directory hands out the two fastest working relays, fastest first,
// and not the ones whose probe fails.
func TestRelayDirectoryRanksByRTT(t *testing.T) {
	a := discNode(t, nil)
	rtts := map[string]time.Duration{}
	for i, rtt := range []time.Duration{30, 10, -1, 20} {
		n := discNode(t, a)
		uri := "turn:192.0.2." + strconv.Itoa(i+1) + ":3478?transport=udp"
		rtts[uri] = rtt * time.Millisecond
		n.HandleTURNCreds(0, func(_ context.Context, requester, user string) (overlay.TURNCred, error) {
			return overlay.TURNCred{Username: "9999999999:" + requester + "/" + user, Password: "pw",
				Expires: time.Now().Add(relayCredTTL).Unix(), URLs: []string{uri}}, nil
		})
		// Right after a join, the join's own republish may race this
		// one (ErrStale): the entry is stored either way.
		if err := n.Announce(context.Background(), overlay.ServiceEntry{Service: overlay.ServiceRelay, URIs: []string{uri}}); err != nil {
			t.Logf("announce: %v", err)
		}
	}
	dir := newRelayDirectory(a, nil, quietLog())
	dir.probe = func(_ context.Context, uri, _ string, c overlay.TURNCred) (time.Duration, error) {
		if c.Password != "pw" || rtts[uri] < 0 {
			return 0, errors.New("no answer")
		}
		return rtts[uri], nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(20 * time.Second)
	for dir.refresh(ctx) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the three working relays are not all found")
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := dir.iceServers(nil)(ctx)
	if len(got) != 2 || got[0].URLs[0] != "turn:192.0.2.2:3478?transport=udp" || got[1].URLs[0] != "turn:192.0.2.4:3478?transport=udp" {
		t.Fatalf("ICE servers: %+v, want the 10 ms and 20 ms relays in that order", got)
	}
}

// A peer behind a network that passes only HTTPS reaches a relay over
// turns: on port 443 only: when TURN over UDP and TCP do not answer, the
// probe tries TLS and the relay is handed out.
func TestRelayProbeFallsBackToTLS(t *testing.T) {
	uris := []string{"turns:relay.example.org:443?transport=tcp", "turn:192.0.2.9:3478?transport=tcp", "turn:192.0.2.9:3478?transport=udp"}
	if got := probeURIs(uris); !slices.Equal(got, []string{uris[2], uris[1], uris[0]}) {
		t.Fatalf("probe order: %v", got)
	}
	a := discNode(t, nil)
	n := discNode(t, a)
	n.HandleTURNCreds(0, func(_ context.Context, requester, user string) (overlay.TURNCred, error) {
		return overlay.TURNCred{Username: "9999999999:" + requester + "/" + user, Password: "pw",
			Expires: time.Now().Add(relayCredTTL).Unix(), URLs: uris}, nil
	})
	if err := n.Announce(context.Background(), overlay.ServiceEntry{Service: overlay.ServiceRelay, URIs: uris}); err != nil {
		t.Logf("announce: %v", err)
	}
	dir := newRelayDirectory(a, nil, quietLog())
	var mu sync.Mutex
	var tried []string
	dir.probe = func(ctx context.Context, uri, _ string, _ overlay.TURNCred) (time.Duration, error) {
		mu.Lock()
		tried = append(tried, uri)
		mu.Unlock()
		if strings.HasPrefix(uri, "turns:") {
			return 5 * time.Millisecond, nil
		}
		<-ctx.Done() // no answer over UDP or TCP: the attempt's share runs out
		return 0, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deadline := time.Now().Add(40 * time.Second)
	for dir.refresh(ctx) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the relay reachable over turns: only is not handed out; probes tried %v", tried)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	last := tried[len(tried)-3:]
	mu.Unlock()
	if !slices.Equal(last, []string{uris[2], uris[1], uris[0]}) {
		t.Errorf("probes tried %v, want UDP, TCP, then TLS", last)
	}
	if got := dir.iceServers(nil)(ctx); len(got) != 1 || !slices.Equal(got[0].URLs, uris) {
		t.Errorf("ICE servers: %+v", got)
	}
}
