package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		scan, live uint64
		want       int
	}{
		{0, 0, gcPercentMax},
		{0, 100 << 20, gcPercentMin},       // nothing to scan: the floor
		{5 << 20, 100 << 20, gcPercentMin}, // 40 %: the floor
		{1 << 20, 16 << 20, 50},            // 8 × 1/16
		{1 << 20, 8 << 20, 100},            // 8 × 1/8
		{4_400_000, 38_000_000, 92},        // a relaying peer (bench/peers)
		{154 << 20, 316 << 20, 389},        // a registrar (bench/sip)
		{1 << 20, 1 << 20, gcPercentMax},   // all pointers: the ceiling
		{1 << 30, 1 << 20, gcPercentMax},   // stacks beyond the heap
	} {
		if got := gcPercentFor(c.scan, c.live); got != c.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.scan, c.live, got, c.want)
		}
	}
}

// node is a heap object that is all pointers: the collector scans all of it.
type node struct{ next, prev *node }

// TestGCPacerFollowsScanWork runs the real collector over a live heap of
// bytes (nothing to scan) and then one of pointers, and waits for the
// pacer to set GOGC for each.
func TestGCPacerFollowsScanWork(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := startGCPacer(slog.New(slog.DiscardHandler))
	t.Cleanup(p.stop)
	if got := p.percent.Load(); got != gcPercentStart {
		t.Fatalf("GOGC at start = %d, want %d", got, gcPercentStart)
	}

	bytes := make([]byte, 64<<20)
	for i := range bytes {
		bytes[i] = byte(i) // touched, so it is really live memory
	}
	waitGOGC(t, p, gcPercentMin, "a heap of bytes")
	runtime.KeepAlive(bytes)
	bytes = nil

	var head *node
	for range 1 << 20 {
		n := &node{next: head}
		if head != nil {
			head.prev = n
		}
		head = n
	}
	waitGOGC(t, p, gcPercentMax, "a heap of pointers")
	runtime.KeepAlive(head)
	if got := debug.SetGCPercent(100); got != gcPercentMax {
		t.Errorf("the runtime's GOGC = %d, want %d", got, gcPercentMax)
	}
}

// waitGOGC collects until the pacer has set want, for up to 10 s.
func waitGOGC(t *testing.T, p *gcPacer, want int64, heap string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.percent.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("with %s, GOGC stayed %d, want %d", heap, p.percent.Load(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGCPacerStops(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := startGCPacer(slog.New(slog.DiscardHandler))
	p.stop()
	bytes := make([]byte, 64<<20) // would take GOGC to the floor
	for range 5 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	runtime.KeepAlive(bytes)
	if got := p.percent.Load(); got != gcPercentStart {
		t.Fatalf("a stopped pacer set GOGC %d", got)
	}
}
