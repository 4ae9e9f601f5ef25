//go:build e2e

package e2e

// Issue 11, "Chromium with iceTransportPolicy relay and only the overlay's
// relay": two LANs behind routers that pass only new TCP 80/443 (the
// topology of reach_harness_test.go), a LAN peer and a Chromium in each, and
// one public peer R with the relay and proxy roles, HTTPS on 443 under the
// name relay.example with a certificate for it (a CA the test makes), so R
// advertises turns:relay.example:443. Page A calls page B; their media can
// only go browser → TLS on 443 → R's TURN → R's TURN → TLS on 443 →
// browser.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const (
	rlName      = "relay.example" // R's DNS name, in the LANs' /etc/hosts
	rlMediaWait = 10 * time.Second
)

// rlForceRelayJS runs in every document before the page's scripts. The
// softphone has no setting for iceTransportPolicy (a user never wants it:
// a direct or STUN path is better when there is one), and its iceServers
// are whatever /api/config lists. To prove that the overlay's relay over
// TLS on 443 alone carries a call, the test wraps RTCPeerConnection: every
// connection gets iceTransportPolicy "relay" and only the turns: URLs of the
// page's ICE servers. It keeps each connection and the configuration the
// page asked for, for the stats below.
const rlForceRelayJS = `(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig || Orig.__e2eRelay) return;
  const e2e = window.__e2eRelay = {pcs: [], asked: [], given: []};
  const Wrapped = function (cfg, ...rest) {
    const asked = cfg || {};
    const servers = (asked.iceServers || []).map(s => {
      const urls = [].concat(s.urls || []).filter(u => String(u).startsWith('turns:'));
      return urls.length ? Object.assign({}, s, {urls}) : null;
    }).filter(Boolean);
    const given = Object.assign({}, asked, {iceTransportPolicy: 'relay', iceServers: servers});
    e2e.asked.push(JSON.parse(JSON.stringify(asked)));
    e2e.given.push(JSON.parse(JSON.stringify(given)));
    const pc = new Orig(given, ...rest);
    e2e.pcs.push(pc);
    return pc;
  };
  Wrapped.prototype = Orig.prototype;
  Object.setPrototypeOf(Wrapped, Orig);
  Wrapped.__e2eRelay = true;
  window.RTCPeerConnection = Wrapped;
})();`

// rlStats is what the page's newest RTCPeerConnection reports.
type rlStats struct {
	PCs        int      `json:"pcs"`
	Given      []any    `json:"given"`
	State      string   `json:"state"`
	Packets    float64  `json:"packets"`
	Level      float64  `json:"level"`
	Pair       string   `json:"pair"`
	LocalType  string   `json:"localType"`
	RelayProto string   `json:"relayProto"`
	LocalURL   string   `json:"localUrl"`
	RemoteType string   `json:"remoteType"`
	Candidates []string `json:"candidates"`
}

const rlStatsJS = `(async () => {
  const e2e = window.__e2eRelay;
  if (!e2e || e2e.pcs.length === 0) return {pcs: 0};
  const pc = e2e.pcs[e2e.pcs.length - 1];
  const out = {pcs: e2e.pcs.length, given: e2e.given.slice(-1), state: pc.connectionState, packets: 0, level: 0, candidates: []};
  const rep = await pc.getStats();
  const byId = {};
  rep.forEach(s => { byId[s.id] = s; });
  let pair = null;
  rep.forEach(s => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId];
    if (s.type === 'inbound-rtp' && s.kind === 'audio') { out.packets = s.packetsReceived || 0; out.level = s.audioLevel || 0; }
    if (s.type === 'local-candidate') out.candidates.push(s.candidateType + '/' + (s.relayProtocol || s.protocol) + ' ' + s.address + ':' + s.port + (s.url ? ' ' + s.url : ''));
  });
  if (!pair) rep.forEach(s => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (pair) {
    const l = byId[pair.localCandidateId] || {}, r = byId[pair.remoteCandidateId] || {};
    out.pair = pair.id + ' ' + pair.state;
    out.localType = l.candidateType || '';
    out.relayProto = l.relayProtocol || '';
    out.localUrl = l.url || '';
    out.remoteType = r.candidateType || '';
  }
  return out;
})()`

func (s rlStats) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestRelayBrowsersOver443: A (lan0, peer L0) calls B (lan1, peer L1) by
// B's overlay AOR; B answers. With iceTransportPolicy relay and only
// turns:relay.example:443, within 10 s audio flows both ways (inbound
// packets grow, audio level > 0), both selected pairs have a local relay
// candidate allocated over TLS, and no UDP, and no TCP other than to ports
// 80 and 443, leaves either LAN.
func TestRelayBrowsersOver443(t *testing.T) {
	start := time.Now()
	r := newRnet(t)
	chromium := requireTool(t, "chromium", "chromium")
	r.addPub()
	sites := []*site{r.addSite(0, httpsOnly), r.addSite(1, httpsOnly)}
	for _, s := range sites {
		hosts := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", rPubP, rlName)
		if err := os.WriteFile(filepath.Join("/etc/netns", r.name(s.lan), "hosts"), []byte(hosts), 0o644); err != nil {
			t.Fatal(err)
		}
		rlCountOut(t, r, s)
	}
	ca := newRlCA(t)
	certFile, keyFile, rSPKI := ca.leaf(t, rlName, rPubP)

	args := []string{"--data", t.TempDir(), "--overlay", rOverlay,
		"--roles", "relay,proxy", "--public-addr", rPubP, "--proxy-private-targets",
		"--https", rPubP + ":443", "--sip", rPubP + ":5060", "--sips=", "--p2p-host", rPubP,
		"--fqdn", rlName, "--tls-cert", certFile, "--tls-key", keyFile,
		"--turn", rPubP + ":3478", "--relay-ports", "49400-49600",
		// The relayed addresses are R's own 10.78.0.2 (RFC 1918 in the
		// test bed): the two browsers' allocations must reach each other.
		"--relay-private-peers",
		"--mdns=false", "--log-level", "debug"}
	if peerHasFlag("reachability") {
		args = append(args, "--reachability", "public")
	}
	R := startPeerOpts(t, peerOpts{name: "R", wrapper: r.wrap("pub"), noDefaults: true, args: args})
	// The LAN peers serve their pages with certificates of the test's CA
	// too: the browsers trust exactly the keys of L0, L1 and R (not every
	// certificate, so Chromium's own check of R's certificate on the
	// turns: connection is part of the test).
	var Ls []*peer
	spkis := []string{rSPKI}
	for i, s := range sites {
		cert, key, spki := ca.leaf(t, s.peerIP)
		spkis = append(spkis, spki)
		largs := []string{"--data", t.TempDir(), "--overlay", rOverlay,
			"--sip", s.peerIP + ":5060", "--sips=", "--https", s.peerIP + ":8443", "--p2p-host", s.peerIP,
			"--tls-cert", cert, "--tls-key", key,
			"--mdns=false", "--log-level", "debug", "--join", "https://" + rPubP + ":443/"}
		Ls = append(Ls, startPeerOpts(t, peerOpts{name: fmt.Sprintf("L%d", i), wrapper: r.wrap(s.lan), noDefaults: true, args: largs}))
	}
	for i, s := range sites {
		if out, err := r.in(s.lan, "curl", "-s", "--max-time", "5", "--resolve", rlName+":443:"+rPubP, "-o", "/dev/null", "-w", "%{http_code}",
			"--cacert", ca.file(), "https://"+rlName+"/.well-known/p2psip"); err != nil || out != "200" {
			t.Fatalf("topology: HTTPS from %s to https://%s/ with the test's CA: %q %v", s.lan, rlName, out, err)
		}
		waitPeers(t, Ls[i], rJoinWait, R)
	}
	t.Logf("topology up, L0 and L1 joined R: %s", time.Since(start).Round(time.Millisecond))

	// Each LAN peer must hand its page R's turns: URL, which it can only
	// have probed over TLS on 443 (UDP and TCP 3478 are dropped).
	for i, s := range sites {
		url := fmt.Sprintf("https://%s:8443/api/config", s.peerIP)
		eventually(t, 60*time.Second, time.Second, Ls[i].Name+" lists turns:"+rlName+":443 in /api/config", func() (bool, string) {
			out, _ := r.in(s.lan, "curl", "-sk", "--max-time", "5", url)
			return strings.Contains(out, `"turns:`+rlName+`:443`), out
		})
	}
	t.Logf("both LAN peers list R's turns: URL: %s", time.Since(start).Round(time.Millisecond))

	// The browsers, each inside its LAN's namespace.
	var tabs []*tab
	names := []string{"relaya", "relayb"}
	for i, s := range sites {
		wrapper := filepath.Join(t.TempDir(), "chromium-in-"+s.lan)
		script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", r.ip, r.name(s.lan), chromium)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, s.lan, chromedp.ExecPath(wrapper),
			chromedp.Flag("ignore-certificate-errors", false),
			chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spkis, ",")))
		tb := b.open(t, strings.ToUpper(names[i][5:]), fmt.Sprintf("https://%s:8443/", s.peerIP))
		ctx, cancel := context.WithTimeout(tb.ctx, browserAction)
		_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: rlForceRelayJS})
		cancel()
		if err != nil {
			t.Fatalf("%s: installing the RTCPeerConnection wrapper: %v", tb.name, err)
		}
		tb.navigate(t, fmt.Sprintf("https://%s:8443/", s.peerIP))
		tabs = append(tabs, tb)
	}
	a, b := tabs[0], tabs[1]
	for i, tb := range tabs {
		tb.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
			return st.Name != "" && !slices.Contains(st.Missing, "#join")
		})
		tb.typeInto(t, "#name", names[i])
		tb.click(t, "#join")
	}
	for i, tb := range tabs {
		st := tb.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" || st.Reg == "failed" })
		if st.Reg != "registered" {
			t.Fatalf("%s: the page failed to register %s: %s", tb.name, names[i], st)
		}
	}
	eventually(t, 20*time.Second, 500*time.Millisecond, "L0 finds B's binding in the overlay", func() (bool, string) {
		rec, res, found := lookupAOR(t, Ls[0], "sip:"+names[1]+"@"+rOverlay)
		return found && len(rec.Bindings) > 0, res.String()
	})
	t.Logf("both pages registered: %s", time.Since(start).Round(time.Millisecond))

	base := make([]map[string]int, len(sites))
	for i, s := range sites {
		base[i] = rlCounters(t, r, s)
	}
	callStart := time.Now()
	a.typeInto(t, "#dial", names[1]+"@"+rOverlay)
	a.click(t, "#call")
	b.waitCall(t, "incoming")
	b.click(t, "#answer")
	answered := time.Now()
	a.waitCall(t, "connected")
	b.waitCall(t, "connected")
	t.Logf("B rang and answered %s after A's click; both connected %s later", answered.Sub(callStart).Round(time.Millisecond), time.Since(answered).Round(time.Millisecond))

	// Audio both ways within rlMediaWait of the answer: packets grow past
	// what the first read saw, and the fake device's beep has a level.
	first := map[*tab]rlStats{}
	done := map[*tab]rlStats{}
	deadline := answered.Add(rlMediaWait)
	for len(done) < len(tabs) {
		for _, tb := range tabs {
			if _, ok := done[tb]; ok {
				continue
			}
			st, err := evalErr[rlStats](tb, rlStatsJS)
			if err != nil {
				continue
			}
			f, seen := first[tb]
			if !seen && st.Packets > 0 {
				first[tb] = st
				continue
			}
			if seen && st.Packets > f.Packets && st.Level > 0 && st.LocalType != "" {
				done[tb] = st
				t.Logf("%s: audio flows %s after the answer: %s", tb.name, time.Since(answered).Round(time.Millisecond), st)
			}
		}
		if len(done) < len(tabs) && time.Now().After(deadline) {
			for _, tb := range tabs {
				st, err := evalErr[rlStats](tb, rlStatsJS)
				hint := ""
				if st.PCs > 0 && len(st.Candidates) == 0 {
					hint = " (no relay candidate at all: Chromium refused R's certificate on turns:, or R refused the allocation)"
				}
				t.Errorf("%s: no audio both ways within %s of the answer%s: last stats %s (err %v); page %s", tb.name, rlMediaWait, hint, st, err, tb.state(t))
			}
			t.FailNow()
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tb := range tabs {
		st := done[tb]
		if st.LocalType != "relay" || st.RelayProto != "tls" {
			t.Errorf("%s: selected pair's local candidate is %q over %q (url %q), want relay over tls: %s", tb.name, st.LocalType, st.RelayProto, st.LocalURL, st)
		}
		if !strings.Contains(jsonString(st.Given), "turns:"+rlName) {
			t.Errorf("%s: the RTCPeerConnection got no turns:%s server: %s", tb.name, rlName, jsonString(st.Given))
		}
	}

	hangUpAll(a, b)
	for i, s := range sites {
		now := rlCounters(t, r, s)
		t.Logf("%s: router counters during the call (packets leaving the LAN): %v; before: %v", s.router, now, base[i])
		if now["udpout"] > 0 {
			t.Errorf("%s: %d UDP packets left the LAN through %s; only TCP 80/443 may", s.lan, now["udpout"], s.router)
		}
		if now["tcpother"] > 0 {
			t.Errorf("%s: %d TCP packets to ports other than 80/443 left the LAN through %s", s.lan, now["tcpother"], s.router)
		}
		if now["tcp443"] <= base[i]["tcp443"] {
			t.Errorf("%s: no TCP 443 packets left the LAN during the call: the media went another way?", s.lan)
		}
	}
	t.Logf("TestRelayBrowsersOver443 took %s", time.Since(start).Round(time.Millisecond))
}

// rlCountOut adds counters to s's router of what leaves the LAN: at
// postrouting (after the forward filter's drops), UDP, TCP to 443, TCP to
// other ports; and at forward, the UDP the LAN tried to send (dropped).
func rlCountOut(t *testing.T, r *rnet, s *site) {
	t.Helper()
	rules := `
table inet relaycount {
  counter udpout { }
  counter tcp443 { }
  counter tcpother { }
  counter udptried { }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "r-lan" oifname "r-pub" meta l4proto udp counter name "udptried"
  }
  chain postrouting {
    type filter hook postrouting priority 0; policy accept;
    iifname "r-lan" oifname "r-pub" meta l4proto udp counter name "udpout"
    iifname "r-lan" oifname "r-pub" tcp dport 443 counter name "tcp443"
    iifname "r-lan" oifname "r-pub" meta l4proto tcp tcp dport != { 80, 443 } counter name "tcpother"
  }
}
`
	cmd := exec.Command(r.wrap(s.router)[0], append(r.wrap(s.router)[1:], r.nft, "-f", "-")...)
	cmd.Stdin = strings.NewReader(rules)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("topology: counters in %s: %v\n%s", r.name(s.router), err, b)
	}
}

// rlCounters reads the relaycount counters of s's router.
func rlCounters(t *testing.T, r *rnet, s *site) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, name := range []string{"udpout", "tcp443", "tcpother", "udptried"} {
		o, err := r.in(s.router, r.nft, "list", "counter", "inet", "relaycount", name)
		m := nftPacketsRE.FindStringSubmatch(o)
		if err != nil || m == nil {
			t.Fatalf("nft counter %s in %s: %v\n%s", name, s.router, err, o)
		}
		out[name], _ = strconv.Atoi(m[1])
	}
	return out
}

// rlCA is the test's certificate authority.
type rlCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRlCA(t *testing.T) *rlCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "p2psip e2e relay CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &rlCA{dir: t.TempDir(), cert: cert, key: key}
	if err := os.WriteFile(ca.file(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// file is the CA certificate's PEM file.
func (ca *rlCA) file() string { return filepath.Join(ca.dir, "ca.pem") }

// leaf makes a server certificate for name (a DNS name, or an IP address)
// signed by ca, writes the chain and its key, and returns their paths and
// the base64 SHA-256 of its public key (what Chromium's
// --ignore-certificate-errors-spki-list takes).
func (ca *rlCA) leaf(t *testing.T, name string, ips ...string) (certFile, keyFile, spki string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else {
		tmpl.DNSNames = []string{name}
	}
	for _, s := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkDER)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, base64.StdEncoding.EncodeToString(sum[:])
}
