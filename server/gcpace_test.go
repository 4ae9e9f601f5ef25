package main

import (
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestNextGCPercent(t *testing.T) {
	for _, c := range []struct {
		cur   int64
		share float64
		want  int64
	}{
		{100, gcCPUTarget, 100},               // on target: unchanged
		{100, 1.5 * gcCPUTarget, 150},         // over: a larger headroom
		{100, 0.6 * gcCPUTarget, 60},          // under: a smaller one
		{100, 0.9, 200},                       // at most twice per cycle
		{300, 0.9, gcPercentMax},              // and never above the ceiling
		{100, 0, gcPercentMin},                // at most half per cycle, and the floor
		{400, 0.001, 200},                     // half
		{60, 0.5 * gcCPUTarget, gcPercentMin}, // the floor
		{100, math.NaN(), 100},                // no measurement: unchanged
		{100, -0.1, 100},                      // a clock that went back: unchanged
		{gcPercentMax, 0.5, gcPercentMax},     // already at the ceiling
	} {
		if got := nextGCPercent(c.cur, c.share); got != c.want {
			t.Errorf("nextGCPercent(%d, %v) = %d, want %d", c.cur, c.share, got, c.want)
		}
	}
}

// node is a heap object that is all pointers, for the mark phase to visit.
type node struct{ next, prev *node }

var garbage []byte

// TestGCPacerFollowsGCShare runs the real collector while the test
// allocates: first over a live heap of bytes, which costs the mark phase
// nothing, so GOGC must fall to the floor; then over a million live
// objects, which the mark phase visits every cycle, so it must rise to the
// ceiling.
func TestGCPacerFollowsGCShare(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := startGCPacer(slog.New(slog.DiscardHandler))
	t.Cleanup(p.stop)
	if got := p.percent.Load(); got != gcPercentStart {
		t.Fatalf("GOGC at start = %d, want %d", got, gcPercentStart)
	}

	// A large heap of bytes: a cycle costs the collector almost nothing,
	// and the headroom takes the program long to fill, so the share is
	// far under the target even under the race detector.
	bytes := make([]byte, 256<<20)
	allocateUntil(t, p, gcPercentMin, "a live heap of bytes")
	runtime.KeepAlive(bytes)

	var head *node
	for range 1 << 20 {
		n := &node{next: head}
		if head != nil {
			head.prev = n
		}
		head = n
	}
	allocateUntil(t, p, gcPercentMax, "a live heap of a million objects")
	runtime.KeepAlive(head)
	if got := debug.SetGCPercent(100); got != gcPercentMax {
		t.Errorf("the runtime's GOGC = %d, want %d", got, gcPercentMax)
	}
}

// allocateUntil allocates garbage until the pacer has set want, for up
// to 20 s.
func allocateUntil(t *testing.T, p *gcPacer, want int64, heap string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.percent.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("with %s, GOGC stayed %d, want %d", heap, p.percent.Load(), want)
		}
		allocate()
	}
}

// allocate makes garbage as a program does, writing what it allocates:
// 64 chunks of 64 KiB.
func allocate() {
	for range 64 {
		g := make([]byte, 64<<10)
		for i := range g {
			g[i] = byte(i)
		}
		garbage = g
	}
}

func TestGCPacerStops(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := startGCPacer(slog.New(slog.DiscardHandler))
	p.stop()
	bytes := make([]byte, 64<<20) // would take GOGC to the floor
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		allocate()
	}
	runtime.KeepAlive(bytes)
	if got := p.percent.Load(); got != gcPercentStart {
		t.Fatalf("a stopped pacer set GOGC %d", got)
	}
}
