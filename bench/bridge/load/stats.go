package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// hist is a latency histogram with 1 µs buckets up to histMax; it is
// filled from several goroutines without locks.
type hist struct {
	b     [histMax]atomic.Uint32
	over  atomic.Uint32
	neg   atomic.Uint32
	count atomic.Uint64
	maxNs atomic.Int64
}

const histMax = 100_000 // µs

func (h *hist) add(ns int64) {
	h.count.Add(1)
	if ns < 0 {
		h.neg.Add(1)
		h.b[0].Add(1)
		return
	}
	for {
		m := h.maxNs.Load()
		if ns <= m || h.maxNs.CompareAndSwap(m, ns) {
			break
		}
	}
	us := ns / 1000
	if us >= histMax {
		h.over.Add(1)
		return
	}
	h.b[us].Add(1)
}

func (h *hist) reset() {
	for i := range h.b {
		h.b[i].Store(0)
	}
	h.over.Store(0)
	h.neg.Store(0)
	h.count.Store(0)
	h.maxNs.Store(0)
}

// quantile is the nearest-rank q-quantile in µs (upper edge of its
// bucket); -1 without samples, histMax when it lies beyond the range.
func (h *hist) quantile(q float64) float64 {
	n := h.count.Load()
	if n == 0 {
		return -1
	}
	rank := uint64(q*float64(n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.b {
		seen += uint64(h.b[i].Load())
		if seen >= rank {
			return float64(i + 1)
		}
	}
	return histMax
}

// procCPU is the CPU time in ns a process has used so far: the sum of
// its threads' /proc/<pid>/task/<tid>/schedstat (ns, unlike the 10 ms
// ticks of /proc/<pid>/stat).
func procCPU(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no tasks of pid %d", pid)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just exited
		}
		f := bytes.Fields(b)
		if len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseInt(string(f[0]), 10, 64)
		sum += v
	}
	return sum, nil
}

// procRSS is VmRSS of a process in KiB.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("VmRSS:")) {
			f := bytes.Fields(l[6:])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return v
			}
		}
	}
	return -1
}

// procThreads is the number of threads of a process.
func procThreads(pid int) int {
	ts, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	return len(ts)
}
