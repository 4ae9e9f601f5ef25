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

// The peer's garbage collector settings: GOGC=50 (half Go's default),
// under a soft memory limit of half the machine's (or cgroup's) memory, so
// that a peer in a tight container collects more often as its heap nears
// the limit instead of being killed. The user's GOGC or GOMEMLIMIT in the
// environment wins: then the peer leaves the collector alone.
//
// Why a low GOGC: a loaded peer's live heap is mostly the finished
// transactions it keeps for Timer J (kept.go: 32 s of answers, tens of MB
// at 1000 calls/s), which hold no pointers and so cost the mark phase
// almost nothing; yet GOGC multiplies them like any heap. A higher GOGC
// buys fewer mark phases (at GOGC=50 and 750 calls/s a peer collects
// about once a second, and is in a mark phase 2–5 % of the time); it
// costs a heap several times that table: hundreds of MB of pages touched
// fresh whenever the load rises (each first touch a page fault, dear on a
// virtual machine), all swept after every cycle, and a peer on one core
// polls the network only every 10 ms (Go's sysmon) while its background
// sweeper runs. Measured on the benchmark VM (bench/README.md,
// 2026-12-06), added p99 per hop at 1000 calls/s through two peers,
// interleaved pairs of runs that start cold (the heap growing): GOGC=400
// 7.7, 16.7, 11.0 ms against GOGC=100 2.6, 7.1, 3.4 ms; GOGC=100 68.3 (a
// stall of the machine), 8.3 ms against GOGC=50 3.6, 2.1 ms; CPU per call
// the same or lower each time. With the table full (second rounds), two
// pairs of GOGC=400 against 50 split one each way. (GOGC=400, this peer's
// earlier setting, had cut CPU per call by 13 % at 2500 calls/s in a
// measurement of 2026-11-25, when a loaded peer's live heap was a few MB.)
const (
	gcPercent = 50
	// memLimitFloor keeps the soft limit from forcing constant collection
	// on a machine (or container) with very little memory.
	memLimitFloor = 64 << 20
)

// tuneGC applies the settings above unless the environment set GOGC or
// GOMEMLIMIT (lookup is os.LookupEnv outside tests).
func tuneGC(lookup func(string) (string, bool), log *slog.Logger) {
	if v, ok := lookup("GOGC"); ok {
		log.Debug("GC left to the environment", "GOGC", v)
		return
	}
	if v, ok := lookup("GOMEMLIMIT"); ok {
		log.Debug("GC left to the environment", "GOMEMLIMIT", v)
		return
	}
	debug.SetGCPercent(gcPercent)
	limit, total := softMemoryLimit(cgroupMemoryMax(), readFileOr("/proc/meminfo"))
	if limit == 0 {
		// Neither cgroup nor /proc/meminfo (not Linux): no limit to set.
		// A GOGC below Go's default needs none.
		log.Debug("GC tuned, no memory limit: machine memory unknown", "gogc", gcPercent)
		return
	}
	debug.SetMemoryLimit(limit)
	log.Debug("GC tuned (set GOGC or GOMEMLIMIT to override)", "gogc", gcPercent,
		"memory_limit_mib", limit>>20, "memory_mib", total>>20)
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
