package overlay

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestBurstOfJoins: 40 nodes join one bootstrap node at the same moment,
// with no staggering by the caller; Connect's retries must get every one
// in.
func TestBurstOfJoins(t *testing.T) {
	const n = 40
	boot, err := New(testConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(boot) })
	nodes := make([]*Node, n)
	for i := range nodes {
		if nodes[i], err = New(testConfig(t, nil)); err != nil {
			t.Fatal(err)
		}
		node := nodes[i]
		t.Cleanup(func() { closeQuietly(node) })
	}
	tn := &testNet{nodes: []*Node{boot}}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, node := range nodes {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := node.Connect(ctx, tn.info(0)); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The bootstrap node adds a peer to its routing table once identify
	// has told it the peer serves the DHT, which may come after Connect
	// returned (under -race on two cores, up to seconds later).
	waitFor(t, 15*time.Second, "half the joiners in the bootstrap routing table", func() bool {
		return boot.dht.RoutingTable().Size() >= n/2
	})
}
