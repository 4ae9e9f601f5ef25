//go:build e2e

package e2e

// The P2P SIP proxy role (draft-marocco-sipping-p2p-scenarios §3.4) against a
// real public SIP domain: Kamailio as registrar + proxy of atlanta.example,
// dnsmasq as the DNS that resolves atlanta.example (NAPTR/SRV/A) and the
// overlay's public name overlay.example (SRV/A → the proxy peer), sipp as the
// user agents. Everything runs in ONE network namespace whose only interface
// is lo, so all of 127.0.0.0/8 is shared by the actors and nothing leaves the
// machine:
//
//	127.0.0.2:5060   Kamailio (atlanta.example)
//	127.0.0.53:53    dnsmasq
//	127.0.0.10:5060  proxy peer P (--roles proxy)
//	127.0.0.11:5060  home peer H (hosts the overlay devices)
//	127.0.0.20       overlay UA (sipp)
//	127.0.0.30       public caller (sipp, talks to Kamailio)
//	127.0.0.31       bob, registered at Kamailio (sipp)
//	127.0.0.40       a stranger: registered nowhere

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	pxOverlay   = "overlay.example"
	pxPublic    = "atlanta.example"
	pxKamIP     = "127.0.0.2"
	pxDNSIP     = "127.0.0.53"
	pxProxyIP   = "127.0.0.10"
	pxHomeIP    = "127.0.0.11"
	pxUAIP      = "127.0.0.20"
	pxCallerIP  = "127.0.0.30"
	pxBobIP     = "127.0.0.31"
	pxStranger  = "127.0.0.40"
	pxSIPPort   = 5060
	pxDaemonEnd = 5 * time.Second
	// pxProxyWait bounds how long the home peer may take to find the proxy's
	// service record in the overlay.
	pxProxyWait = 30 * time.Second
)

func pxAddr(ip string, port int) string { return ip + ":" + strconv.Itoa(port) }

// pxEnv is one namespace with DNS, Kamailio and the two peers.
type pxEnv struct {
	ns     []string // ip netns exec NAME
	nsName string
	run    string // Kamailio's run dir (ctl socket, pid file)
	dns    *pxDaemon
	kam    *pxDaemon
	P, H   *peer
}

// pxDaemon is a long-running third-party process (dnsmasq, Kamailio).
type pxDaemon struct {
	name    string
	cmd     *exec.Cmd
	out     *lockedBuffer
	done    chan struct{}
	pidFile string
}

// pxStartDaemon starts a daemon in its own process group; Cleanup sends
// SIGTERM to its PID (from pidFile if given, e.g. Kamailio's main process),
// then SIGKILLs the group it started if it has not exited within 5 s.
func pxStartDaemon(t *testing.T, name, pidFile string, argv ...string) *pxDaemon {
	t.Helper()
	d := &pxDaemon{name: name, out: &lockedBuffer{}, done: make(chan struct{}), pidFile: pidFile}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t.Logf("%s: starting %s", name, strings.Join(argv, " "))
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		pid := d.cmd.Process.Pid
		if d.pidFile != "" {
			if b, err := os.ReadFile(d.pidFile); err == nil {
				if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
					pid = n
				}
			}
		}
		select {
		case <-d.done:
		default:
			_ = syscall.Kill(pid, syscall.SIGTERM)
			if pid != d.cmd.Process.Pid {
				_ = d.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-d.done:
			case <-time.After(pxDaemonEnd):
				t.Logf("%s: still running %s after SIGTERM: SIGKILL to its process group", name, pxDaemonEnd)
				_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
				<-d.done
			}
		}
		if t.Failed() {
			out := d.out.String()
			t.Logf("%s output (tail; the whole of it in %s):\n%s", name, keepFailureLog(t, name, out), pxTail(out, 24000))
		}
	})
	return d
}

func (d *pxDaemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// pxRun runs a short command (under the namespace wrapper) with a timeout.
func pxRun(t *testing.T, wrapper []string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append(append([]string(nil), wrapper...), argv...)
	out, err := exec.CommandContext(ctx, full[0], full[1:]...).CombinedOutput()
	return string(out), err
}

// pxWaitListening waits until something listens on addr (proto "udp" or
// "tcp") inside the namespace.
func (e *pxEnv) waitListening(t *testing.T, proto, addr string, alive func() bool) {
	t.Helper()
	flag := "-Hlun"
	if proto == "tcp" {
		flag = "-Hltn"
	}
	eventually(t, 10*time.Second, 50*time.Millisecond, proto+" "+addr+" listening in the namespace", func() (bool, string) {
		if alive != nil && !alive() {
			t.Fatalf("process for %s %s exited before listening", proto, addr)
		}
		out, err := pxRun(t, e.ns, "ss", flag)
		if err != nil {
			return false, fmt.Sprintf("ss: %v: %s", err, out)
		}
		return strings.Contains(out, addr+" "), out
	})
}

// pxSetup builds the namespace, DNS, Kamailio and the peers P (proxy) and H.
func pxSetup(t *testing.T) *pxEnv { return pxSetupWith(t, pxOpts{}) }

// pxSetupOrder is pxSetup; proxyFirst starts P first and has H join it.
func pxSetupOrder(t *testing.T, proxyFirst bool) *pxEnv {
	return pxSetupWith(t, pxOpts{proxyFirst: proxyFirst})
}

// pxOpts varies the environment.
type pxOpts struct {
	// proxyFirst starts P first and has H join it; otherwise H starts first.
	proxyFirst bool
	// noPrivateTargets leaves out P's --proxy-private-targets: P then
	// refuses to relay to Kamailio, whose 127.0.0.2 is a loopback address.
	noPrivateTargets bool
	// homeArgs are extra flags for H, e.g. --media-timeout 5s.
	homeArgs []string
}

func pxSetupWith(t *testing.T, o pxOpts) *pxEnv {
	t.Helper()
	pxRequireTools(t)
	ns := newNetns(t)
	// The namespace's resolver (bind-mounted by ip netns exec) is our dnsmasq:
	// Kamailio resolves overlay.example through it.
	pxWriteResolvConf(t, ns[len(ns)-1])
	return pxSetupIn(t, ns, o)
}

// pxSetupHere builds the same environment in the namespace this test
// process already runs in (the browser suite's, see runBrowserSuiteInNetns),
// whose resolv.conf the outer process wrote with pxWriteResolvConf before
// it ran this one with ip netns exec. H starts first and P joins it.
func pxSetupHere(t *testing.T) *pxEnv {
	t.Helper()
	pxRequireTools(t)
	return pxSetupIn(t, nil, pxOpts{})
}

// pxRequireTools skips (fails in CI) unless the proxy environment's tools
// are installed.
func pxRequireTools(t *testing.T) {
	t.Helper()
	requireRoot(t)
	requireTool(t, "sipp", "sip-tester")
	requireTool(t, "kamailio", "kamailio")
	requireTool(t, "kamcmd", "kamailio")
	requireTool(t, "dnsmasq", "dnsmasq")
	requireTool(t, "ss", "iproute2")
}

// pxWriteResolvConf points the namespace's resolver at pxDNSIP: ip netns
// exec bind-mounts /etc/netns/<ns>/resolv.conf on /etc/resolv.conf for
// what it runs (and their children), so it must exist before they start.
func pxWriteResolvConf(t *testing.T, nsName string) {
	t.Helper()
	etc := filepath.Join("/etc/netns", nsName)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+pxDNSIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pxSetupIn starts dnsmasq, Kamailio, P and H under the wrapper ns (ip netns
// exec NAME), or, with ns nil, in this process's own namespace.
func pxSetupIn(t *testing.T, ns []string, o pxOpts) *pxEnv {
	t.Helper()
	kamailio := requireTool(t, "kamailio", "kamailio")
	dnsmasq := requireTool(t, "dnsmasq", "dnsmasq")

	e := &pxEnv{ns: ns}
	if len(ns) > 0 {
		e.nsName = ns[len(ns)-1]
	}
	e.run = t.TempDir()

	dnsArgs := append(append([]string(nil), e.ns...), dnsmasq,
		"--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--log-queries",
		"--listen-address="+pxDNSIP, "--bind-interfaces", "--port=53",
		// Names under example are answered from these records only: NXDOMAIN
		// or NODATA otherwise (with --address=/name/ip instead, dnsmasq 2.90
		// answers AAAA and unknown SRV names with REFUSED, which resolvers
		// take for a server failure).
		"--local=/example/",
		// the public domain: NAPTR → SRV → A
		"--host-record="+pxPublic+","+pxKamIP,
		"--srv-host=_sip._udp."+pxPublic+","+pxPublic+",5060",
		"--naptr-record="+pxPublic+",10,10,S,SIP+D2U,,_sip._udp."+pxPublic,
		// the overlay's public name: SRV → A → the proxy peer
		"--host-record="+pxOverlay+","+pxProxyIP,
		"--srv-host=_sip._udp."+pxOverlay+","+pxOverlay+",5060",
	)
	// --no-daemon writes no pid file: the PID is the process started.
	e.dns = pxStartDaemon(t, "dnsmasq", "", dnsArgs...)
	e.waitListening(t, "udp", pxAddr(pxDNSIP, 53), e.dns.running)
	for host, want := range map[string]string{pxPublic: pxKamIP, pxOverlay: pxProxyIP} {
		out, err := pxRun(t, e.ns, "getent", "hosts", host)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("DNS in the namespace: getent hosts %s = %q (%v), want %s", host, out, err, want)
		}
	}

	tmpl, err := os.ReadFile(filepath.Join(moduleRoot, "e2e", "testdata", "proxy", "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.run, "kamailio.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(tmpl), "@RUNDIR@", e.run)), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(e.run, "kamailio.pid")
	kamArgs := append(append([]string(nil), e.ns...), kamailio,
		"-f", cfg, "-DD", "-E", "-P", pidFile, "-Y", e.run, "-m", "512", "-M", "8")
	e.kam = pxStartDaemon(t, "kamailio", pidFile, kamArgs...)
	eventually(t, 10*time.Second, 100*time.Millisecond, "kamailio answers kamcmd", func() (bool, string) {
		if !e.kam.running() {
			t.Fatalf("kamailio exited:\n%s", e.kam.out.String())
		}
		out, err := e.kamcmd(t, "core.version")
		return err == nil, out
	})
	e.waitListening(t, "udp", pxAddr(pxKamIP, 5060), e.kam.running)

	proxyArgs := []string{"--overlay", pxOverlay, "--roles", "proxy", "--public-addr", pxProxyIP,
		"--sip", pxAddr(pxProxyIP, pxSIPPort), "--dns", pxAddr(pxDNSIP, 53), "--log-level", "debug"}
	if !o.noPrivateTargets {
		// Every actor here has a loopback address: the public domain too.
		proxyArgs = append(proxyArgs, "--proxy-private-targets")
	}
	homeArgs := []string{"--overlay", pxOverlay, "--sip", pxAddr(pxHomeIP, pxSIPPort), "--log-level", "debug"}
	homeArgs = append(homeArgs, o.homeArgs...)
	if o.proxyFirst {
		// The brief's topology: the proxy is the overlay's first peer and H
		// joins it.
		e.P = startPeerOpts(t, peerOpts{name: "P", wrapper: e.ns, args: proxyArgs})
		e.H = startPeerOpts(t, peerOpts{name: "H", wrapper: e.ns, args: append(homeArgs, "--join", e.P.URL+"/")})
	} else {
		// H first and P joins it: P's join kicks its refresh, which provides
		// the proxy service record (see TestProxyDiscoveredWhenStartedFirst
		// for the other order).
		e.H = startPeerOpts(t, peerOpts{name: "H", wrapper: e.ns, args: homeArgs})
		e.P = startPeerOpts(t, peerOpts{name: "P", wrapper: e.ns, args: append(proxyArgs, "--join", e.H.URL+"/")})
	}
	eventually(t, 20*time.Second, 300*time.Millisecond, "H lists P", func() (bool, string) {
		st, res := e.H.status(t)
		return res.Code == 0 && st.hasPeer(e.P.NodeID), res.String()
	})
	return e
}

func (e *pxEnv) kamcmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return pxRun(t, e.ns, append([]string{"kamcmd", "-s", "unix:" + filepath.Join(e.run, "kamailio_ctl")}, args...)...)
}

// kamLog is what Kamailio received (the PXLOG lines of testdata/proxy/kamailio.cfg).
func (e *pxEnv) kamLog() string { return e.kam.out.String() }

// ---- sipp ---------------------------------------------------------------

type pxSippOpts struct {
	name     string
	scenario string // file in testdata/proxy, or an absolute path
	ip       string
	port     int
	remote   string // host:port; "" for a UAS
	service  string
	keys     map[string]string
	csv      string // "user;domain" for -inf
	au, ap   string
	timeout  time.Duration // sipp -timeout; default 20 s
	quiet    bool          // do not log the command line (retries)
	// hold is how long a UAC keeps the call up after its ACK (sipp -d, for
	// the scenario's bare <pause/>); 0 hangs up at once.
	hold  time.Duration
	extra []string // more sipp options (-rtp_echo, -mp …)
}

type pxSipp struct {
	name string
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type pxSippResult struct {
	Code               int
	Output, Msgs, Errs string
}

func (r pxSippResult) String() string {
	return fmt.Sprintf("sipp exit %d\n--- errors:\n%s\n--- screen (tail):\n%s\n--- messages:\n%s",
		r.Code, pxTail(r.Errs, 3000), pxTail(r.Output, 2000), pxTail(r.Msgs, 20000))
}

func (e *pxEnv) startSipp(t *testing.T, o pxSippOpts) *pxSipp {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 20 * time.Second
	}
	scen := o.scenario
	if !filepath.IsAbs(scen) {
		scen = filepath.Join(moduleRoot, "e2e", "testdata", "proxy", scen)
	}
	if o.name == "" {
		o.name = strings.TrimSuffix(filepath.Base(scen), ".xml")
	}
	dir := t.TempDir()
	args := []string{"sipp", "-sf", scen, "-nostdin", "-m", "1", "-t", "u1",
		"-timeout", fmt.Sprintf("%ds", int(o.timeout.Seconds())), "-timeout_error",
		"-i", o.ip, "-bind_local", "-p", strconv.Itoa(o.port),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	}
	for k, v := range o.keys {
		args = append(args, "-key", k, v)
	}
	if o.service != "" {
		args = append(args, "-s", o.service)
	}
	if o.csv != "" {
		csv := filepath.Join(dir, "users.csv")
		if err := os.WriteFile(csv, []byte("SEQUENTIAL\n"+o.csv+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-inf", csv)
	}
	if o.au != "" {
		args = append(args, "-au", o.au, "-ap", o.ap)
	}
	if o.hold > 0 {
		args = append(args, "-d", strconv.Itoa(int(o.hold.Milliseconds())))
	}
	args = append(args, o.extra...)
	if o.remote != "" {
		args = append(args, o.remote)
	}
	full := append(append([]string(nil), e.ns...), args...)
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout+15*time.Second)
	s := &pxSipp{name: o.name, dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, full[0], full[1:]...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if !o.quiet {
		t.Logf("sipp %s: %s", o.name, strings.Join(full, " "))
	}
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("sipp %s: %v", o.name, err)
	}
	go func() { _ = s.cmd.Wait(); cancel(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *pxSipp) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *pxSipp) wait() pxSippResult {
	<-s.done
	r := pxSippResult{Code: s.cmd.ProcessState.ExitCode(), Output: s.out.String()}
	if b, err := os.ReadFile(filepath.Join(s.dir, "messages.log")); err == nil {
		r.Msgs = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "errors.log")); err == nil {
		r.Errs = string(b)
	}
	return r
}

func (e *pxEnv) runSipp(t *testing.T, o pxSippOpts) pxSippResult {
	t.Helper()
	return e.startSipp(t, o).wait()
}

// scenarioWithCode writes a copy of a testdata/proxy template with @CODE@
// replaced.
func pxScenarioWithCode(t *testing.T, name string, code int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "e2e", "testdata", "proxy", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), strings.TrimSuffix(name, ".xml")+"_"+strconv.Itoa(code)+".xml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "@CODE@", strconv.Itoa(code))), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pxMessages splits a sipp -trace_msg log into its messages, each with its
// direction line ("UDP message received ..." / "UDP message sent ...").
type pxMsg struct {
	received bool
	text     string
}

func pxMessages(log string) []pxMsg {
	var out []pxMsg
	for _, block := range strings.Split(log, "\n----------------------------------------------- ") {
		i := strings.Index(block, "message ")
		if i < 0 {
			continue
		}
		head, body, ok := strings.Cut(block[i:], "\n")
		if !ok {
			continue
		}
		out = append(out, pxMsg{received: strings.Contains(head, "received"), text: strings.TrimLeft(body, "\r\n")})
	}
	return out
}

// firstReceived returns the first received message whose start line begins with prefix.
func pxFirstReceived(log, prefix string) string {
	for _, m := range pxMessages(log) {
		if m.received && strings.HasPrefix(m.text, prefix) {
			return m.text
		}
	}
	return ""
}

func pxAllReceived(log, prefix string) []string {
	var out []string
	for _, m := range pxMessages(log) {
		if m.received && strings.HasPrefix(m.text, prefix) {
			out = append(out, m.text)
		}
	}
	return out
}

// pxHeaders returns the values of every header named name (compact form
// too: short), split at top-level commas.
func pxHeaders(msg, name, short string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, name) || (short != "" && strings.EqualFold(k, short)) {
			for _, p := range pxSplitTopComma(v) {
				out = append(out, strings.TrimSpace(p))
			}
		}
	}
	return out
}

func pxSplitTopComma(s string) []string {
	var out []string
	depth, start := 0, 0
	inQuote := false
	for i, c := range s {
		switch {
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// pxHasRR reports whether one of the Record-Route entries names host with a
// p2pd= dialog token.
func pxHasRR(rrs []string, host string) bool {
	for _, rr := range rrs {
		if strings.Contains(rr, "sip:"+host+":") && strings.Contains(rr, "p2pd=") {
			return true
		}
	}
	return false
}

// ---- steps ----------------------------------------------------------------

// registerOverlay registers user@overlay.example at H from ip:port.
func (e *pxEnv) registerOverlay(t *testing.T, user, ip string, port int) {
	t.Helper()
	r := e.runSipp(t, pxSippOpts{name: "register " + user + "@" + pxOverlay, scenario: "register.xml",
		ip: ip, port: port, remote: pxAddr(pxHomeIP, pxSIPPort), csv: user + ";" + pxOverlay})
	if r.Code != 0 {
		t.Fatalf("registering %s@%s at H from %s:%d failed:\n%s", user, pxOverlay, ip, port, r)
	}
}

const pxNoProxy = "no P2P SIP proxy"

// retryNoProxy runs a sipp step until it succeeds or fails for another
// reason than "H has not found the proxy yet" (or pxProxyWait passes).
func pxRetryNoProxy(t *testing.T, what string, wait time.Duration, run func(retry bool) pxSippResult) pxSippResult {
	t.Helper()
	deadline := time.Now().Add(wait)
	for n := 1; ; n++ {
		r := run(n > 1)
		if r.Code == 0 || !strings.Contains(r.Msgs, pxNoProxy) || time.Now().After(deadline) {
			if n > 1 {
				t.Logf("%s: %d attempts (the earlier ones: the home peer had not found the proxy yet)", what, n)
			}
			return r
		}
		time.Sleep(time.Second)
	}
}

// registerPublic registers alice@atlanta.example with contact
// sip:alice1@overlay.example from the overlay UA's ip:port, through H.
func (e *pxEnv) registerPublic(t *testing.T, ip string, port int, scenario, password string, wait time.Duration) pxSippResult {
	t.Helper()
	return pxRetryNoProxy(t, "public REGISTER", wait, func(retry bool) pxSippResult {
		return e.runSipp(t, pxSippOpts{name: "register alice@" + pxPublic + " via H", scenario: scenario, quiet: retry,
			ip: ip, port: port, remote: pxAddr(pxHomeIP, pxSIPPort), csv: "alice;" + pxPublic,
			keys: map[string]string{"contact": "alice1@" + pxOverlay}, au: "alice", ap: password})
	})
}

// setupAliceRegistered: alice1@overlay.example at H from ip:port, then
// alice@atlanta.example → sip:alice1@overlay.example at Kamailio, via H and P.
func (e *pxEnv) setupAliceRegistered(t *testing.T, ip string, port int) pxSippResult {
	t.Helper()
	e.registerOverlay(t, "alice1", ip, port)
	r := e.registerPublic(t, ip, port, "register_public.xml", "alicepw", pxProxyWait)
	if r.Code != 0 {
		t.Fatalf("public REGISTER of alice@%s via H failed:\n%s", pxPublic, r)
	}
	return r
}

// kamRequests returns the requests Kamailio logged whose start line begins
// with prefix, each with the "from proto:ip:port" line.
func (e *pxEnv) kamRequests(prefix string) []string {
	var out []string
	re := regexp.MustCompile(`(?s)PXLOG request from (\S+)\n(.*?)\nPXLOG end`)
	for _, m := range re.FindAllStringSubmatch(e.kamLog(), -1) {
		body := strings.TrimLeft(m[2], "\r\n")
		if strings.HasPrefix(body, prefix) {
			out = append(out, "from "+m[1]+"\n"+body)
		}
	}
	return out
}

// pxFromProxySocket reports whether a request Kamailio logged came from the
// proxy's SIP socket (UDP: its listening ip:port; TCP: its IP).
func pxFromProxySocket(req string) bool {
	return strings.HasPrefix(req, "from udp:"+pxAddr(pxProxyIP, pxSIPPort)+"\n") || strings.HasPrefix(req, "from tcp:"+pxProxyIP+":")
}

// ---- tests ----------------------------------------------------------------

// TestProxyPublicRegister: an overlay device registers its public AOR
// alice@atlanta.example through its home peer H; H hands the REGISTER to the
// proxy peer P found in the overlay, P resolves atlanta.example (RFC 3263)
// and relays to Kamailio, whose 401 comes back unchanged; the UA's answer
// gets 200, and Kamailio's location has sip:alice1@overlay.example.
func TestProxyPublicRegister(t *testing.T) {
	e := pxSetup(t)
	r := e.setupAliceRegistered(t, pxUAIP, 5070)

	// The challenge the UA saw is Kamailio's, unchanged (realm of the public domain).
	ch := pxFirstReceived(r.Msgs, "SIP/2.0 401")
	if wa := pxHeaders(ch, "WWW-Authenticate", ""); len(wa) == 0 || !strings.Contains(strings.Join(wa, ","), `realm="`+pxPublic+`"`) {
		t.Errorf("the UA's 401 has no WWW-Authenticate of realm %s:\n%s", pxPublic, ch)
	}

	out, err := e.kamcmd(t, "ul.dump")
	if err != nil {
		t.Fatalf("kamcmd ul.dump: %v\n%s", err, out)
	}
	if !strings.Contains(out, "alice") || !strings.Contains(out, "sip:alice1@"+pxOverlay) {
		t.Errorf("Kamailio's location has no alice → sip:alice1@%s:\n%s", pxOverlay, out)
	}

	// What reached Kamailio: from the proxy, without the overlay's sender
	// header, and without a Route naming the proxy (RFC 3261 §16.4: a proxy
	// removes the Route entry that names it).
	regs := e.kamRequests("REGISTER ")
	if len(regs) == 0 {
		t.Fatalf("Kamailio logged no REGISTER:\n%s", pxTail(e.kamLog(), 8000))
	}
	for _, req := range regs {
		if !pxFromProxySocket(req) {
			t.Errorf("the proxy sent this REGISTER to Kamailio not from its SIP socket %s (so a registrar answering per RFC 3261 §18.2.2 — received IP, Via port, no rport — cannot reach it; kamailio.cfg forces rport to get past this):\n%s",
				pxAddr(pxProxyIP, pxSIPPort), req)
		}
		if strings.Contains(strings.ToLower(req), "p-p2psip-sender") {
			t.Errorf("the REGISTER Kamailio got still carries the overlay's P-P2PSIP-Sender header:\n%s", req)
		}
		for _, rt := range pxHeaders(strings.SplitN(req, "\n", 2)[1], "Route", "") {
			if strings.Contains(rt, pxProxyIP) || strings.Contains(rt, pxHomeIP) {
				t.Errorf("the REGISTER Kamailio got still has a Route to an overlay peer (%s); §16.4 says the proxy removes its own Route entry:\n%s", rt, req)
			}
		}
	}

	// Wrong password: Kamailio's rejection (401 again, or 403) reaches the UA.
	bad := e.registerPublic(t, pxUAIP, 5070, "register_public_badpw.xml", "wrong-password", 0)
	if bad.Code != 0 {
		t.Fatalf("with a wrong password the UA did not get Kamailio's 401/403:\n%s", bad)
	}
	rej := pxAllReceived(bad.Msgs, "SIP/2.0 40")
	if len(rej) < 2 {
		t.Errorf("want the first challenge and a second 401/403, got %d:\n%s", len(rej), bad)
	}
	if out, _ := e.kamcmd(t, "ul.dump"); !strings.Contains(out, "sip:alice1@"+pxOverlay) {
		t.Errorf("the failed REGISTER removed alice's binding:\n%s", out)
	}
}

// TestProxyInboundCall: a caller on the public side calls
// sip:alice@atlanta.example at Kamailio; Kamailio's location says
// sip:alice1@overlay.example, DNS says overlay.example is the proxy peer P; P
// finds alice1 in the overlay and routes to H, which hands the call to the
// UA's flow. The call completes; the INVITE the UA got has the Record-Routes
// of P and H.
func TestProxyInboundCall(t *testing.T) {
	e := pxSetup(t)
	e.setupAliceRegistered(t, pxUAIP, 5070)

	uas := e.startSipp(t, pxSippOpts{name: "UAS alice1", scenario: "uas_rr.xml", ip: pxUAIP, port: 5070, timeout: 40 * time.Second})
	e.waitListening(t, "udp", pxAddr(pxUAIP, 5070), uas.running)

	uac := e.runSipp(t, pxSippOpts{name: "public caller", scenario: "uac_rr.xml", ip: pxCallerIP, port: 5090,
		remote: pxAddr(pxKamIP, 5060), service: "alice"})
	if uac.Code != 0 {
		t.Errorf("public caller → alice@%s failed:\n%s", pxPublic, uac)
	}
	if !uac.ok() {
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
	}
	ur := uas.wait()
	if ur.Code != 0 {
		t.Errorf("alice1's UAS did not complete the call:\n%s", ur)
	}
	inv := pxFirstReceived(ur.Msgs, "INVITE ")
	if inv == "" {
		t.Fatalf("alice1's UAS got no INVITE; Kamailio saw:\n%s", strings.Join(e.kamRequests("INVITE "), "\n\n"))
	}
	pxCheckCrossedProxy(t, "the UA's", inv)
	// The caller's 200 carries the same route set back.
	ok := pxFirstReceived(uac.Msgs, "SIP/2.0 200")
	if rrs := pxHeaders(ok, "Record-Route", ""); !pxHasRR(rrs, pxProxyIP) {
		t.Errorf("the caller's 200 has no Record-Route of the proxy: %q\n%s", rrs, ok)
	}
}

func (r pxSippResult) ok() bool { return r.Code == 0 }

// keepFailureLog writes a failed test's whole daemon output where it
// outlives the test's temporary directory (the log shows only its tail),
// and returns the file's path. A lost message is found in what came
// first, long before the failure (the call's set-up).
func keepFailureLog(t *testing.T, name, out string) string {
	dir := filepath.Join(os.TempDir(), "p2psip-e2e-failures", strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	path := filepath.Join(dir, name+".log")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	return path
}

func pxTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// TestProxyOutboundCall: bob registers at Kamailio; the overlay UA
// (alice1@overlay.example at H) calls sip:bob@atlanta.example through H; H
// routes to the proxy P found in the overlay, P resolves atlanta.example and
// relays to Kamailio, which reaches bob. The call completes and bob's INVITE
// has the proxy's Record-Route.
func TestProxyOutboundCall(t *testing.T) {
	e := pxSetup(t)

	reg := e.runSipp(t, pxSippOpts{name: "register bob at Kamailio", scenario: "register.xml", ip: pxBobIP, port: 5080,
		remote: pxAddr(pxKamIP, 5060), csv: "bob;" + pxPublic, au: "bob", ap: "bobpw"})
	if reg.Code != 0 {
		t.Fatalf("bob's REGISTER at Kamailio failed:\n%s", reg)
	}
	uas := e.startSipp(t, pxSippOpts{name: "UAS bob", scenario: "uas_rr.xml", ip: pxBobIP, port: 5080, timeout: 90 * time.Second})
	e.waitListening(t, "udp", pxAddr(pxBobIP, 5080), uas.running)

	e.registerOverlay(t, "alice1", pxUAIP, 5072)
	uac := pxRetryNoProxy(t, "outbound INVITE", pxProxyWait, func(retry bool) pxSippResult {
		return e.runSipp(t, pxSippOpts{name: "alice1 calls bob@" + pxPublic, scenario: "uac_public.xml", ip: pxUAIP, port: 5072, quiet: retry,
			remote: pxAddr(pxHomeIP, pxSIPPort), service: "bob",
			keys: map[string]string{"callee_domain": pxPublic, "from_aor": "alice1@" + pxOverlay}})
	})
	if uac.Code != 0 {
		t.Errorf("alice1 → bob@%s through the overlay failed:\n%s\nKamailio saw:\n%s", pxPublic, uac,
			strings.Join(e.kamRequests("INVITE "), "\n\n"))
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
	}
	ur := uas.wait()
	if uac.Code == 0 && ur.Code != 0 {
		t.Errorf("bob's UAS did not complete the call:\n%s", ur)
	}
	inv := pxFirstReceived(ur.Msgs, "INVITE ")
	if inv == "" {
		t.Fatalf("bob got no INVITE:\n%s", ur)
	}
	pxCheckCrossedProxy(t, "bob's", inv)
	for _, req := range e.kamRequests("INVITE sip:bob@") {
		if !pxFromProxySocket(req) {
			t.Errorf("the proxy sent this INVITE to Kamailio not from its SIP socket %s:\n%s", pxAddr(pxProxyIP, pxSIPPort), req)
		}
	}
}

// TestProxyNoOpenRelay: requests for a public domain from a source that is
// no registered overlay device are refused: 403 at the proxy, 503 for an
// INVITE at a peer with no proxy role, 403 for a REGISTER there. None of
// them reaches Kamailio.
func TestProxyNoOpenRelay(t *testing.T) {
	e := pxSetup(t)
	// Let H find the proxy first, so its 503 is not just "no proxy yet".
	e.setupAliceRegistered(t, pxUAIP, 5070)

	cases := []struct {
		name, scenario, remote string
		port, code             int
	}{
		{"INVITE bob@atlanta.example straight to the proxy", "invite_expect.xml", pxAddr(pxProxyIP, pxSIPPort), 5090, 403},
		{"REGISTER x@atlanta.example at H", "register_expect.xml", pxAddr(pxHomeIP, pxSIPPort), 5091, 403},
		// Not from a registered device: 403 that says so, not 503 "no proxy".
		{"INVITE bob@atlanta.example at H", "invite_expect.xml", pxAddr(pxHomeIP, pxSIPPort), 5092, 403},
		{"REGISTER x@atlanta.example straight to the proxy", "register_expect.xml", pxAddr(pxProxyIP, pxSIPPort), 5093, 403},
	}
	for _, c := range cases {
		service := "bob"
		if strings.HasPrefix(c.scenario, "register") {
			service = "x"
		}
		r := e.runSipp(t, pxSippOpts{name: c.name, scenario: pxScenarioWithCode(t, c.scenario, c.code),
			ip: pxStranger, port: c.port, remote: c.remote, service: service,
			keys: map[string]string{"callee_domain": pxPublic}})
		if r.Code != 0 {
			t.Errorf("%s from the stranger %s: want %d:\n%s", c.name, pxStranger, c.code, r)
		}
	}
	for _, m := range []string{"INVITE sip:bob@", "REGISTER "} {
		for _, req := range e.kamRequests(m) {
			if strings.Contains(req, pxStranger) || strings.Contains(req, "sip:x@"+pxPublic) {
				t.Errorf("a stranger's request reached Kamailio:\n%s", req)
			}
		}
	}
}

// TestProxyDiscoveredWhenStartedFirst: the proxy is the overlay's first peer
// (the natural deployment: a public proxy that others join) and H joins it.
// The proxy announced itself at start, alone; once H is in, H must find it
// within pxProxyWait so that H's users can reach public domains.
func TestProxyDiscoveredWhenStartedFirst(t *testing.T) {
	e := pxSetupOrder(t, true)
	e.registerOverlay(t, "alice1", pxUAIP, 5070)
	start := time.Now()
	r := e.registerPublic(t, pxUAIP, 5070, "register_public.xml", "alicepw", pxProxyWait)
	if r.Code != 0 {
		t.Fatalf("%s after H joined the proxy peer, H still does not relay the public REGISTER (it finds no proxy in the overlay):\n%s",
			time.Since(start).Round(time.Second), r)
	}
	t.Logf("H found the proxy after %s", time.Since(start).Round(time.Millisecond))
}

// TestProxyRefusesPrivateTargets: without --proxy-private-targets, the
// proxy refuses to relay an overlay user's call to a public domain that
// resolves (NAPTR → SRV → A) to a loopback address, here Kamailio's
// 127.0.0.2, and to a literal loopback IP in the Request-URI: 403 back to
// the caller through H, a log line at P, nothing at Kamailio.
func TestProxyRefusesPrivateTargets(t *testing.T) {
	e := pxSetupWith(t, pxOpts{noPrivateTargets: true})
	e.registerOverlay(t, "alice1", pxUAIP, 5074)
	// From the port alice1 registered from: H knows its users by their flows.
	for _, domain := range []string{pxPublic, pxKamIP, pxKamIP + ":5060"} {
		r := pxRetryNoProxy(t, "INVITE bob@"+domain, pxProxyWait, func(retry bool) pxSippResult {
			return e.runSipp(t, pxSippOpts{name: "alice1 calls bob@" + domain, scenario: pxScenarioWithCode(t, "invite_expect.xml", 403),
				ip: pxUAIP, port: 5074, quiet: retry, remote: pxAddr(pxHomeIP, pxSIPPort), service: "bob",
				keys: map[string]string{"callee_domain": domain}})
		})
		if r.Code != 0 {
			t.Errorf("alice1 → bob@%s through the overlay: want 403 from the proxy:\n%s", domain, r)
			continue
		}
		if res := pxFirstReceived(r.Msgs, "SIP/2.0 403"); !strings.Contains(res, "loopback address") {
			t.Errorf("the 403 for bob@%s does not say why (a loopback address):\n%s", domain, res)
		}
	}
	if reqs := e.kamRequests("INVITE "); len(reqs) > 0 {
		t.Errorf("the proxy relayed to Kamailio's loopback address without --proxy-private-targets:\n%s", strings.Join(reqs, "\n\n"))
	}
	if logs := e.P.stderr.String(); !strings.Contains(logs, "refused to relay to a private or local address") {
		t.Errorf("P logged no refusal:\n%s", pxTail(logs, 4000))
	}
}

// pxCheckCrossedProxy checks an INVITE that crossed the proxy and the home
// peer: both Record-Routed it, and the overlay's sender header stayed
// behind.
func pxCheckCrossedProxy(t *testing.T, whose, inv string) {
	t.Helper()
	rrs := pxHeaders(inv, "Record-Route", "")
	t.Logf("%s INVITE:\n%s", whose, inv)
	if !pxHasRR(rrs, pxProxyIP) {
		t.Errorf("%s INVITE has no Record-Route of the proxy (%s, p2pd=): %q\n%s", whose, pxProxyIP, rrs, inv)
	}
	if !pxHasRR(rrs, pxHomeIP) {
		t.Errorf("%s INVITE has no Record-Route of the home peer (%s, p2pd=): %q\n%s", whose, pxHomeIP, rrs, inv)
	}
	if strings.Contains(strings.ToLower(inv), "p-p2psip-sender") {
		t.Errorf("%s INVITE carries the overlay's P-P2PSIP-Sender header:\n%s", whose, inv)
	}
}
