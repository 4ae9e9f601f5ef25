package main

import (
	"bufio"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// The peer's garbage collector settings: a GOGC that keeps the
// collector's share of the peer's CPU near 5 % (gcpace.go), between 50 and
// 400, under a soft memory limit of half the machine's (or cgroup's)
// memory, so that a peer in a tight container collects more often as its
// heap nears the limit instead of being killed. The user's GOGC or
// GOMEMLIMIT in the environment wins: then the peer leaves the collector
// alone.
//
// Why no fixed GOGC suits every peer: a larger heap costs pages touched
// fresh whenever the load rises (each first touch a page fault, dear on a
// virtual machine), all swept after every cycle, and a peer on one core
// polls the network only every 10 ms (Go's sysmon) while its background
// sweeper runs; a smaller one costs mark phases, in proportion to what
// the live heap holds. And that differs by role:
//
//   - A peer relaying calls keeps mostly the finished transactions of
//     Timer J (kept.go: 32 s of answers, tens of MB at 1000 calls/s) as
//     plain bytes, which the mark phase barely visits: at GOGC=50 and 750
//     calls/s a peer spent about 7 ms of CPU per cycle on the collector,
//     two cycles a second, 4 % of its CPU. A small heap was better for the
//     tail there (bench/README.md, 2026-12-06): added p99 per hop through
//     two peers, interleaved pairs of runs, GOGC=400 7.7, 16.7, 11.0 ms
//     against GOGC=100 2.6, 7.1, 3.4 ms; GOGC=100 68.3 (a stall of the
//     machine), 8.3 ms against GOGC=50 3.6, 2.1 ms.
//   - A registrar keeps hundreds of thousands of bindings, objects the
//     mark phase visits one by one. At a fixed GOGC=50 the one-core peer's
//     mark phases took a quarter of its CPU at 12000 REGISTERs a second,
//     and its ceiling fell from 16000 to 13500 REGISTERs and from 4000 to
//     3000 calls a second against GOGC=400, at up to 30 % more CPU per
//     request (bench/sip, 2026-12-06).
//
// So the pacer measures instead of guessing: after each cycle it scales
// GOGC by the collector's share of CPU over the target. In the benchmarks
// a relaying peer alone on its core settles at 50 (one sharing its core
// reads a higher share and moved between 60 and 170: Go counts a P's time
// by the wall clock), and the registrar rose to 400 as its bindings grew
// (the last cycles of its REGISTER ramp: heap goals of 1082 and 2617 MB
// over 237 and 522 MB marked). That gave back part of what the fixed 50
// had cost, not all: against GOGC=400 in two interleaved pairs of runs,
// 13500 and 14250 REGISTERs a second against 16000 and 16000, and 3500
// calls a second twice against 3500 and 4000 (bench/README.md).
const (
	// memLimitFloor keeps the soft limit from forcing constant collection
	// on a machine (or container) with very little memory.
	memLimitFloor = 64 << 20
)

// tuneGC applies the settings above unless the environment set GOGC or
// GOMEMLIMIT (lookup is os.LookupEnv outside tests). It returns the pacer
// that sets GOGC, or nil when the environment decides.
func tuneGC(lookup func(string) (string, bool), log *slog.Logger) *gcPacer {
	if v, ok := lookup("GOGC"); ok {
		log.Debug("GC left to the environment", "GOGC", v)
		return nil
	}
	if v, ok := lookup("GOMEMLIMIT"); ok {
		log.Debug("GC left to the environment", "GOMEMLIMIT", v)
		return nil
	}
	pacer := startGCPacer(log)
	limit, total := softMemoryLimit(cgroupMemoryMax(), readFileOr("/proc/meminfo"))
	if limit == 0 {
		// Neither cgroup nor /proc/meminfo (not Linux): no limit to set.
		// GOGC is at most 400, so the heap stays within five times the
		// live heap without one.
		log.Debug("GC paced by its share of CPU, no memory limit: machine memory unknown")
		return pacer
	}
	debug.SetMemoryLimit(limit)
	log.Debug("GC paced by its share of CPU (set GOGC or GOMEMLIMIT to override)",
		"memory_limit_mib", limit>>20, "memory_mib", total>>20)
	return pacer
}

// softMemoryLimit is half the memory this process may use: the smallest
// numeric cgroup v2 memory.max along its cgroup path (contents in
// cgroupMax; "max" means none), else MemTotal from /proc/meminfo — and at
// least memLimitFloor, unless the memory itself is smaller. It returns 0
// when neither says anything, and the memory it found.
func softMemoryLimit(cgroupMax []string, meminfo string) (limit, total int64) {
	total = memTotal(meminfo)
	for _, c := range cgroupMax {
		n, err := strconv.ParseInt(strings.TrimSpace(c), 10, 64)
		if err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	if total <= 0 {
		return 0, 0
	}
	limit = total / 2
	if limit < memLimitFloor {
		limit = min(memLimitFloor, total)
	}
	return limit, total
}

// memTotal reads "MemTotal: 16314260 kB" from /proc/meminfo contents.
func memTotal(meminfo string) int64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n <= 0 {
				return 0
			}
			if len(f) >= 3 && strings.EqualFold(f[2], "kB") {
				n <<= 10
			}
			return n
		}
	}
	return 0
}

// cgroupMemoryMax returns the memory.max files from this process's cgroup
// v2 up to the root of the mounted hierarchy: a parent's limit binds too.
func cgroupMemoryMax() []string {
	p := cgroupPath(readFileOr("/proc/self/cgroup"))
	var out []string
	for {
		if b, err := os.ReadFile(path.Join("/sys/fs/cgroup", p, "memory.max")); err == nil {
			out = append(out, string(b))
		}
		if p == "/" || p == "." || p == "" {
			return out
		}
		p = path.Dir(p)
	}
}

// cgroupPath is the cgroup v2 path ("0::/system.slice/p2psip.service")
// in /proc/self/cgroup contents, "/" when there is none.
func cgroupPath(procCgroup string) string {
	for line := range strings.Lines(procCgroup) {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok && strings.HasPrefix(rest, "/") {
			return path.Clean(rest)
		}
	}
	return "/"
}

func readFileOr(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	return string(b)
}
