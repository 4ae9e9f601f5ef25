package bridge

import (
	"math/rand/v2"
	"testing"
	"time"
)

var statsEpoch = time.Unix(1_700_000_000, 0)

// stream20 feeds r packet n of a 20 ms G.711 stream for each n in ns,
// arriving after delay(n).
func stream20(r *recvStats, ssrc uint32, seq0 uint16, ts0 uint32, ns []int, delay func(n int) time.Duration) {
	for _, n := range ns {
		at := statsEpoch.Add(time.Duration(n)*20*time.Millisecond + delay(n))
		r.update(ssrc, seq0+uint16(n), ts0+uint32(n)*160, at)
	}
}

func fixedDelay(int) time.Duration { return 37 * time.Millisecond }

func seqRange(from, to int, except ...int) []int {
	var ns []int
outer:
	for n := from; n < to; n++ {
		for _, e := range except {
			if n == e {
				continue outer
			}
		}
		ns = append(ns, n)
	}
	return ns
}

func TestRecvStatsLossAcrossWrap(t *testing.T) {
	r := recvStats{clock: 8000}
	if f, total := r.interval(); f != 0 || total != 0 || r.newLoss() != 0 {
		t.Fatal("loss before any packet")
	}
	// 65530 … 65535, 0 … 9 without 65533 and 2.
	stream20(&r, 1, 65530, 0, seqRange(0, 16, 3, 8), fixedDelay)
	if r.maxSeq != 1<<16|9 {
		t.Fatalf("extended highest sequence number %#x, want %#x", r.maxSeq, 1<<16|9)
	}
	if got := r.lostSoFar(); got != 2 {
		t.Fatalf("lost %d, want 2", got)
	}
	if got := r.newLoss(); got != 2 {
		t.Fatalf("newLoss %d, want 2", got)
	}
	if got := r.newLoss(); got != 0 {
		t.Fatalf("newLoss again %d, want 0", got)
	}
	frac, total := r.interval()
	if want := uint8(2 * 256 / 16); frac != want || total != 2 {
		t.Fatalf("interval: fraction %d total %d, want %d, 2", frac, total, want)
	}
	// The next interval loses nothing.
	stream20(&r, 1, 65530, 0, seqRange(16, 40), fixedDelay)
	if frac, total := r.interval(); frac != 0 || total != 2 {
		t.Fatalf("interval without loss: fraction %d total %d", frac, total)
	}
	// A late packet of the old cycle is not taken for a new wrap.
	r.update(1, 65533, 3*160, statsEpoch.Add(time.Second))
	if r.maxSeq != 1<<16|(40-6-1) {
		t.Fatalf("a late packet moved the highest sequence number to %#x", r.maxSeq)
	}
	if got := r.lostSoFar(); got != 1 {
		t.Fatalf("the late packet should count as received: lost %d", got)
	}
	if got := r.newLoss(); got != 0 {
		t.Fatalf("newLoss after a late packet %d, want 0 (a counter never goes back)", got)
	}
}

func TestRecvStatsDuplicates(t *testing.T) {
	r := recvStats{clock: 8000}
	stream20(&r, 1, 100, 0, []int{0, 1, 1, 2, 2, 3}, fixedDelay)
	if got := r.lostSoFar(); got != -2 {
		t.Fatalf("lost %d, want -2 (RFC 3550 A.3 counts duplicates)", got)
	}
	if got := r.newLoss(); got != 0 {
		t.Fatalf("newLoss %d with duplicates", got)
	}
	if frac, _ := r.interval(); frac != 0 {
		t.Fatalf("fraction %d with duplicates", frac)
	}
}

// A new SSRC starts a new count, and what the old source lost but was not
// reported yet is still reported.
func TestRecvStatsNewSource(t *testing.T) {
	r := recvStats{clock: 8000}
	stream20(&r, 1, 10, 0, []int{0, 1, 3}, fixedDelay)
	stream20(&r, 2, 5000, 777, []int{0}, fixedDelay)
	if r.ssrc != 2 || r.baseSeq != 5000 || r.received != 1 {
		t.Fatalf("after the new source: ssrc %d base %d received %d", r.ssrc, r.baseSeq, r.received)
	}
	if got := r.newLoss(); got != 1 {
		t.Fatalf("newLoss %d, want the old source's 1", got)
	}
	stream20(&r, 2, 5000, 777, []int{1, 3}, fixedDelay)
	if got := r.newLoss(); got != 1 {
		t.Fatalf("newLoss %d, want the new source's 1", got)
	}
}

func TestRecvStatsJitterConstantDelay(t *testing.T) {
	r := recvStats{clock: 8000}
	stream20(&r, 1, 0, 123456, seqRange(0, 500), fixedDelay)
	if j := r.jitterSeconds(); j > 1e-6 {
		t.Fatalf("jitter %g s for a constant delay, want ≈ 0", j)
	}
}

func TestRecvStatsJitteryStream(t *testing.T) {
	// Every other packet 10 ms late: |D| is 10 ms every time, so J
	// converges to 10 ms (RFC 3550 A.8).
	r := recvStats{clock: 8000}
	stream20(&r, 1, 0, 0, seqRange(0, 500), func(n int) time.Duration { return time.Duration(n%2) * 10 * time.Millisecond })
	if j := r.jitterSeconds(); j < 0.0099 || j > 0.0101 {
		t.Fatalf("jitter %g s, want 0.010", j)
	}
	// Random delays of 0–40 ms: well above zero.
	r = recvStats{clock: 8000}
	rng := rand.New(rand.NewPCG(1, 2))
	stream20(&r, 1, 0, 0, seqRange(0, 500), func(int) time.Duration { return time.Duration(rng.IntN(40)) * time.Millisecond })
	if j := r.jitterSeconds(); j < 0.005 || j > 0.04 {
		t.Fatalf("jitter %g s for random delays of 0–40 ms", j)
	}
}

// The RTP timestamp wraps (every 6 days at 8 kHz, anywhere in a call since
// it starts at random): RFC 3550 A.8 computes transit times modulo 2^32,
// so a wrap is no jitter.
func TestRecvStatsJitterTimestampWrap(t *testing.T) {
	r := recvStats{clock: 8000}
	stream20(&r, 1, 0, 1<<32-100*160, seqRange(0, 200), fixedDelay)
	if j := r.jitterSeconds(); j > 1e-6 {
		t.Fatalf("jitter %g s across a timestamp wrap, want ≈ 0", j)
	}
}
