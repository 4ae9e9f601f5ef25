package main

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

const meminfo16G = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\n"

func TestSoftMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		name        string
		cgroup      []string
		meminfo     string
		limit, totl int64
	}{
		{"meminfo only", nil, meminfo16G, 16384000 << 10 / 2, 16384000 << 10},
		{"cgroup unlimited", []string{"max\n", "max\n"}, meminfo16G, 16384000 << 10 / 2, 16384000 << 10},
		{"cgroup below RAM", []string{"1073741824\n"}, meminfo16G, 512 << 20, 1 << 30},
		{"tightest ancestor wins", []string{"max\n", "2147483648\n", "1073741824\n"}, meminfo16G, 512 << 20, 1 << 30},
		{"cgroup above RAM", []string{"68719476736\n"}, meminfo16G, 16384000 << 10 / 2, 16384000 << 10},
		{"cgroup without meminfo", []string{"268435456"}, "", 128 << 20, 256 << 20},
		{"floor", []string{"104857600"}, meminfo16G, 64 << 20, 100 << 20},
		{"tiny box", []string{"33554432"}, meminfo16G, 32 << 20, 32 << 20},
		{"nothing known", nil, "", 0, 0},
		{"garbage", []string{"lots"}, "MemTotal: many kB\n", 0, 0},
	} {
		limit, total := softMemoryLimit(c.cgroup, c.meminfo)
		if limit != c.limit || total != c.totl {
			t.Errorf("%s: softMemoryLimit = %d, %d; want %d, %d", c.name, limit, total, c.limit, c.totl)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	for in, want := range map[string]string{
		"0::/system.slice/p2psip.service\n": "/system.slice/p2psip.service",
		"12:memory:/docker/abc\n0::/\n":     "/",
		"12:memory:/docker/abc\n":           "/", // cgroup v1 only
		"":                                  "/",
		"1:name=systemd:/x\n0::/user.slice/u/../v\n": "/user.slice/v",
	} {
		if got := cgroupPath(in); got != want {
			t.Errorf("cgroupPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTuneGCLeavesEnvironmentAlone(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(123))
	for _, name := range []string{"GOGC", "GOMEMLIMIT"} {
		tuneGC(func(k string) (string, bool) { return "100", k == name }, slog.New(slog.DiscardHandler))
		if got := debug.SetGCPercent(123); got != 123 {
			t.Errorf("with %s set, GOGC became %d", name, got)
		}
	}
}
