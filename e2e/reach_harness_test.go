//go:build e2e

package e2e

// Multi-host topologies for the reachability tests (issue 10): LANs behind
// NAT routers that pass only HTTPS (or every port, NAT kept), a public side
// with proxy peers, DNS, Kamailio and a public phone, and an ad-hoc LAN with
// no DNS and no public peer. Everything runs in network namespaces the test
// creates (named after the test process's pid, so parallel runs never
// collide); no namespace has a link to the host's, so nothing leaves them.
//
//	lan  10.77.0.0/24  (L 10.77.0.2, phone alice1 10.77.0.20)
//	  | r-lan 10.77.0.1
//	router  (nft: forward only new TCP 80/443 lan→pub — or every port —,
//	  |      nothing new pub→lan; masquerade on r-pub)
//	  | r-pub 10.78.0.1
//	pub  10.78.0.0/24 on p0: P 10.78.0.2, Kamailio 10.78.0.3, P2 10.78.0.4,
//	     dnsmasq 10.78.0.53, carol 10.78.0.30, dave 10.78.0.31
//
// A second LAN (10.79.0.0/24) reaches pub through a second router whose
// public side is 10.80.0.1 on its own link (pub has 10.80.0.2 there). pub
// routes the private LAN prefixes to their routers, which drop what pub
// starts: a dial to a LAN's private address gets no answer at all, as on the
// Internet.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	rOverlay = "overlay.example"
	rPublic  = "atlanta.example"
	// rBiloxi is the draft's second public domain (§3.4: "Alice can call
	// sip:bob@biloxi.com"), served by the same Kamailio.
	rBiloxi = "biloxi.example"

	rPubP    = "10.78.0.2"  // public proxy peer P (P1)
	rPubKam  = "10.78.0.3"  // Kamailio, atlanta.example
	rPubP2   = "10.78.0.4"  // second public peer
	rPubDNS  = "10.78.0.53" // dnsmasq
	rPubCar  = "10.78.0.30" // carol, registered at Kamailio
	rPubDave = "10.78.0.31" // dave1, an overlay user registered at a public peer

	// rJoinWait bounds how long a LAN peer may take to list the public peer
	// it joined.
	rJoinWait = 30 * time.Second
	// rCallTimeout is sipp's -timeout for one call.
	rCallTimeout = 12 * time.Second
)

// rnet is one test's set of namespaces.
type rnet struct {
	t      *testing.T
	prefix string // p2r<pid>-<seq>
	ip     string // the ip binary
	nft    string
	mu     sync.Mutex
	names  []string
}

var rnetSeq atomic.Int64

// newRnet checks the tools every reach test needs (failing in CI, skipping
// elsewhere) and returns an empty set of namespaces.
func newRnet(t *testing.T) *rnet {
	t.Helper()
	requireRoot(t)
	r := &rnet{
		t:      t,
		prefix: fmt.Sprintf("p2r%d-%d", os.Getpid(), rnetSeq.Add(1)),
		ip:     requireTool(t, "ip", "iproute2"),
		nft:    requireTool(t, "nft", "nftables"),
	}
	requireTool(t, "sipp", "sip-tester")
	requireTool(t, "ss", "iproute2")
	requireTool(t, "nc", "netcat-openbsd")
	requireTool(t, "curl", "curl")
	return r
}

// name is the full namespace name of short.
func (r *rnet) name(short string) string { return r.prefix + "-" + short }

// wrap is the command prefix that runs a program in short.
func (r *rnet) wrap(short string) []string { return []string{r.ip, "netns", "exec", r.name(short)} }

// run runs a command and fails the test on error.
func (r *rnet) run(argv ...string) string {
	r.t.Helper()
	out, err := r.try(argv...)
	if err != nil {
		r.t.Fatalf("topology: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func (r *rnet) try(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// ipn runs ip -n NS args...
func (r *rnet) ipn(short string, args ...string) string {
	r.t.Helper()
	return r.run(append([]string{r.ip, "-n", r.name(short)}, args...)...)
}

// in runs argv inside short.
func (r *rnet) in(short string, argv ...string) (string, error) {
	return r.try(append(r.wrap(short), argv...)...)
}

// addNS creates a namespace with lo up (multicast on, for mDNS) and a
// resolv.conf of its own pointing at nameserver (127.0.0.1: no DNS at all).
// Cleanup deletes it, and with it every interface in it; cleanups run in
// reverse, so the processes started in it later are gone first.
func (r *rnet) addNS(short, nameserver string) []string {
	r.t.Helper()
	name := r.name(short)
	etc := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+nameserver+"\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.run(r.ip, "netns", "add", name)
	r.t.Cleanup(func() {
		if out, err := r.try(r.ip, "netns", "delete", name); err != nil {
			r.t.Errorf("cleanup: ip netns delete %s: %v: %s", name, err, out)
		}
	})
	r.mu.Lock()
	r.names = append(r.names, name)
	r.mu.Unlock()
	r.ipn(short, "link", "set", "lo", "up")
	r.ipn(short, "link", "set", "lo", "multicast", "on")
	return r.wrap(short)
}

// link connects two namespaces with a veth pair (created inside a, its peer
// moved into b: no name ever exists in the host's namespace) and puts the
// given addresses (CIDR; more than one allowed, comma-separated) on each end.
func (r *rnet) link(a, aIf, aAddrs, b, bIf, bAddrs string) {
	r.t.Helper()
	r.ipn(a, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", r.name(b))
	for _, end := range []struct{ ns, ifc, addrs string }{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		for _, addr := range strings.Split(end.addrs, ",") {
			if addr != "" {
				r.ipn(end.ns, "addr", "add", addr, "dev", end.ifc)
			}
		}
		r.ipn(end.ns, "link", "set", end.ifc, "up")
	}
}

// natMode is what a LAN's router lets out.
type natMode int

const (
	// httpsOnly: only new TCP connections to ports 80 and 443 from the LAN
	// (the draft's city Wi-Fi).
	httpsOnly natMode = iota
	// allPorts: every new connection from the LAN, the NAT kept.
	allPorts
)

func (m natMode) String() string {
	if m == httpsOnly {
		return "HTTPS-only NAT"
	}
	return "NAT with every port open"
}

// site is one LAN behind its NAT router.
type site struct {
	lan, router string // short namespace names
	mode        natMode
	prefix      string // "10.77.0" — the LAN is prefix.0/24
	wanRouter   string // the router's public address
	wanPub      string // pub's address on the router's link
	peerIP      string // prefix.2: the LAN peer
	phoneIP     string // prefix.20: the LAN's sipp phone
}

// addPub creates the public side's namespace; its first link, to the first
// router, carries the public service addresses (10.78.0.0/24).
func (r *rnet) addPub() []string {
	r.t.Helper()
	return r.addNS("pub", rPubDNS)
}

// addSite creates a LAN and its router, links the router to pub and sets up
// forwarding, filtering and NAT. n is 0 for the first LAN (10.77.0.0/24, on
// pub's service link 10.78.0.0/24) and 1 for a second (10.79.0.0/24, on its
// own link 10.80.0.0/24).
func (r *rnet) addSite(n int, mode natMode) *site {
	r.t.Helper()
	s := &site{
		lan:    fmt.Sprintf("lan%d", n),
		router: fmt.Sprintf("router%d", n),
		mode:   mode,
		prefix: fmt.Sprintf("10.%d.0", 77+2*n),
	}
	wan := fmt.Sprintf("10.%d.0", 78+2*n)
	s.wanRouter, s.wanPub = wan+".1", wan+".2"
	s.peerIP, s.phoneIP = s.prefix+".2", s.prefix+".20"
	r.addNS(s.lan, "127.0.0.1")
	r.addNS(s.router, "127.0.0.1")
	r.link(s.lan, "lan0", s.peerIP+"/24,"+s.phoneIP+"/24", s.router, "r-lan", s.prefix+".1/24")
	pubAddrs := s.wanPub + "/24"
	if n == 0 {
		// Every public actor has its own address on the service link.
		pubAddrs = strings.Join([]string{rPubP + "/24", rPubKam + "/24", rPubP2 + "/24", rPubDNS + "/24", rPubCar + "/24", rPubDave + "/24"}, ",")
	}
	r.link(s.router, "r-pub", s.wanRouter+"/24", "pub", fmt.Sprintf("p%d", n), pubAddrs)
	r.ipn(s.lan, "route", "add", "default", "via", s.prefix+".1")
	r.ipn(s.router, "route", "add", "default", "via", s.wanPub)
	// pub sends what it addresses to this LAN's private prefix to the
	// router, which drops it (see the rules): no answer, as on the Internet.
	r.ipn("pub", "route", "add", s.prefix+".0/24", "via", s.wanRouter)
	r.run(append(r.wrap(s.router), "sysctl", "-qw", "net.ipv4.ip_forward=1")...)

	out := `iifname "r-lan" oifname "r-pub" tcp dport { 80, 443 } ct state new accept`
	if mode == allPorts {
		out = `iifname "r-lan" oifname "r-pub" ct state new accept`
	}
	verdict5060 := "drop"
	if mode == allPorts {
		verdict5060 = "accept"
	}
	rules := fmt.Sprintf(`
table inet reach {
  counter sip5060 { }
  counter landrop { }
  counter pubdrop { }
  chain forward {
    type filter hook forward priority 0; policy drop;
    iifname "r-lan" oifname "r-pub" th dport 5060 counter name "sip5060" %s
    ct state established,related accept
    %s
    iifname "r-lan" counter name "landrop" drop
    iifname "r-pub" counter name "pubdrop" drop
  }
}
table ip reachnat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "r-pub" masquerade
  }
}
`, verdict5060, out)
	cmd := exec.Command(r.wrap(s.router)[0], append(r.wrap(s.router)[1:], r.nft, "-f", "-")...)
	cmd.Stdin = strings.NewReader(rules)
	if b, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("topology: nft rules in %s: %v\n%s\n%s", r.name(s.router), err, b, rules)
	}
	return s
}

var nftPacketsRE = regexp.MustCompile(`packets (\d+)`)

// counter reads one of the router's nft counters (packets).
func (r *rnet) counter(s *site, name string) int {
	r.t.Helper()
	out, err := r.in(s.router, r.nft, "list", "counter", "inet", "reach", name)
	if err != nil {
		r.t.Fatalf("nft list counter %s in %s: %v\n%s", name, s.router, err, out)
	}
	m := nftPacketsRE.FindStringSubmatch(out)
	if m == nil {
		r.t.Fatalf("nft counter %s: no packets in %q", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// tcpReach reports whether a TCP connection from short to addr (ip port) is
// set up within 2 s.
func (r *rnet) tcpReach(short, ip string, port int) bool {
	_, err := r.in(short, "nc", "-z", "-n", "-w", "2", ip, strconv.Itoa(port))
	return err == nil
}

// checkSite verifies the topology once the public peer P (10.78.0.2, HTTPS
// 443, SIP 5060 UDP/TCP) and the LAN peer (prefix.2, HTTPS 8443) run: HTTPS
// from the LAN to P works and arrives masqueraded; port 5060 from the LAN
// does not pass a 443-only router (UDP: the router's drop counter counts the
// probe); nothing new passes from pub to the LAN. It returns the sip5060
// counter after the probes, the baseline for later checks.
func (r *rnet) checkSite(s *site, pubIP string) int {
	r.t.Helper()
	out, err := r.in(s.lan, "curl", "-sk", "--max-time", "5", "https://"+pubIP+":443/.well-known/p2psip")
	if err != nil || !strings.Contains(out, "node_id") {
		r.t.Fatalf("topology (%s): HTTPS from %s to %s:443 does not work: %v\n%s", s.mode, s.lan, pubIP, err, out)
	}
	before := r.counter(s, "sip5060")
	if _, err := r.in(s.lan, "sh", "-c", "echo probe | nc -u -n -w 1 "+pubIP+" 5060"); err != nil {
		r.t.Logf("UDP probe from %s: %v (ignored)", s.lan, err)
	}
	if got := r.counter(s, "sip5060"); got <= before {
		r.t.Fatalf("topology (%s): the router did not see the UDP probe to %s:5060 (counter %d → %d)", s.mode, pubIP, before, got)
	}
	tcp5060 := r.tcpReach(s.lan, pubIP, 5060)
	if s.mode == httpsOnly && tcp5060 {
		r.t.Fatalf("topology (%s): TCP %s:5060 is reachable from the LAN; the router should drop it", s.mode, pubIP)
	}
	if s.mode == allPorts && !tcp5060 {
		r.t.Fatalf("topology (%s): TCP %s:5060 is not reachable from the LAN through the open NAT", s.mode, pubIP)
	}
	if !r.tcpReach(s.lan, s.peerIP, 8443) {
		r.t.Fatalf("topology: the LAN peer's HTTPS %s:8443 is not reachable even inside its LAN", s.peerIP)
	}
	dropped := r.counter(s, "pubdrop")
	if r.tcpReach("pub", s.peerIP, 8443) {
		r.t.Fatalf("topology (%s): pub opened a connection to the LAN's %s:8443; the router must let nothing new in", s.mode, s.peerIP)
	}
	if got := r.counter(s, "pubdrop"); got <= dropped {
		r.t.Fatalf("topology (%s): the probe from pub to %s:8443 did not reach the router's drop rule (%d → %d)", s.mode, s.peerIP, dropped, got)
	}
	base := r.counter(s, "sip5060")
	r.t.Logf("topology (%s) checked: HTTPS lan→pub passes, TCP 5060 lan→pub %s, UDP 5060 lan→pub %s, nothing new pub→lan",
		s.mode, map[bool]string{true: "passes", false: "dropped"}[tcp5060], map[bool]string{true: "passes", false: "dropped"}[s.mode == allPorts])
	return base
}

// checkMasquerade verifies, once the LAN peer has joined, that pub sees its
// connections to pubIP:443 from the router's public address only.
func (r *rnet) checkMasquerade(s *site, pubIP string) {
	r.t.Helper()
	out, err := r.in("pub", "ss", "-Htn", "state", "established", "src", pubIP+":443")
	if err != nil {
		r.t.Fatalf("ss in pub: %v\n%s", err, out)
	}
	if regexp.MustCompile(regexp.QuoteMeta(s.prefix) + `\.\d+:`).MatchString(out) {
		r.t.Fatalf("topology (%s): pub sees connections from the LAN's private addresses (%s.x): no masquerade\n%s", s.mode, s.prefix, out)
	}
	if !strings.Contains(out, s.wanRouter+":") {
		r.t.Errorf("topology (%s): no connection from the router's %s to %s:443 in pub (the LAN peer joined over something else?)\n%s", s.mode, s.wanRouter, pubIP, out)
	}
}

// ---- peers ------------------------------------------------------------------

var (
	peerHelpOnce sync.Once
	peerHelp     string
)

// peerHasFlag reports whether the peer binary knows --name (the
// reachability work lands in parallel with these tests).
func peerHasFlag(name string) bool {
	peerHelpOnce.Do(func() {
		out, _ := exec.Command(peerBin, "--help").CombinedOutput()
		peerHelp = string(out)
	})
	return strings.Contains(peerHelp, "--"+name+" ")
}

// startPublicPeer starts a public proxy peer on ip (HTTPS 443, SIP 5060) in
// pub, joining join ("" for the first).
func startPublicPeer(t *testing.T, r *rnet, name, ip, join string) *peer {
	t.Helper()
	args := []string{"--data", t.TempDir(), "--overlay", rOverlay,
		"--roles", "proxy", "--public-addr", ip, "--proxy-private-targets",
		"--https", ip + ":443", "--sip", ip + ":5060", "--sips=", "--p2p-host", ip,
		"--fqdn", rOverlay, "--dns", rPubDNS + ":53", "--mdns=false", "--log-level", "debug"}
	if peerHasFlag("reachability") {
		// The test's public side has RFC 1918 addresses: say it is public.
		args = append(args, "--reachability", "public")
	}
	if join != "" {
		args = append(args, "--join", join)
	}
	return startPeerOpts(t, peerOpts{name: name, wrapper: r.wrap("pub"), noDefaults: true, args: args})
}

// startLANPeer starts the LAN peer of s: nothing about reachability, only the
// public peer's URL (none for an ad-hoc LAN).
func startLANPeer(t *testing.T, r *rnet, name, ns, ip, overlayName, join string, mdns bool) *peer {
	t.Helper()
	args := []string{"--data", t.TempDir(), "--overlay", overlayName,
		"--sip", ip + ":5060", "--sips=", "--https", ip + ":8443", "--p2p-host", ip,
		"--mdns=" + strconv.FormatBool(mdns), "--log-level", "debug"}
	if join != "" {
		args = append(args, "--join", join)
	}
	return startPeerOpts(t, peerOpts{name: name, wrapper: r.wrap(ns), noDefaults: true, args: args})
}

// waitPeers waits until p lists every one of others.
func waitPeers(t *testing.T, p *peer, wait time.Duration, others ...*peer) {
	t.Helper()
	for _, o := range others {
		eventually(t, wait, 500*time.Millisecond, p.Name+" lists "+o.Name+" as an overlay peer", func() (bool, string) {
			st, res := p.status(t)
			return res.Code == 0 && st.hasPeer(o.NodeID), res.String()
		})
	}
}

// statusRaw is `p2psip status --json` of p as raw JSON (for fields the
// overlay adds: relays, reservations).
func statusRaw(t *testing.T, p *peer) (map[string]any, string) {
	t.Helper()
	res := p.cli(t, "status", "--peer", p.URL, "--json")
	var m map[string]any
	if res.Code != 0 {
		return nil, res.String()
	}
	_ = json.Unmarshal([]byte(res.Stdout), &m)
	return m, res.Stdout
}

// circuitRelays returns the node ids of the relays p holds reservations on,
// as its status shows them: any "relays" list of node ids in the JSON, and
// the relays named in its circuit addresses (…/p2p/<relay>/p2p-circuit).
func circuitRelays(t *testing.T, p *peer) (map[string]bool, string) {
	relays, raw, _ := relayStatus(t, p)
	return relays, raw
}

// relayStatus is circuitRelays, and whether the status has a "relays" field
// at all (the overlay exposes its reservations).
func relayStatus(t *testing.T, p *peer) (map[string]bool, string, bool) {
	t.Helper()
	doc, raw := statusRaw(t, p)
	relays := map[string]bool{}
	for _, m := range regexp.MustCompile(`/p2p/([1-9A-HJ-NP-Za-km-z]+)/p2p-circuit`).FindAllStringSubmatch(raw, -1) {
		relays[m[1]] = true
	}
	exposed := false
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "relays" {
					exposed = true
				}
				walk(e, k)
			}
		case []any:
			for _, e := range x {
				if id, ok := e.(string); ok && key == "relays" && !strings.HasPrefix(id, "/") {
					relays[id] = true
				} else {
					walk(e, key)
				}
			}
		}
	}
	walk(doc, "")
	return relays, raw, exposed
}

// ---- phones -----------------------------------------------------------------

// phone is a sipp user agent at ip:port in namespace ns.
type phone struct {
	name string // alice1
	aor  string // alice1@overlay.example
	env  *pxEnv // only ns is used: runs sipp there
	ip   string
	port int
}

func newPhone(r *rnet, ns, user, domain, ip string, port int) *phone {
	return &phone{name: user, aor: user + "@" + domain, env: &pxEnv{ns: r.wrap(ns)}, ip: ip, port: port}
}

func (ph *phone) addr() string { return pxAddr(ph.ip, ph.port) }

// reachScenario is the path of a scenario in testdata/reach.
func reachScenario(name string) string {
	return filepath.Join(moduleRoot, "e2e", "testdata", "reach", name)
}

// register registers ph's AOR at registrar (host:port), with a password if
// the registrar challenges.
func (ph *phone) register(t *testing.T, registrar, password string) pxSippResult {
	t.Helper()
	user, domain, _ := strings.Cut(ph.aor, "@")
	o := pxSippOpts{name: "register " + ph.aor + " at " + registrar, scenario: "register.xml",
		ip: ph.ip, port: ph.port, remote: registrar, csv: user + ";" + domain}
	if password != "" {
		o.au, o.ap = user, password
	}
	return ph.env.runSipp(t, o)
}

var retryAfterRE = regexp.MustCompile(`(?mi)^\s*Retry-After:\s*(\d+)`)

// registerOverlay registers ph's overlay AOR at its peer (host:port). A
// phone honours a 5xx with Retry-After (the peer may still be settling into
// the overlay): up to three attempts, each logged.
func (ph *phone) registerOverlay(t *testing.T, peerAddr string) pxSippResult {
	t.Helper()
	var res pxSippResult
	for n := 1; n <= 3; n++ {
		res = ph.register(t, peerAddr, "")
		if res.Code == 0 {
			if n > 1 {
				t.Logf("%s registered at %s on attempt %d", ph.aor, peerAddr, n)
			}
			return res
		}
		// The 5xx is in the message trace, or (unexpected there) in the
		// error log.
		answer := pxFirstReceived(res.Msgs, "SIP/2.0 5")
		if i := strings.Index(res.Errs, "SIP/2.0 5"); answer == "" && i >= 0 {
			answer = res.Errs[i:]
		}
		m := retryAfterRE.FindStringSubmatch(answer)
		if m == nil || n == 3 {
			return res
		}
		line, _, _ := strings.Cut(answer, "\n")
		wait, _ := strconv.Atoi(m[1])
		wait = min(max(wait, 1), 10)
		ra := m[1]
		t.Logf("%s: REGISTER at %s answered %q with Retry-After %s: retrying in %d s", ph.aor, peerAddr, strings.TrimSpace(line), ra, wait)
		time.Sleep(time.Duration(wait) * time.Second)
	}
	return res
}

// callSpec is one call: caller dials callee's AOR through the caller's
// outbound hop; hangup says who sends the BYE.
type callSpec struct {
	what       string // "alice1 calls carol@atlanta.example"
	caller     *phone
	via        string  // the caller's next hop (host:port): its peer or its registrar
	calleeAOR  string  // user@domain dialled
	callee     *phone  // the UA that must ring
	calleeByes bool    // the callee hangs up (else the caller)
	hops       string  // the path, for failure messages
	peers      []*peer // the peers on the path, whose logs a failure shows
}

// callResult is a finished call with both sides' sipp results.
type callResult struct {
	uac, uas pxSippResult
	ok       bool
	logs     []string // "NAME: lines" the peers on the path logged during the call
}

// peerLogNoteRE picks the log lines that tell what a peer did with a call:
// anything above debug, and its dials.
var peerLogNoteRE = regexp.MustCompile(`level=(INFO|WARN|ERROR)|Dialing|unreachable|refused|timeout`)

// logSince returns the notable lines p logged after its stderr was before.
func logSince(p *peer, before string) string {
	now := p.stderr.String()
	added := now
	if strings.HasPrefix(now, before) {
		added = now[len(before):]
	}
	var lines []string
	for _, l := range strings.Split(added, "\n") {
		if peerLogNoteRE.MatchString(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 25 {
		lines = append([]string{fmt.Sprintf("… %d lines before", len(lines)-25)}, lines[len(lines)-25:]...)
	}
	return strings.Join(lines, "\n")
}

// call runs one call and reports which side failed and what each saw.
func (c callSpec) run(t *testing.T, timeout time.Duration) callResult {
	t.Helper()
	uasScen, uacScen := "uas_rr.xml", "uac_public.xml"
	if c.calleeByes {
		uasScen, uacScen = reachScenario("uas_bye.xml"), reachScenario("uac_wait_bye.xml")
	}
	if timeout == 0 {
		timeout = rCallTimeout
	}
	before := make([]string, len(c.peers))
	for i, p := range c.peers {
		before[i] = p.stderr.String()
	}
	uas := c.callee.env.startSipp(t, pxSippOpts{name: "UAS " + c.callee.name, scenario: uasScen,
		ip: c.callee.ip, port: c.callee.port, timeout: timeout + 5*time.Second})
	c.callee.env.waitListening(t, "udp", c.callee.addr(), uas.running)
	user, domain, _ := strings.Cut(c.calleeAOR, "@")
	uac := c.caller.env.runSipp(t, pxSippOpts{name: "UAC " + c.what, scenario: uacScen,
		ip: c.caller.ip, port: c.caller.port, remote: c.via, service: user, timeout: timeout,
		keys: map[string]string{"callee_domain": domain, "from_aor": c.caller.aor}})
	if uac.Code != 0 && uas.running() {
		// The callee never got (all of) the call: stop waiting for it.
		time.Sleep(500 * time.Millisecond)
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
	}
	res := callResult{uac: uac, uas: uas.wait()}
	res.ok = res.uac.Code == 0 && res.uas.Code == 0
	if !res.ok {
		for i, p := range c.peers {
			res.logs = append(res.logs, p.Name+" logged during the call:\n"+logSince(p, before[i]))
		}
	}
	return res
}

// explain says where a failed call stopped, from what each UA saw.
func (c callSpec) explain(r callResult) string {
	var b strings.Builder
	bye := "the caller hangs up"
	if c.calleeByes {
		bye = "the callee hangs up"
	}
	fmt.Fprintf(&b, "%s (%s; path %s) failed: ", c.what, bye, c.hops)
	finals := []string{}
	for _, m := range pxMessages(r.uac.Msgs) {
		if m.received && strings.HasPrefix(m.text, "SIP/2.0 ") {
			line, _, _ := strings.Cut(m.text, "\n")
			finals = append(finals, strings.TrimSpace(line))
		}
	}
	inv := pxFirstReceived(r.uas.Msgs, "INVITE ")
	switch {
	case inv == "" && len(finals) > 0 && strings.HasPrefix(finals[len(finals)-1], "SIP/2.0 1"):
		fmt.Fprintf(&b, "the INVITE never reached %s; the caller got %q and then nothing until sipp's timeout (a hop after the caller's first could not reach the next)", c.callee.name, finals)
	case inv == "" && len(finals) == 0:
		fmt.Fprintf(&b, "the INVITE never reached %s and the caller got no answer at all (not even 100 Trying from %s)", c.callee.name, c.via)
	case inv == "":
		fmt.Fprintf(&b, "the INVITE never reached %s; the caller got %q", c.callee.name, finals)
	case pxFirstReceived(r.uac.Msgs, "SIP/2.0 200") == "":
		fmt.Fprintf(&b, "%s got the INVITE but its answer never reached the caller (caller got %q)", c.callee.name, finals)
	case c.calleeByes && pxFirstReceived(r.uac.Msgs, "BYE ") == "":
		fmt.Fprintf(&b, "the call was answered but the callee's BYE never reached the caller")
	case !c.calleeByes && pxFirstReceived(r.uas.Msgs, "BYE ") == "":
		fmt.Fprintf(&b, "the call was answered but the caller's BYE never reached the callee")
	case pxFirstReceived(r.uas.Msgs, "ACK ") == "" && !c.calleeByes:
		fmt.Fprintf(&b, "the ACK never reached the callee")
	default:
		fmt.Fprintf(&b, "see the sipp logs (caller got %q)", finals)
	}
	for _, l := range r.logs {
		fmt.Fprintf(&b, "\n=== %s", l)
	}
	fmt.Fprintf(&b, "\n=== caller %s (%s):\n%s\n=== callee %s (%s):\n%s", c.caller.name, c.caller.addr(), r.uac, c.callee.name, c.callee.addr(), r.uas)
	return b.String()
}

// ---- the public side --------------------------------------------------------

// pubSide is dnsmasq and Kamailio in pub (as pxEnv, whose helpers they use).
type pubSide struct {
	*pxEnv
}

// startPubServices starts dnsmasq (overlay.example → P, atlanta.example →
// Kamailio) and Kamailio (registrar and proxy of atlanta.example) in pub.
func startPubServices(t *testing.T, r *rnet) *pubSide {
	t.Helper()
	kamailio := requireTool(t, "kamailio", "kamailio")
	requireTool(t, "kamcmd", "kamailio")
	dnsmasq := requireTool(t, "dnsmasq", "dnsmasq")
	e := &pxEnv{ns: r.wrap("pub"), nsName: r.name("pub"), run: t.TempDir()}
	e.dns = pxStartDaemon(t, "dnsmasq", "", append(append([]string(nil), e.ns...), dnsmasq,
		"--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--log-queries",
		"--listen-address="+rPubDNS, "--bind-interfaces", "--port=53",
		"--local=/example/",
		"--host-record="+rPublic+","+rPubKam,
		"--srv-host=_sip._udp."+rPublic+","+rPublic+",5060",
		"--naptr-record="+rPublic+",10,10,S,SIP+D2U,,_sip._udp."+rPublic,
		"--host-record="+rBiloxi+","+rPubKam,
		"--srv-host=_sip._udp."+rBiloxi+","+rBiloxi+",5060",
		"--naptr-record="+rBiloxi+",10,10,S,SIP+D2U,,_sip._udp."+rBiloxi,
		"--host-record="+rOverlay+","+rPubP,
		"--srv-host=_sip._udp."+rOverlay+","+rOverlay+",5060",
	)...)
	e.waitListening(t, "udp", pxAddr(rPubDNS, 53), e.dns.running)
	for host, want := range map[string]string{rPublic: rPubKam, rBiloxi: rPubKam, rOverlay: rPubP} {
		out, err := pxRun(t, e.ns, "getent", "hosts", host)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("topology: DNS in pub: getent hosts %s = %q (%v), want %s", host, out, err, want)
		}
	}
	tmpl, err := os.ReadFile(filepath.Join(moduleRoot, "e2e", "testdata", "proxy", "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfgText := strings.ReplaceAll(string(tmpl), "@RUNDIR@", e.run)
	cfgText = strings.ReplaceAll(cfgText, "127.0.0.2", rPubKam)
	cfg := filepath.Join(e.run, "kamailio.cfg")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(e.run, "kamailio.pid")
	e.kam = pxStartDaemon(t, "kamailio", pidFile, append(append([]string(nil), e.ns...), kamailio,
		"-f", cfg, "-DD", "-E", "-P", pidFile, "-Y", e.run, "-m", "256", "-M", "8")...)
	eventually(t, 10*time.Second, 100*time.Millisecond, "kamailio answers kamcmd", func() (bool, string) {
		if !e.kam.running() {
			t.Fatalf("topology: kamailio exited:\n%s", e.kam.out.String())
		}
		out, err := e.kamcmd(t, "core.version")
		return err == nil, out
	})
	e.waitListening(t, "udp", pxAddr(rPubKam, 5060), e.kam.running)
	return &pubSide{e}
}

// locationHas reports whether Kamailio's location has contact for user.
func (p *pubSide) locationHas(t *testing.T, contact string) (bool, string) {
	t.Helper()
	out, err := p.kamcmd(t, "ul.dump")
	return err == nil && strings.Contains(out, contact), out
}

// kamSummary lists the requests Kamailio got (start line and source), for
// failure messages.
func (p *pubSide) kamSummary() string {
	var lines []string
	re := regexp.MustCompile(`(?s)PXLOG request from (\S+)\n\s*(\S+ \S+)`)
	for _, m := range re.FindAllStringSubmatch(p.kamLog(), -1) {
		lines = append(lines, m[2]+"  (from "+m[1]+")")
	}
	if len(lines) == 0 {
		return "Kamailio received no request"
	}
	return "Kamailio received:\n  " + strings.Join(lines, "\n  ")
}
