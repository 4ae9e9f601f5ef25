package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestParseConfigRelay(t *testing.T) {
	c, err := parseConfig([]string{"--roles", "relay", "--relay-ports", "49160-49200", "--relay-private-peers"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.TURN != ":3478" || c.RelayPortMin != 49160 || c.RelayPortMax != 49200 || !c.RelayPrivatePeers || c.RelayBandwidth != 1<<20 {
		t.Errorf("relay config: %+v", c)
	}
	for _, args := range [][]string{
		{"--roles", "relay", "--relay-ports", "49200-49160"},
		{"--roles", "relay", "--relay-ports", "0-10"},
		{"--roles", "relay", "--relay-ports", "49160"},
		{"--roles", "relay", "--turn", "3478"},
		{"--roles", "relay", "--relay-bandwidth", "-1"},
		{"--relay-private-peers"},
		{"--roles", "turn"},
	} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted", args)
		}
	}
}

func TestStartRelay(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--roles", "relay", "--turn", "127.0.0.1:0", "--public-addr", "127.0.0.1",
		"--relay-ports", "49160-49200", "--relay-secret-file", secret}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, selfTest, err := startRelay(c, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Addrs(); len(got) != 2 {
		t.Errorf("Addrs() = %v, want udp and tcp", got)
	}
	// The self-test allocates on the relay through --public-addr; its
	// result is what /api/overlay and p2psip status show.
	deadline := time.Now().Add(selfTestBudget)
	for {
		res, rtt := selfTest.get()
		if res == "ok" && rtt > 0 {
			break
		}
		if res != "" && res != "ok" || time.Now().After(deadline) {
			t.Fatalf("self-test: %q (rtt %v ms), want ok", res, rtt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
}
