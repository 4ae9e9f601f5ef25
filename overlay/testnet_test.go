package overlay

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testNet is N real nodes on loopback in one process.
type testNet struct {
	nodes []*Node
}

// loneNode starts one node alone in its overlay, closed when the test ends.
func loneNode(t testing.TB) *Node {
	t.Helper()
	n, err := New(testConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(n) })
	return n
}

func testConfig(t testing.TB, mod func(*Config)) Config {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir() + "/node.key")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name:            "test.overlay",
		Identity:        id,
		ListenAddrs:     []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		Hold:            time.Minute,
		RefreshInterval: time.Minute,
		ServiceTTL:      5 * time.Minute,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// newTestNet starts n nodes and joins them through node 0, at most 8 at
// a time: a burst of simultaneous joins on one host is what the retries in
// Connect are for, but the test should not depend on them.
func newTestNet(t testing.TB, n int, mod func(*Config)) *testNet {
	t.Helper()
	tn := &testNet{nodes: make([]*Node, n)}
	for i := range n {
		node, err := New(testConfig(t, mod))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		tn.nodes[i] = node
		t.Cleanup(func() { closeQuietly(node) })
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tn.nodes[i].Connect(ctx, tn.info(0)); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One routing-table refresh each so that every node knows its
	// neighbourhood, not only node 0.
	for _, node := range tn.nodes {
		node.RefreshRoutingTable()
	}
	return tn
}

func (tn *testNet) info(i int) peer.AddrInfo {
	h := tn.nodes[i].host
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

func closeQuietly(n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.Close(ctx)
}

// kill stops a node abruptly: no withdrawal, as if the machine vanished.
func (tn *testNet) kill(i int) {
	n := tn.nodes[i]
	n.mu.Lock()
	n.hosted = map[string]*hostedReg{}
	n.services = map[string]*hostedSvc{}
	n.mu.Unlock()
	closeQuietly(n)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
