package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeMinter answers with the requester and user in the username.
func fakeMinter(calls *atomic.Int32) TURNCredMinter {
	return func(_ context.Context, requester, user string) (TURNCred, error) {
		calls.Add(1)
		if user == "boom" {
			return TURNCred{}, errors.New("mint failed")
		}
		id := requester
		if user != "" {
			id += "/" + user
		}
		return TURNCred{Username: "1:" + id, Password: "pw", Expires: time.Now().Add(10 * time.Minute).Unix(),
			URLs: []string{"turn:192.0.2.7:3478?transport=udp"}}, nil
	}
}

// A member gets a credential minted for its own node id (and user); the
// relay's answer carries the URLs; a minting error reaches the requester.
func TestTURNCredOverTheOverlay(t *testing.T) {
	tn := newTestNet(t, 3, nil)
	relay, asker := tn.nodes[1], tn.nodes[2]
	var calls atomic.Int32
	relay.HandleTURNCreds(0, fakeMinter(&calls))
	// The asker finds the relay through node 0, which adds a peer to its
	// routing table only once identify has run: under load that can be
	// after newTestNet returns.
	relayID := mustDecode(t, relay.ID())
	waitFor(t, 10*time.Second, "the relay in node 0's routing table", func() bool {
		return tn.nodes[0].dht.RoutingTable().Find(relayID) != ""
	})
	cred, err := asker.RequestTURNCred(ctxT(t), relay.ID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != "1:"+asker.ID() || cred.Password != "pw" || len(cred.URLs) != 1 || cred.Expires < time.Now().Unix() {
		t.Fatalf("credential: %+v", cred)
	}
	cred, err = asker.RequestTURNCred(ctxT(t), relay.ID(), "alice.web-1")
	if err != nil || cred.Username != "1:"+asker.ID()+"/alice.web-1" {
		t.Fatalf("on behalf of a user: %+v %v", cred, err)
	}
	if _, err := asker.RequestTURNCred(ctxT(t), relay.ID(), "boom"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "mint failed") {
		t.Fatalf("minting error: %v", err)
	}
	if _, err := asker.RequestTURNCred(ctxT(t), relay.ID(), "a:b"); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("bad user id: %v", err)
	}
	if _, err := asker.RequestTURNCred(ctxT(t), asker.ID(), ""); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("to itself: %v", err)
	}
	// A node that serves no credentials: unreachable protocol.
	if _, err := asker.RequestTURNCred(ctxT(t), tn.nodes[0].ID(), ""); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no relay: %v", err)
	}
}

// The per-node quota: the n+1th request within a minute is refused, and
// another node still gets its own.
func TestTURNCredQuotaPerNode(t *testing.T) {
	tn := newTestNet(t, 3, nil)
	relay := tn.nodes[0]
	var calls atomic.Int32
	relay.HandleTURNCreds(2, fakeMinter(&calls))
	for i := range 2 {
		if _, err := tn.nodes[1].RequestTURNCred(ctxT(t), relay.ID(), ""); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := tn.nodes[1].RequestTURNCred(ctxT(t), relay.ID(), ""); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("third request: %v, want a quota refusal", err)
	}
	if _, err := tn.nodes[2].RequestTURNCred(ctxT(t), relay.ID(), ""); err != nil {
		t.Fatalf("another node: %v", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("minted %d times, want 3", calls.Load())
	}
}

func TestNodeQuotaWindow(t *testing.T) {
	q := &nodeQuota{perMinute: 1, used: map[peer.ID]*quotaWindow{}}
	now := time.Unix(1000, 0)
	if !q.take("a", now) || q.take("a", now.Add(time.Second)) || !q.take("b", now) {
		t.Fatal("first window")
	}
	if !q.take("a", now.Add(61*time.Second)) {
		t.Fatal("a new minute gives a new credential")
	}
	if len(q.used) != 1 {
		t.Fatalf("old windows are not swept: %d", len(q.used))
	}
}

// A libp2p host that is no member of the overlay gets no credential, and
// the minter is never called.
func TestTURNCredRefusesStrangers(t *testing.T) {
	relay := loneNode(t)
	var calls atomic.Int32
	relay.HandleTURNCreds(0, fakeMinter(&calls))
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx := ctxT(t)
	if err := h.Connect(ctx, infoOf(relay)); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, relay.host.ID(), relay.TURNCredProtocol())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Write([]byte(`{}`))
	_ = s.CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(s)
	var r credResponse
	if err := json.Unmarshal(b, &r); err != nil || r.Username != "" || !strings.Contains(r.Error, "not a member") {
		t.Fatalf("a stranger got %q (%v)", b, err)
	}
	if calls.Load() != 0 {
		t.Fatal("minted for a stranger")
	}
}

// Relay records: announced with TURN URIs, found by others with the
// node's signature checked, withdrawn on Close.
func TestRelayRecords(t *testing.T) {
	tn := newTestNet(t, 5, nil)
	uris := []string{"turn:192.0.2.1:3478?transport=udp", "turn:192.0.2.1:3478?transport=tcp"}
	if err := tn.nodes[1].Announce(ctxT(t), ServiceEntry{Service: ServiceRelay, URIs: uris, Data: map[string]string{"realm": "p2psip"}}); err != nil {
		t.Fatal(err)
	}
	if err := tn.nodes[2].Announce(ctxT(t), ServiceEntry{Service: ServiceRelay, URIs: []string{"turn:192.0.2.2:3478?transport=udp"}}); err != nil {
		t.Fatal(err)
	}
	found, err := tn.nodes[4].FindService(ctxT(t), ServiceRelay, 10)
	if err != nil || len(found) != 2 {
		t.Fatalf("found %+v, %v", found, err)
	}
	for _, f := range found {
		if f.Node == tn.nodes[1].ID() && (len(f.URIs) != 2 || f.URIs[0] != uris[0] || f.Data["realm"] != "p2psip") {
			t.Fatalf("entry: %+v", f)
		}
	}
	// Proxy records are another service: not mixed in.
	if _, err := tn.nodes[4].FindService(ctxT(t), ServiceProxy, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("proxies: %v", err)
	}
	closeQuietly(tn.nodes[2])
	found, err = tn.nodes[3].FindService(ctxT(t), ServiceRelay, 10)
	if err != nil || len(found) != 1 || found[0].Node != tn.nodes[1].ID() {
		t.Fatalf("after close: %+v %v", found, err)
	}
}
