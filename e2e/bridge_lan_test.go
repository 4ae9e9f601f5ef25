//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The draft's §3.4 in full, with audio (issue: "The draft's §3.4 in
// full"): Alice's browser and her peer L sit on a city Wi-Fi whose router
// NATs and passes only TCP 80/443 outward; the public side has the proxy
// and relay peer P (HTTPS and TURN over TLS on 443), dnsmasq, Kamailio for
// atlanta.example and biloxi.example, and bob, an ordinary SIP phone
// (baresip, plain RTP/AVP) of biloxi.example. The page calls
// bob@biloxi.example, and bob calls alice@atlanta.example (the page's
// public account, registered through P): L bridges, its RTP
// leg is an allocation on P's relay over TLS on 443 (UDP and TCP 3478 are
// dropped), audio flows both ways, both directions.

const (
	brLANName = "alice3"     // the page's overlay name
	brPhoneIP = "10.81.0.30" // bob, on a host of his own on the public side
)

// addPhoneHost gives the public side a separate host for phones: a
// namespace linked to pub, so a phone is not one of the relay host's own
// addresses (which the relay refuses to relay to, against SSRF).
func addPhoneHost(r *rnet) {
	r.t.Helper()
	r.addNS("phones", rPubDNS)
	r.link("phones", "ph0", brPhoneIP+"/24", "pub", "p-ph", "10.81.0.1/24")
	r.ipn("phones", "route", "add", "default", "via", "10.81.0.1")
}

func TestBridgeHTTPSOnlyLAN(t *testing.T) {
	start := time.Now()
	r := newRnet(t)
	chromium := requireTool(t, "chromium", "chromium")
	requireTool(t, "baresip", "baresip-core")
	r.addPub()
	s := r.addSite(0, httpsOnly)
	addPhoneHost(r)
	pub := startPubServices(t, r)
	args := []string{"--data", t.TempDir(), "--overlay", rOverlay,
		"--roles", "proxy,relay", "--public-addr", rPubP, "--proxy-private-targets",
		"--https", rPubP + ":443", "--sip", rPubP + ":5060", "--sips=", "--p2p-host", rPubP,
		"--fqdn", rOverlay, "--dns", rPubDNS + ":53",
		"--turn", rPubP + ":3478", "--relay-ports", "49400-49600",
		// bob's 10.81.0.30 is RFC 1918 in the test bed.
		"--relay-private-peers", "--reachability", "public",
		"--mdns=false", "--log-level", "debug"}
	P := startPeerOpts(t, peerOpts{name: "P", wrapper: r.wrap("pub"), noDefaults: true, args: args})
	L := startLANPeer(t, r, "L", s.lan, s.peerIP, rOverlay, "https://"+rPubP+":443/", false)
	base := r.checkSite(s, rPubP)
	waitPeers(t, L, rJoinWait, P)
	// L must have found P's relay working, which behind this router it can
	// only have probed over TLS on 443 (P's self-signed turns: URL on its
	// address: a page cannot use it, L's bridge can).
	eventually(t, 60*time.Second, time.Second, "L's status lists P's relay as working", func() (bool, string) {
		out, _ := r.in(s.lan, "curl", "-sk", "--max-time", "5", fmt.Sprintf("https://%s:8443/api/overlay", s.peerIP))
		flat := strings.Join(strings.Fields(out), "")
		return strings.Contains(flat, `"working":[{"node":"`+P.NodeID), out
	})
	t.Logf("topology up, L joined P and found its relay: %s", time.Since(start).Round(time.Millisecond))

	bob := startBaresip(t, baresipOpts{name: "bob", wrap: r.wrap("phones"), ip: brPhoneIP,
		account: baresipAccount("bob", rBiloxi, "bobpw", pxAddr(rPubKam, 5060), 600),
		codecs:  []string{"PCMU"}, autoAnswer: true, rtpPorts: [2]int{40000, 40099}})

	wrapper := filepath.Join(t.TempDir(), "chromium-in-lan")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", r.ip, r.name(s.lan), chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, "lan", chromedp.ExecPath(wrapper))
	a := b.open(t, "A", fmt.Sprintf("https://%s:8443/", s.peerIP))
	a.waitFor(t, "the page proposes a name in #name and shows #join", func(st phoneState) bool {
		return st.Name != "" && !slices.Contains(st.Missing, "#join")
	})
	a.typeInto(t, "#name", brLANName)
	a.click(t, "#join")
	if st := a.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" || st.Reg == "failed" }); st.Reg != "registered" {
		t.Fatalf("the page on the LAN failed to register: %s", st)
	}

	t.Run("browser-calls-phone", func(t *testing.T) {
		t.Cleanup(func() { hangUpAll(a) })
		callStart := time.Now()
		a.typeInto(t, "#dial", "bob@"+rBiloxi)
		a.click(t, "#call")
		bob.WaitEstablished(t)
		a.waitCall(t, "connected")
		t.Logf("connected %s after the click", time.Since(callStart).Round(time.Millisecond))
		brAudioBothWays(t, a, bob)
		for _, d := range []string{"1", "2", "3", "#"} {
			a.click(t, fmt.Sprintf(`[data-digit=%q]`, d))
			time.Sleep(300 * time.Millisecond)
		}
		bob.WaitDTMF(t, "123#")
		a.click(t, "#hangup")
		bob.WaitClosed(t)
		a.waitCall(t, "ended", "idle")
	})

	t.Run("phone-calls-browser", func(t *testing.T) {
		t.Cleanup(func() { hangUpAll(a) })
		a.waitCall(t, "idle", "ended")
		a.click(t, "#public > summary")
		a.waitPub(t, "the public account form is enabled", func(st pubState) bool { return !st.Disabled })
		a.typeInto(t, "#pub-uri", "alice@"+rPublic)
		a.typeInto(t, "#pub-password", "alicepw")
		a.click(t, "#pub-register")
		a.waitPub(t, "#pub-state registered", func(st pubState) bool { return st.State == "registered" })

		bob.Dial(t, "sip:alice@"+rPublic)
		a.waitCall(t, "incoming")
		a.click(t, "#answer")
		a.waitCall(t, "connected")
		bob.WaitEstablished(t)
		brAudioBothWays(t, a, bob)
		bob.Hangup(t)
		bob.WaitClosed(t)
		a.waitCall(t, "ended", "idle")
	})

	t.Run("rtp-leg-on-the-relay-over-tls", func(t *testing.T) {
		code, body := getIn(t, r, s.lan, fmt.Sprintf("https://%s:8443/metrics", s.peerIP))
		legs := metricLines(body, "p2psip_bridge_rtp_legs_total")
		t.Logf("L's RTP legs (%s): %s", code, strings.Join(legs, "; "))
		if !slices.ContainsFunc(legs, func(l string) bool { return strings.Contains(l, `place="relay_tls"`) }) {
			t.Errorf("L placed no RTP leg on a relay over TLS: %q", legs)
		}
		if n := r.counter(s, "sip5060") - base; n > 0 {
			t.Errorf("%d packets went from the LAN to port 5060", n)
		}
	})
	if t.Failed() {
		if _, body := getIn(t, r, s.lan, fmt.Sprintf("https://%s:8443/metrics", s.peerIP)); body != "" {
			t.Logf("L's bridge metrics:\n%s", strings.Join(append(metricLines(body, "p2psip_bridge"), metricLines(body, "p2psip_sip_bridge")...), "\n"))
		}
		if out, err := r.in("pub", "curl", "-sk", "--max-time", "5", "https://"+rPubP+":443/metrics"); err == nil {
			t.Logf("P's relay metrics:\n%s", strings.Join(metricLines(out, "p2psip_relay"), "\n"))
		}
		t.Logf("bob's log tail:\n%s", pxTail(bob.Log(), 6000))
		t.Logf("L's log (tail):\n%s", pxTail(L.stderr.String(), 20000))
		t.Logf("Kamailio saw: %s", pub.kamSummary())
	}
	t.Logf("TestBridgeHTTPSOnlyLAN took %s", time.Since(start).Round(time.Millisecond))
}

// getIn fetches url with curl inside the namespace ns.
func getIn(t *testing.T, r *rnet, ns, url string) (string, string) {
	t.Helper()
	out, err := r.in(ns, "curl", "-sk", "--max-time", "5", "-w", "\n%{http_code}", url)
	if err != nil {
		t.Fatalf("curl %s in %s: %v\n%s", url, ns, err, out)
	}
	i := strings.LastIndex(out, "\n")
	return out[i+1:], out[:i]
}

// metricLines are the sample lines of a metric family.
func metricLines(body, name string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return out
}
