package overlay

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLookup measures Lookup of registrations across a 20-node
// overlay on loopback, and reports p50/p99 beside the mean. The full
// 20/100-node table with the churn check is `go run ./bench/overlay`.
func BenchmarkLookup(b *testing.B) {
	// The DHT, not the lookup cache (BenchmarkLookupLonePeer has both).
	tn := newTestNet(b, testNodes, func(c *Config) { c.LookupCacheTTL = -1 })
	const regs = 50
	for i := range regs {
		register(b, tn.nodes[i%testNodes], fmt.Sprintf("sip:b%d@test.overlay", i), mustKey(b), binding("d", "sip:x@127.0.0.1", time.Hour))
	}
	lat := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := tn.nodes[(i*7)%testNodes].Lookup(ctxT(b), fmt.Sprintf("sip:b%d@test.overlay", i%regs)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkRegister measures Register (lookup of the current record,
// sign, put to the closest peers) in a 20-node overlay.
func BenchmarkRegister(b *testing.B) {
	tn := newTestNet(b, testNodes, nil)
	key := mustKey(b)
	for i := 0; b.Loop(); i++ {
		register(b, tn.nodes[i%testNodes], fmt.Sprintf("sip:r%d@test.overlay", i), key, binding("d", "sip:x@127.0.0.1", time.Hour))
	}
}

// BenchmarkRegisterLonePeer measures Register on a peer alone in its
// overlay, the set-up of bench/sip/run.sh: look up the current record,
// sign the next one, validate and store it. Each op registers a new AOR.
func BenchmarkRegisterLonePeer(b *testing.B) {
	n := loneNode(b)
	key := mustKey(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		register(b, n, fmt.Sprintf("sip:l%d@test.overlay", i), key, binding("d", "sip:x@127.0.0.1", time.Hour))
	}
}

// BenchmarkRegisterLonePeerParallel is BenchmarkRegisterLonePeer with
// many REGISTERs in flight, as a SIP server has under load: 64 goroutines
// per P, all signing with the one key of the node (the server's Owner).
// Run it with -cpu 1 under taskset -c 0 to match the one-core SIP
// benchmark; this is where batch signing pays.
func BenchmarkRegisterLonePeerParallel(b *testing.B) {
	n := loneNode(b)
	key := mustKey(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			aor := fmt.Sprintf("sip:p%d@test.overlay", next.Add(1))
			if _, err := n.Register(ctxT(b), RegisterRequest{AOR: aor, Signer: key, Binding: binding("d", "sip:x@127.0.0.1", time.Hour)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLookupLonePeer measures Lookup of one AOR on a lone peer, as
// the proxy does for every INVITE to it.
func BenchmarkLookupLonePeer(b *testing.B) {
	for _, ttl := range []time.Duration{-1, time.Second} {
		b.Run(fmt.Sprintf("cache=%v", ttl > 0), func(b *testing.B) {
			n, err := New(testConfig(b, func(c *Config) { c.LookupCacheTTL = ttl }))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { closeQuietly(n) })
			register(b, n, "sip:bob@test.overlay", mustKey(b), binding("d", "sip:x@127.0.0.1", time.Hour))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := n.Lookup(ctxT(b), "sip:bob@test.overlay"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRefreshLonePeer measures the REGISTER a phone sends most: the
// refresh of a binding it holds. It first registers more AORs than the
// decoding caches hold, then refreshes them in turn, so that each refresh
// finds its record the way a peer under real load does: out of cache.
func BenchmarkRefreshLonePeer(b *testing.B) {
	n := loneNode(b)
	key := mustKey(b)
	const aors = 3 * regCacheSize
	for i := range aors {
		register(b, n, fmt.Sprintf("sip:f%d@test.overlay", i), key, binding("d", "sip:x@127.0.0.1", time.Hour))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		register(b, n, fmt.Sprintf("sip:f%d@test.overlay", i%aors), key, binding("d", "sip:x@127.0.0.1", time.Hour))
	}
}
