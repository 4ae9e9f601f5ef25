package main

import (
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// gcPacer sets GOGC after every collection so that the collector takes
// about gcCPUTarget of the peer's CPU, with the heap's headroom between
// half and four times the live heap (gc.go says why). Go's own pacer
// decides when a cycle starts for a given GOGC; this one only picks GOGC,
// from the runtime's own CPU accounting (runtime/metrics). It runs from a
// cleanup (runtime.AddCleanup) on an object that dies in each cycle: no
// timer, no polling, and nothing at all while the peer allocates nothing.
type gcPacer struct {
	log     *slog.Logger
	percent atomic.Int64 // the GOGC last set
	stopped atomic.Bool  // set by stop: the next cleanup does not re-arm
	// Only one cleanup is pending at a time (each arms the next), but Go
	// runs cleanups on more than one goroutine, so the lock orders them.
	mu       sync.Mutex
	samples  []metrics.Sample // guarded by mu
	lastGC   float64          // guarded by mu: /cpu/classes/gc/total at the last cleanup
	lastBusy float64          // guarded by mu: total minus idle at the last cleanup; 0 before the first
}

// gcSentinel is allocated to die: its cleanup marks the end of a cycle. It
// holds a pointer so that it is never a tiny allocation (objects under 16
// bytes without pointers share a block, and their cleanups may never run).
type gcSentinel struct{ _ *int }

const (
	// gcCPUTarget is the share of the peer's CPU the pacer lets the
	// collector take: the mark phase's workers and assists, and pauses.
	gcCPUTarget = 0.05
	// gcPercentMin is the smallest headroom (half the live heap): where
	// collecting costs little, as for a peer relaying calls, whose live
	// heap is mostly answers kept as bytes (kept.go).
	gcPercentMin = 50
	// gcPercentMax is the largest (four times the live heap, within the
	// soft memory limit): a registrar's bindings are objects the mark
	// phase must visit one by one.
	gcPercentMax = 400
	// gcPercentStart is Go's default, used until the first cycle.
	gcPercentStart = 100
	// gcStepMax bounds one cycle's change to a factor of two either way:
	// one odd cycle (a burst of load, a stop of the machine) moves GOGC
	// only so far.
	gcStepMax = 2.0
)

// nextGCPercent is the GOGC that would have given the last cycle the
// target share of CPU, had the collector's work per cycle stayed the same
// (a cycle's mark work follows the live heap, and cycles come as often as
// the headroom fills, so the share falls as GOGC rises): cur scaled by
// share / gcCPUTarget, by at most gcStepMax, within the bounds.
func nextGCPercent(cur int64, share float64) int64 {
	if math.IsNaN(share) || share < 0 {
		return cur
	}
	step := min(max(share/gcCPUTarget, 1/gcStepMax), gcStepMax)
	return int64(math.Round(min(max(float64(cur)*step, gcPercentMin), gcPercentMax)))
}

// startGCPacer sets GOGC to gcPercentStart and then follows every cycle.
func startGCPacer(log *slog.Logger) *gcPacer {
	p := &gcPacer{log: log, samples: []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
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

// cycle runs after a collection: it takes the collector's share of the CPU
// the peer used since the last cycle, sets GOGC when the wanted value moved
// by an eighth or more or reached a bound (smaller moves are noise, and
// each change revises Go's pacer), and arms the next cycle.
func (p *gcPacer) cycle() {
	if p.stopped.Load() {
		return
	}
	defer p.arm()
	share, ok := p.gcShare()
	if !ok {
		return
	}
	cur := p.percent.Load()
	want := nextGCPercent(cur, share)
	if want == cur || !atBound(want) && want-cur < cur/8 && cur-want < cur/8 {
		return
	}
	p.percent.Store(want)
	debug.SetGCPercent(int(want))
	p.log.Debug("GOGC set from the collector's share of CPU", "gogc", want, "was", cur, "gc_cpu_share", share)
}

// atBound tells whether GOGC is at the floor or the ceiling, which the
// dead band must not keep it from reaching.
func atBound(percent int64) bool { return percent == gcPercentMin || percent == gcPercentMax }

// gcShare reads the runtime's CPU classes and returns the collector's
// share of the busy CPU time since the last call; false the first time,
// when nothing was busy, or when this Go release lacks the metrics.
func (p *gcPacer) gcShare() (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	metrics.Read(p.samples)
	for _, s := range p.samples {
		if s.Value.Kind() != metrics.KindFloat64 {
			return 0, false
		}
	}
	gc := p.samples[0].Value.Float64()
	busy := p.samples[1].Value.Float64() - p.samples[2].Value.Float64()
	dGC, dBusy, first := gc-p.lastGC, busy-p.lastBusy, p.lastBusy == 0
	p.lastGC, p.lastBusy = gc, busy
	if first || dBusy <= 0 {
		return 0, false
	}
	return dGC / dBusy, true
}

// gogc is the GOGC last set (for the metric).
func (p *gcPacer) gogc() float64 { return float64(p.percent.Load()) }

// stop ends the pacing after the next cycle; GOGC stays as last set. A
// nil pacer (the environment sets the collector) has nothing to stop.
func (p *gcPacer) stop() {
	if p != nil {
		p.stopped.Store(true)
	}
}
