//go:build e2e

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The relay role against coturn's own test clients (issue 11):
// turnutils_uclient is a real third-party TURN client and turnutils_peer
// the far side. Everything runs in a namespace whose only interface is lo,
// so that the peers the SSRF tests name (10.x, 169.254.169.254, TEST-NET…)
// are unreachable whatever the relay does.
//
// turnutils_uclient exits 0 even when it fails (TESTBED.md): the tests read
// its output. Success is tot_recv_msgs=<sent> and "Total lost packets 0";
// a refused allocation prints "Cannot complete Allocation"; a refused
// permission "create permission error 403".

const relaySecret = "e2e-relay-secret"

// Fixed ports are safe: nothing else runs in a fresh namespace.
const (
	relayPeerAddr = "127.0.0.4" // turnutils_peer
	relayPeerPort = "3480"
)

var uclientUser atomic.Int64

// turnEnv is a namespace with turnutils_peer running and the coturn tools.
type turnEnv struct {
	ns      []string
	uclient string
	secret  string // file
}

func newTurnEnv(t *testing.T) *turnEnv {
	t.Helper()
	e := &turnEnv{
		uclient: requireTool(t, "turnutils_uclient", "coturn"),
	}
	peerBin := requireTool(t, "turnutils_peer", "coturn")
	e.ns = newNetns(t)
	e.secret = filepath.Join(t.TempDir(), "turn-secret")
	if err := os.WriteFile(e.secret, []byte(relaySecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string(nil), e.ns...), peerBin, "-L", relayPeerAddr, "-p", relayPeerPort)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return e
}

// startRelay starts a peer with the relay role in the namespace and waits
// for its self-test.
func (e *turnEnv) startRelay(t *testing.T, turn, publicAddr, ports string, extra ...string) *peer {
	t.Helper()
	args := append([]string{"--roles", "relay", "--turn", turn, "--public-addr", publicAddr,
		"--relay-ports", ports, "--relay-secret-file", e.secret, "--sip", "", "--sips", ""}, extra...)
	p := startPeerOpts(t, peerOpts{wrapper: e.ns, args: args})
	eventually(t, 10*time.Second, 50*time.Millisecond, p.Name+" relay self-test", func() (bool, string) {
		out := p.stderr.String()
		if strings.Contains(out, "relay self-test failed") {
			t.Fatalf("%s: self-test failed:\n%s", p.Name, out)
		}
		return strings.Contains(out, "relay self-test passed"), "no self-test line yet"
	})
	return p
}

// run runs turnutils_uclient in the namespace and returns its output.
func (e *turnEnv) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append(append([]string(nil), e.ns...), e.uclient), args...)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("turnutils_uclient %s: timed out:\n%s", strings.Join(args, " "), out)
	}
	_ = err // it exits 255 on some refusals, 0 on others: the output says
	return string(out)
}

// wrongPassword is p with its first character changed: prefixing "x" to
// p[1:] gave p itself whenever p began with "x" (1 in 64 credentials).
func wrongPassword(p string) string {
	if p[0] == 'x' {
		return "y" + p[1:]
	}
	return "x" + p[1:]
}

// restCred mints a TURN REST credential for user expiring at exp, as the
// relay would with its --relay-secret-file.
func restCred(user string, exp time.Time) (string, string) {
	u := strconv.FormatInt(exp.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(relaySecret))
	mac.Write([]byte(u))
	return u, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// freshUser is a user id of its own per client run: turnutils_uclient
// leaves its allocations to expire, and they count against the per-user
// quota.
func freshUser() string { return fmt.Sprintf("e2e%d", uclientUser.Add(1)) }

var totRecvRE = regexp.MustCompile(`tot_recv_msgs=(\d+)`)

// requireDelivered checks that every message came back: n per client, two
// clients (turnutils_uclient pairs them).
func requireDelivered(t *testing.T, out string, want int) {
	t.Helper()
	var got int
	for _, m := range totRecvRE.FindAllStringSubmatch(out, -1) {
		got, _ = strconv.Atoi(m[1]) // the last one is the total
	}
	if got != want || !strings.Contains(out, "Total lost packets 0") || strings.Contains(out, "ERROR") {
		t.Fatalf("want tot_recv_msgs=%d and no loss, got %d:\n%s", want, got, out)
	}
}

func TestRelayCoturnClients(t *testing.T) {
	e := newTurnEnv(t)
	relayA := e.startRelay(t, "127.0.0.1:3478", "127.0.0.1", "49160-49400", "--relay-private-peers")
	base := []string{"-e", relayPeerAddr, "-r", relayPeerPort, "-n", "20", "-m", "1", "-l", "160", "-z", "5", "-p", "3478"}

	t.Run("UDP", func(t *testing.T) {
		out := e.run(t, append(append([]string{"-W", relaySecret, "-u", freshUser()}, base...), "127.0.0.1")...)
		requireDelivered(t, out, 40)
	})
	t.Run("TCP", func(t *testing.T) {
		out := e.run(t, append(append([]string{"-t", "-W", relaySecret, "-u", freshUser()}, base...), "127.0.0.1")...)
		requireDelivered(t, out, 40)
	})
	t.Run("TCPRelay", func(t *testing.T) { // RFC 6062
		out := e.run(t, append(append([]string{"-T", "-W", relaySecret, "-u", freshUser()}, base...), "127.0.0.1")...)
		requireDelivered(t, out, 40)
	})
	t.Run("TLSOnHTTPSPort", func(t *testing.T) { // turns: on the HTTPS port, past the demultiplexer
		u, err := url.Parse(relayA.URL)
		if err != nil {
			t.Fatal(err)
		}
		// turnutils_uclient picks a TLS version at random for each
		// connection, TLS 1.0 and 1.1 among them, which the relay refuses
		// (Go's minimum is 1.2), and gives up after a few refusals. A run
		// that ends that way says nothing about the relay: run it again.
		var out string
		for try := 1; try <= 4; try++ {
			args := []string{"-t", "-S", "-W", relaySecret, "-u", freshUser(), "-e", relayPeerAddr, "-r", relayPeerPort,
				"-n", "20", "-m", "1", "-l", "160", "-z", "5", "-p", u.Port(), u.Hostname()}
			out = e.run(t, args...)
			if !strings.Contains(out, "tot_recv_msgs=40") && strings.Contains(out, "alert protocol version") {
				t.Logf("run %d: turnutils_uclient gave up after trying TLS versions below 1.2", try)
				continue
			}
			break
		}
		requireDelivered(t, out, 40)
	})
	t.Run("MintedCredential", func(t *testing.T) { // -u/-w as a browser gets them
		u, p := restCred(freshUser(), time.Now().Add(time.Hour))
		out := e.run(t, append(append([]string{"-u", u, "-w", p}, base...), "127.0.0.1")...)
		requireDelivered(t, out, 40)
	})
	t.Run("WrongPassword", func(t *testing.T) {
		u, p := restCred(freshUser(), time.Now().Add(time.Hour))
		out := e.run(t, append(append([]string{"-u", u, "-w", wrongPassword(p)}, base...), "127.0.0.1")...)
		if !strings.Contains(out, "Cannot complete Allocation") {
			t.Fatalf("a wrong password was not refused:\n%s", out)
		}
	})
	t.Run("ExpiredCredential", func(t *testing.T) {
		u, p := restCred(freshUser(), time.Now().Add(-time.Minute))
		out := e.run(t, append(append([]string{"-u", u, "-w", p}, base...), "127.0.0.1")...)
		if !strings.Contains(out, "Cannot complete Allocation") {
			t.Fatalf("an expired credential was not refused:\n%s", out)
		}
	})
	t.Run("OwnPorts", func(t *testing.T) {
		// Private peers are allowed here, but the relay's own TURN port
		// still is not reachable through it: every datagram is dropped.
		out := e.run(t, "-s", "-c", "-W", relaySecret, "-u", freshUser(), "-e", "127.0.0.1", "-r", "3478",
			"-n", "5", "-m", "1", "-l", "160", "-z", "5", "-p", "3478", "127.0.0.1")
		if m := totRecvRE.FindAllStringSubmatch(out, -1); len(m) == 0 || m[len(m)-1][1] != "0" ||
			!strings.Contains(out, "Total lost packets 5 (100") {
			t.Fatalf("relaying to the relay's own port was not dropped:\n%s", out)
		}
		if !strings.Contains(relayA.stderr.String(), "reason=own_port") {
			t.Error("the relay did not log the own-port refusal")
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		curl := requireTool(t, "curl", "curl")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		argv := append(append([]string(nil), e.ns...), curl, "-sk", relayA.URL+"/metrics")
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		for _, re := range []string{
			`p2psip_relay_allocations\{transport="udp"\} [1-9]`, // turnutils_uclient leaves them to expire
			`p2psip_relay_bytes_total\{direction="to_peer"\} [1-9]`,
			`p2psip_relay_packets_total\{direction="from_peer"\} [1-9]`,
			`p2psip_relay_permissions_created_total [1-9]`,
			`p2psip_relay_refusals_total\{reason="own_port"\} [1-9]`,
			`p2psip_relay_auth_failures_total\{reason="bad_password"\} [1-9]`,
			`p2psip_relay_auth_failures_total\{reason="expired"\} [1-9]`,
		} {
			if !regexp.MustCompile(`(?m)^` + re).Match(out) {
				t.Errorf("/metrics lacks %s", re)
			}
		}
	})
}

// TestRelaySSRF: each forbidden peer address gets 403 on CreatePermission
// from a relay without --relay-private-peers; a public-looking one works.
func TestRelaySSRF(t *testing.T) {
	e := newTurnEnv(t)
	e.startRelay(t, "127.0.0.1:3479", "127.0.0.1", "49000-49150")
	e.startRelay(t, "[::1]:3481", "::1", "49260-49460")
	permit := func(t *testing.T, v6 bool, peerAddr string) string {
		args := []string{"-s", "-c", "-W", relaySecret, "-u", freshUser(), "-e", peerAddr, "-r", relayPeerPort,
			"-n", "1", "-m", "1", "-l", "160", "-z", "5"}
		if v6 {
			return e.run(t, append(args, "-x", "-p", "3481", "::1")...)
		}
		return e.run(t, append(args, "-p", "3479", "127.0.0.1")...)
	}
	forbidden4 := []string{
		"127.0.0.1", relayPeerAddr, "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
		"169.254.169.254", "169.254.1.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255",
	}
	forbidden6 := []string{
		"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1",
		"::127.0.0.1", "::169.254.169.254", "::10.0.0.1", // IPv4-compatible
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", // NAT64
		"2002:7f00:1::1", "2002:a9fe:a9fe::", "2002:c0a8:101::", // 6to4
	}
	for _, a := range forbidden4 {
		t.Run(a, func(t *testing.T) {
			t.Parallel()
			if out := permit(t, false, a); !strings.Contains(out, "create permission error 403") {
				t.Errorf("CreatePermission to %s was not refused with 403:\n%s", a, out)
			}
		})
	}
	for _, a := range forbidden6 {
		t.Run(a, func(t *testing.T) {
			t.Parallel()
			if out := permit(t, true, a); !strings.Contains(out, "create permission error 403") {
				t.Errorf("CreatePermission to %s was not refused with 403:\n%s", a, out)
			}
		})
	}
	// IPv4-mapped addresses in an IPv6 allocation: pion answers 443 (peer
	// address family mismatch, RFC 6156 §6.2) before the permission hook,
	// which would say 403.
	for _, a := range []string{"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1"} {
		t.Run(a, func(t *testing.T) {
			t.Parallel()
			out := permit(t, true, a)
			if !strings.Contains(out, "create permission error 403") && !strings.Contains(out, "create permission error 443") {
				t.Errorf("CreatePermission to %s was not refused:\n%s", a, out)
			}
		})
	}
	// Public-looking peers (TEST-NET-1, documentation IPv6) are allowed; the
	// datagrams die in the namespace.
	for _, tc := range []struct {
		v6   bool
		addr string
	}{{false, "192.0.2.1"}, {false, "203.0.113.9"}, {true, "2001:db8::1"}} {
		t.Run("allowed "+tc.addr, func(t *testing.T) {
			t.Parallel()
			out := permit(t, tc.v6, tc.addr)
			if strings.Contains(out, "create permission error") || strings.Contains(out, "Cannot complete Allocation") ||
				!strings.Contains(out, "tot_send_msgs=") {
				t.Errorf("CreatePermission to public %s failed:\n%s", tc.addr, out)
			}
		})
	}
}
