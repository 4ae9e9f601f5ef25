package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// gcPacer sets GOGC after every collection from what that collection had
// to scan, so that the heap's headroom follows the collector's work
// rather than the live heap's size (gc.go says why). It reads the runtime's
// own figures (runtime/metrics) once per cycle, from a cleanup
// (runtime.AddCleanup) on an object that dies in each cycle: no timer, no
// polling, and nothing at all while the peer allocates nothing.
type gcPacer struct {
	log     *slog.Logger
	percent atomic.Int64 // the GOGC last set
	stopped atomic.Bool  // set by stop: the next cleanup does not re-arm
	// samples is only used by the cleanup goroutine (one cycle's cleanup
	// at a time: each arms the next).
	samples []metrics.Sample
}

// gcSentinel is allocated to die: its cleanup marks the end of a cycle. It
// holds a pointer so that it is never a tiny allocation (objects under 16
// bytes without pointers share a block, and their cleanups may never run).
type gcSentinel struct{ _ *int }

const (
	// gcScanHeadroom is the heap headroom the pacer allows per byte the
	// collector scanned: eight, so that the collector scans about one
	// byte for every eight the peer allocates.
	gcScanHeadroom = 8
	// gcPercentMin bounds the headroom below (half the live heap, as
	// GOGC=50) when almost nothing is scanned: each cycle still costs
	// its fixed part, and sweeps the whole heap.
	gcPercentMin = 50
	// gcPercentMax bounds it above (GOGC=400): a heap of pointers, such
	// as a registrar's hundreds of thousands of bindings, may grow to five
	// times its live size, within the soft memory limit.
	gcPercentMax = 400
	// gcPercentStart is Go's default, used until the first cycle.
	gcPercentStart = 100
)

// gcPercentFor is the GOGC for a heap of live bytes, of which the last
// collection scanned scan bytes (heap, stacks and globals).
func gcPercentFor(scan, live uint64) int {
	if live == 0 {
		return gcPercentMax
	}
	p := float64(gcScanHeadroom*100) * float64(scan) / float64(live)
	return int(min(max(p, gcPercentMin), gcPercentMax))
}

// startGCPacer sets GOGC to gcPercentStart and then follows every cycle.
func startGCPacer(log *slog.Logger) *gcPacer {
	p := &gcPacer{log: log, samples: []metrics.Sample{
		{Name: "/gc/scan/total:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}}
	p.percent.Store(gcPercentStart)
	debug.SetGCPercent(gcPercentStart)
	p.arm()
	return p
}

// arm allocates the next sentinel; its cleanup runs after the cycle that
// finds it dead.
func (p *gcPacer) arm() {
	runtime.AddCleanup(&gcSentinel{}, (*gcPacer).cycle, p)
}

// cycle runs after a collection: it reads the collection's scan work and
// live heap, sets GOGC when the wanted value moved by an eighth or more
// (each change is a log line and a pacer revision; small moves are
// noise), and arms the next cycle.
func (p *gcPacer) cycle() {
	if p.stopped.Load() {
		return
	}
	defer p.arm()
	metrics.Read(p.samples)
	if p.samples[0].Value.Kind() != metrics.KindUint64 || p.samples[1].Value.Kind() != metrics.KindUint64 {
		return // not in this Go release: keep what is set
	}
	scan, live := p.samples[0].Value.Uint64(), p.samples[1].Value.Uint64()
	want := int64(gcPercentFor(scan, live))
	cur := p.percent.Load()
	if d := want - cur; d < cur/8 && -d < cur/8 {
		return
	}
	p.percent.Store(want)
	debug.SetGCPercent(int(want))
	p.log.Debug("GOGC set from the last collection", "gogc", want, "was", cur,
		"scanned_mib", scan>>20, "live_mib", live>>20)
}

// gogc is the GOGC last set (for the metric).
func (p *gcPacer) gogc() float64 { return float64(p.percent.Load()) }

// stop ends the pacing after the next cycle; GOGC stays as last set.
func (p *gcPacer) stop() { p.stopped.Store(true) }
