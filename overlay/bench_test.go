package overlay

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkLookup measures Lookup of registrations across a 20-node
// overlay on loopback, and reports p50/p99 beside the mean. The full
// 20/100-node table with the churn check is `go run ./bench/overlay`.
func BenchmarkLookup(b *testing.B) {
	tn := newTestNet(b, testNodes, nil)
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
