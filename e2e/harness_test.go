//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a peer may take to print its ready block. A
	// race-instrumented libp2p node on a busy 2-core machine needs a few seconds.
	readyTimeout = 20 * time.Second
	// stopTimeout is the contract: SIGTERM -> withdraw records -> exit within 5 s.
	stopTimeout = 5 * time.Second
	// cliTimeout bounds one run of a CLI subcommand (status, lookup, register).
	cliTimeout = 15 * time.Second
	// outputCap keeps memory bounded when a peer logs a lot; failures show the tail.
	outputCap = 256 << 10
)

// peerBin is the p2psip binary built once by TestMain; moduleRoot is where
// `go build ./server` runs.
var (
	peerBin    string
	moduleRoot string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain is split from TestMain so the deferred temp-dir removal runs before
// os.Exit.
func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	moduleRoot = root
	// P2PSIP_E2E_BIN runs the suite against a prebuilt binary (a release build,
	// or one built with other flags) instead of building ./server.
	if bin := os.Getenv("P2PSIP_E2E_BIN"); bin != "" {
		peerBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "p2psip-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	peerBin = filepath.Join(dir, "p2psip")
	args := []string{"build", "-o", peerBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./server")
	// A build of libp2p with -race from a cold cache takes minutes; bound it
	// anyway so a wedged toolchain cannot hang CI.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleRoot
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n", strings.Join(args, " "), err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s (race=%v) in %s\n", peerBin, raceEnabled, time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// lockedBuffer collects a process's output from the exec goroutines while tests
// read it. It keeps only the last outputCap bytes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > outputCap {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-outputCap:]...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// peer is one running p2psip process.
type peer struct {
	Name    string
	URL     string // base URL from the ready block, without trailing slash
	NodeID  string
	DataDir string
	Cmd     *exec.Cmd
	// wrapper is the command prefix that runs the CLI where the peer runs (for a
	// peer inside a namespace: ip netns exec NS).
	wrapper []string

	stdout, stderr *lockedBuffer
	done           chan struct{} // closed when the process has exited
	waitErr        error         // set before done is closed
}

// peerOpts says how to start a peer. The zero value is a normal loopback peer.
type peerOpts struct {
	name    string
	args    []string
	dataDir string   // "" -> a fresh t.TempDir()
	wrapper []string // command prefix, e.g. ip netns exec NS
	bin     string   // "" -> peerBin
	// env replaces the environment when non-nil (used to run like the image).
	env []string
	// noDefaults leaves out --data/--https/--mdns so only env configures the peer.
	noDefaults bool
	// mdns keeps mDNS on. Loopback peers turn it off by default: otherwise every
	// peer on the host (other tests, a developer's running peer) finds every
	// other, and join-by-URL would be tested by accident only.
	mdns bool
	cred *syscall.Credential
}

var peerSeq atomic.Int64

// startPeer starts p2psip with a fresh data dir on a free loopback HTTPS port and
// waits for its ready block. Cleanup stops it (SIGTERM, then SIGKILL after 5 s).
func startPeer(t *testing.T, args ...string) *peer {
	t.Helper()
	return startPeerOpts(t, peerOpts{args: args})
}

func startPeerOpts(t *testing.T, o peerOpts) *peer {
	t.Helper()
	if o.name == "" {
		o.name = fmt.Sprintf("peer%d", peerSeq.Add(1))
	}
	if o.dataDir == "" && !o.noDefaults {
		o.dataDir = t.TempDir()
	}
	bin := o.bin
	if bin == "" {
		bin = peerBin
	}
	var argv []string
	if !o.noDefaults {
		// The overlay listens on loopback only: tests send nothing to the
		// machine's other addresses.
		argv = append(argv, "--data", o.dataDir, "--https", "127.0.0.1:0", "--p2p-host", "127.0.0.1",
			"--sip", "127.0.0.1:0", "--sips", "127.0.0.1:0")
		if !o.mdns {
			argv = append(argv, "--mdns=false")
		}
	}
	argv = append(argv, o.args...)
	full := append(append(append([]string(nil), o.wrapper...), bin), argv...)

	p := &peer{
		Name:    o.name,
		DataDir: o.dataDir,
		wrapper: o.wrapper,
		stdout:  &lockedBuffer{},
		stderr:  &lockedBuffer{},
		done:    make(chan struct{}),
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	cmd.Env = o.env
	// Pdeathsig: if the test binary dies (timeout panic, kill), the peer goes too
	// instead of lingering and holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	p.Cmd = cmd
	t.Logf("%s: starting %s", p.Name, strings.Join(full, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", p.Name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			p.stop(t)
		}
		if t.Failed() {
			p.logOutput(t)
		}
	})

	readyRE := regexp.MustCompile(`(?m)^p2psip peer ready`)
	urlRE := regexp.MustCompile(`(?m)^\s+softphone:\s+(\S+)`)
	idRE := regexp.MustCompile(`(?m)^\s+node id:\s+(\S+)`)
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		out := p.stdout.String()
		if readyRE.MatchString(out) {
			u, id := urlRE.FindStringSubmatch(out), idRE.FindStringSubmatch(out)
			if u != nil && id != nil {
				p.URL = strings.TrimRight(u[1], "/")
				p.NodeID = id[1]
				t.Logf("%s: ready: %s node %s", p.Name, p.URL, p.NodeID)
				return p
			}
		}
		select {
		case <-p.done:
			p.logOutput(t)
			t.Fatalf("%s: exited before ready: %v", p.Name, p.waitErr)
		case <-deadline.C:
			p.logOutput(t)
			t.Fatalf("%s: no ready block (with softphone: and node id: lines) within %s", p.Name, readyTimeout)
		case <-tick.C:
		}
	}
}

func (p *peer) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to stopTimeout, then SIGKILLs. It returns the
// exit code (-1 when killed by a signal) and whether the deadline was missed.
func (p *peer) stop(t *testing.T) (code int, elapsed time.Duration, timedOut bool) {
	t.Helper()
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("%s: SIGTERM: %v", p.Name, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		timedOut = true
		t.Logf("%s: still running %s after SIGTERM: SIGKILL", p.Name, stopTimeout)
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	elapsed = time.Since(start)
	return p.Cmd.ProcessState.ExitCode(), elapsed, timedOut
}

func (p *peer) logOutput(t *testing.T) {
	t.Helper()
	t.Logf("%s stdout:\n%s", p.Name, p.stdout.String())
	t.Logf("%s stderr (last %d KiB at most):\n%s", p.Name, outputCap>>10, p.stderr.String())
}

// cliResult is one finished run of a p2psip subcommand.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// runCLI runs `p2psip args...` (under wrapper, e.g. inside a namespace) with a
// timeout. A failure to start or a timeout is fatal; a non-zero exit is not.
func runCLI(t *testing.T, wrapper []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append(append(append([]string(nil), wrapper...), peerBin), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("%s: timed out after %s\n%s", strings.Join(full, " "), cliTimeout, res)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%s: %v", strings.Join(full, " "), err)
	}
	return res
}

// cli runs a subcommand where the peer runs (same namespace).
func (p *peer) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runCLI(t, p.wrapper, args...)
}

// overlayStatus is the JSON of GET /api/overlay and of `p2psip status --json`.
type overlayStatus struct {
	Overlay string   `json:"overlay"`
	NodeID  string   `json:"node_id"`
	Addrs   []string `json:"addrs"`
	Peers   []struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
	} `json:"peers"`
	Records *struct {
		Stored int             `json:"stored"`
		Hosted json.RawMessage `json:"hosted"`
	} `json:"records"`
}

func (s overlayStatus) hasPeer(id string) bool {
	for _, p := range s.Peers {
		if p.ID == id {
			return true
		}
	}
	return false
}

// status runs `p2psip status --peer URL --json` where the peer runs.
func (p *peer) status(t *testing.T) (overlayStatus, cliResult) {
	t.Helper()
	res := p.cli(t, "status", "--peer", p.URL, "--json")
	var st overlayStatus
	if res.Code != 0 {
		return st, res
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		t.Fatalf("status --json is not the overlay JSON: %v\n%s", err, res)
	}
	return st, res
}

// registration is the JSON of GET /api/registrations/{aor} and `lookup --json`.
type registration struct {
	AOR      string `json:"aor"`
	Owner    string `json:"owner"`
	Seq      uint64 `json:"seq"`
	Bindings []struct {
		Contact  string          `json:"contact"`
		Instance string          `json:"instance"`
		NodeID   string          `json:"node_id"`
		Expires  json.RawMessage `json:"expires"`
	} `json:"bindings"`
}

// httpClient talks to peers' self-signed HTTPS. It never follows redirects so a
// test sees exactly what the peer answered.
func httpClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test peers use self-signed certs
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches url and returns status and body (capped at 1 MiB).
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := httpClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, body
}

// eventually polls cond every interval until it returns true or timeout passes;
// then it fails with the last message cond gave.
func eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s; last: %s", what, timeout, last)
		}
		time.Sleep(interval)
	}
}

// inCI reports whether we run in CI, where a missing prerequisite is a failure
// (the install script should have provided it), not a skip.
func inCI() bool { return os.Getenv("CI") != "" }

// requireTool skips (or fails, in CI) unless the command is installed. pkg names
// the Debian package that provides it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		// Root's non-login shells may lack the sbin dirs on PATH.
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			if fi, statErr := os.Stat(filepath.Join(d, name)); statErr == nil && fi.Mode()&0o111 != 0 {
				return filepath.Join(d, name)
			}
		}
		failOrSkip(t, fmt.Sprintf("%s not found: install the Debian package %q (scripts/install-test-deps.sh does)", name, pkg))
	}
	return path
}

// requireRoot skips (or fails, in CI) unless we are root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		failOrSkip(t, "needs root (network namespaces); run the e2e tests as root")
	}
}

var netnsSeq atomic.Int64

// newNetns creates a network namespace whose only interface is lo (up, multicast
// on so mDNS works there) and returns the command prefix that runs a program
// inside it. Nothing sent inside can leave the machine. Cleanup deletes it; it is
// registered first, so peers started in it later are stopped before it goes.
func newNetns(t *testing.T) []string {
	t.Helper()
	requireRoot(t)
	ip := requireTool(t, "ip", "iproute2")
	name := fmt.Sprintf("p2psip-e2e-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("netns", "delete", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, args := range [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "set", "lo", "multicast", "on"},
	} {
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	return []string{ip, "netns", "exec", name}
}
