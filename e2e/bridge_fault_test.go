//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The media bridge when things go wrong, on the network of bridge_test.go
// (Chromium on the home peer H, the proxy peer P, Kamailio, phones; all in
// the browser suite's namespace). H runs with --media-timeout bfMediaTimeout.
//
//   - phone-killed: the phone dies mid-call (SIGKILL: no BYE); H ends the
//     call itself when its RTP stops, and the page hears of it within the
//     media timeout plus a little;
//   - pcma-only: a phone that has only A-law, both directions;
//   - no-common-codec: a G.729-only caller gets 488 with words naming the
//     codec problem and the page never rings; a phone that answers the
//     page with G.729 only is hung up on, not left hanging;
//   - ssrc-change-and-reinvite: a Go test phone (testphone_test.go) changes
//     SSRC and jumps its sequence number mid-call (the page must hear on
//     without a stall), then moves its RTP to another port with a
//     re-INVITE (the bridge must follow it and answer with its own leg);
//   - phone-at-overlay-peer: a phone registered at the proxy peer P as
//     carol2@overlay.example calls the page's overlay AOR: bridged at H;
//   - late-offer: a phone calls the page with an INVITE without SDP (sipp,
//     echoing the page's audio): the page's offer in its 200 reaches the
//     phone as plain RTP/AVP, the phone's answer in the ACK reaches the
//     page as WebRTC, and the page hears its own audio back.
//
// Addresses (besides proxy_test.go's and bridge_test.go's carol):
//
//	127.0.0.33  bob, baresip, PCMA only (bob@atlanta.example at Kamailio)
//	127.0.0.34  dave, the Go test phone (registers as bob@atlanta.example)
//	127.0.0.35  sipp: G.729-only caller
//	127.0.0.36  carol2, baresip, registered at P as carol2@overlay.example
//	127.0.0.37  gus, sipp answering G.729 only (gus@overlay.example at H)
//	127.0.0.38  sipp: a late-offer caller that echoes RTP

const (
	bfMediaTimeout = 5 * time.Second
	bfBobIP        = "127.0.0.33"
	bfDaveIP       = "127.0.0.34"
	bfG729IP       = "127.0.0.35"
	bfCarol2IP     = "127.0.0.36"
	bfGusIP        = "127.0.0.37"
	bfLateIP       = "127.0.0.38"
	// bfEndSlack is how long after the media timeout the page may learn
	// that the call is over: the bridge checks once a second, then a BYE
	// crosses one WebSocket.
	bfEndSlack = 3 * time.Second
	// bfStall is the longest the page may go without a new packet while
	// the phone changes its stream.
	bfStall = time.Second
)

func TestBridgeFaults(t *testing.T) {
	if os.Getenv(browserInNetnsEnv) != "1" {
		pxRequireTools(t)
		requireTool(t, "baresip", "baresip-core")
		runBrowserSuiteInNetns(t, "TestBridgeFaults", func(ns string) { pxWriteResolvConf(t, ns) })
		return
	}
	pxRequireTools(t)
	e := pxSetupIn(t, nil, pxOpts{homeArgs: []string{"--media-timeout", bfMediaTimeout.String()}})

	waitPublicProxy(t, e.H)
	b := newBrowser(t, "A")
	a := b.open(t, "A", e.H.URL+"/")
	bfTrackPeerConnections(t, a, e.H.URL+"/")
	a.waitFor(t, "the page proposes a name", func(st phoneState) bool { return st.Name != "" })
	a.typeInto(t, "#name", bpName)
	a.click(t, "#join")
	a.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" })
	// The public account alice@atlanta.example: what public callers dial.
	a.click(t, "#public > summary")
	a.waitPub(t, "the public account form is enabled", func(st pubState) bool { return !st.Disabled })
	bpSubmit(t, a, bpPassword)
	a.waitPub(t, "#pub-state registered", func(st pubState) bool { return st.State == "registered" })

	steps := []struct {
		name string
		run  func(*testing.T, *pxEnv, *tab)
	}{
		{"phone-killed", bfPhoneKilled},
		{"pcma-only", bfPCMAOnly},
		{"no-common-codec", bfNoCommonCodec},
		{"ssrc-change-and-reinvite", bfSSRCAndReinvite},
		{"phone-at-overlay-peer", bfPhoneAtOverlayPeer},
		{"late-offer", bfLateOffer},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			start := time.Now()
			t.Cleanup(func() {
				hangUpAll(a)
				a.waitForWithin(t, browserWait, "the page back to idle after the step", func(st phoneState) bool { return st.Call == "idle" })
				if t.Failed() {
					brLogMetrics(t, e.H)
				}
				t.Logf("step %s took %s", s.name, time.Since(start).Round(time.Millisecond))
			})
			s.run(t, e, a)
		})
	}
	brLogMetrics(t, e.H)
	if t.Failed() {
		h, p := e.H.stderr.String(), e.P.stderr.String()
		t.Logf("H's log (tail; all of what the test kept in %s):\n%s", keepFailureLog(t, "H", h), pxTail(h, 30000))
		t.Logf("P's log (tail; all of what the test kept in %s):\n%s", keepFailureLog(t, "P", p), pxTail(p, 10000))
	}
}

// ---- steps -----------------------------------------------------------------

// bfPhoneKilled: the page calls carol (auto-answer), audio flows both ways,
// carol is SIGKILLed. H must notice that her RTP stopped and end the call
// with a BYE to the page within the media timeout (plus the slack of a
// once-a-second check and one WebSocket hop), not earlier.
func bfPhoneKilled(t *testing.T, e *pxEnv, a *tab) {
	carol := startBaresip(t, baresipOpts{name: "carol", ip: brCarolIP,
		account: baresipAccount("carol", pxPublic, "carolpw", pxAddr(pxKamIP, 5060), 600),
		codecs:  []string{"PCMU"}, autoAnswer: true, rtpPorts: [2]int{40000, 40099}})
	byes0 := bfMetric(t, e.H, `p2psip_sip_bridge_byes_total{reason="media_timeout"}`)
	ends0 := bfMetric(t, e.H, `p2psip_bridge_calls_total{end="media_timeout"}`)

	a.typeInto(t, "#dial", brCarolURI)
	a.click(t, "#call")
	carol.WaitEstablished(t)
	a.waitCall(t, "connected")
	brAudioBothWays(t, a, carol)

	carol.Kill()
	killed := time.Now()
	t.Logf("carol SIGKILLed mid-call; H's media timeout is %s", bfMediaTimeout)
	st := a.waitForWithin(t, bfMediaTimeout+20*time.Second, "#call-state ended or idle after carol died",
		func(st phoneState) bool { return st.Call == "ended" || st.Call == "idle" })
	took := time.Since(killed)
	t.Logf("the page's call ended %s after carol died (media timeout %s): #call-state %q, transitions %v",
		took.Round(time.Millisecond), bfMediaTimeout, st.Call, st.Transitions)
	if took > bfMediaTimeout+bfEndSlack {
		t.Errorf("the page's call ended %s after the phone died: want within the media timeout %s + %s",
			took.Round(time.Millisecond), bfMediaTimeout, bfEndSlack)
	}
	if took < bfMediaTimeout-500*time.Millisecond {
		t.Errorf("the page's call ended %s after the phone died, before the media timeout %s: something else ended it",
			took.Round(time.Millisecond), bfMediaTimeout)
	}
	eventually(t, 5*time.Second, 200*time.Millisecond, "H counts a media_timeout BYE", func() (bool, string) {
		byes := bfMetric(t, e.H, `p2psip_sip_bridge_byes_total{reason="media_timeout"}`)
		ends := bfMetric(t, e.H, `p2psip_bridge_calls_total{end="media_timeout"}`)
		return byes == byes0+1 && ends == ends0+1, fmt.Sprintf("p2psip_sip_bridge_byes_total{reason=media_timeout} %v → %v, p2psip_bridge_calls_total{end=media_timeout} %v → %v", byes0, byes, ends0, ends)
	})
	if log := e.H.stderr.String(); !strings.Contains(log, "ending a bridged call") || !strings.Contains(log, "media_timeout") {
		t.Errorf("H did not log that it ended the bridged call for media_timeout:\n%s", pxTail(log, 4000))
	}
	bfWaitNoBridgedCalls(t, e.H)
}

// bfPCMAOnly: bob's phone has only A-law (the browser's first choice is
// μ-law). The page calls him, then he calls the page's public account;
// audio both ways each time.
func bfPCMAOnly(t *testing.T, e *pxEnv, a *tab) {
	bob := startBaresip(t, baresipOpts{name: "bob", ip: bfBobIP,
		account: baresipAccount("bob", pxPublic, "bobpw", pxAddr(pxKamIP, 5060), 600),
		codecs:  []string{"PCMA"}, autoAnswer: true, rtpPorts: [2]int{40100, 40199}})

	start := time.Now()
	a.typeInto(t, "#dial", "bob@"+pxPublic)
	a.click(t, "#call")
	bob.WaitEstablished(t)
	a.waitCall(t, "connected")
	t.Logf("page → bob: connected after %s", time.Since(start).Round(time.Millisecond))
	brAudioBothWays(t, a, bob)
	t.Logf("page → bob: the page's codec %q", bfPageCodec(t, a))
	a.click(t, "#hangup")
	bob.WaitClosed(t)
	a.waitCall(t, "ended", "idle")

	a.waitCall(t, "idle")
	start = time.Now()
	bob.Dial(t, "sip:"+bpPublic)
	st := a.waitCall(t, "incoming")
	t.Logf("bob → page: ringing after %s, #peer-name %q", time.Since(start).Round(time.Millisecond), st.PeerName)
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	bob.WaitEstablished(t)
	brAudioBothWays(t, a, bob)
	codec := bfPageCodec(t, a)
	t.Logf("bob → page: the page's codec %q", codec)
	if !strings.EqualFold(codec, "PCMA") {
		// The bridge offers the browser the laws the phone offered.
		t.Errorf("bob offered PCMA only, but the page's call uses %q: want PCMA (the bridge's offer to the browser names the phone's laws)", codec)
	}
	bob.Hangup(t)
	bob.WaitClosed(t)
	a.waitCall(t, "ended", "idle")
}

// bfNoCommonCodec: a G.729-only caller gets 488 whose reason phrase and
// Warning name the codec problem, through Kamailio (alice@atlanta.example)
// and straight at P (alice@overlay.example); the page never rings. Then a
// phone that answers the page's call with G.729 only: the dialog exists,
// so it must be ended (a BYE from H, which cannot bridge the answer, or
// from the page, which cannot use it: whichever is first), and neither
// the page nor the phone may be left hanging.
func bfNoCommonCodec(t *testing.T, e *pxEnv, a *tab) {
	noCodec0 := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="no_common_codec"}`)
	before := a.state(t)
	for i, c := range []struct{ what, remote, domain string }{
		{"through Kamailio to alice@" + pxPublic, pxAddr(pxKamIP, 5060), pxPublic},
		{"straight at P to alice@" + pxOverlay, pxAddr(pxProxyIP, pxSIPPort), pxOverlay},
	} {
		start := time.Now()
		r := e.runSipp(t, pxSippOpts{name: "G.729-only caller " + c.what, scenario: bfScenario("uac_g729.xml"),
			ip: bfG729IP, port: 5094 + i, remote: c.remote, service: "alice", keys: map[string]string{"callee_domain": c.domain}})
		took := time.Since(start)
		if r.Code != 0 {
			t.Errorf("G.729-only caller %s: want 488 (and no ringing):\n%s", c.what, r)
			continue
		}
		res := pxFirstReceived(r.Msgs, "SIP/2.0 488")
		status := strings.TrimSpace(strings.SplitN(res, "\n", 2)[0])
		warn := pxHeaders(res, "Warning", "")
		t.Logf("G.729-only caller %s: %q, Warning %q (%s)", c.what, status, warn, took.Round(time.Millisecond))
		if !strings.Contains(strings.ToLower(status), "codec") {
			t.Errorf("the 488 %s does not say it is about the codec: %q", c.what, status)
		}
		if len(warn) == 0 || !strings.HasPrefix(warn[0], "305 ") || !strings.Contains(strings.ToLower(warn[0]), "codec") {
			t.Errorf("the 488 %s has no Warning 305 (Incompatible media format, RFC 3261 §20.43) naming the codec: %q\n%s", c.what, warn, res)
		}
	}
	time.Sleep(time.Second) // a late ring would show by now
	st := a.state(t)
	if rang := bfTransitionsSince(before, st, "call-state=incoming"); rang {
		t.Errorf("the page rang for a G.729-only caller: transitions %v", st.Transitions)
	}
	if n := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="no_common_codec"}`); n != noCodec0+2 {
		t.Errorf("H's p2psip_sip_bridge_setups_total{result=\"no_common_codec\"} went %v → %v, want +2", noCodec0, n)
	}

	// The page calls a phone that answers G.729 only.
	other0 := bfMetric(t, e.H, `p2psip_sip_bridge_byes_total{reason="other"}`)
	e.registerOverlay(t, "gus", bfGusIP, 5096)
	uas := e.startSipp(t, pxSippOpts{name: "gus answers G.729 only", scenario: bfScenario("uas_g729.xml"),
		ip: bfGusIP, port: 5096, timeout: 40 * time.Second})
	e.waitListening(t, "udp", pxAddr(bfGusIP, 5096), uas.running)
	a.waitCall(t, "idle")
	start := time.Now()
	a.typeInto(t, "#dial", "gus")
	a.click(t, "#call")
	end := a.waitForWithin(t, 15*time.Second, "the page's call to gus (G.729 answer) ends", func(st phoneState) bool {
		return st.Call == "ended" || st.Call == "idle"
	})
	took := time.Since(start)
	t.Logf("page → gus (answers G.729 only): the page's call ended after %s; error %q (visible %v); transitions %v",
		took.Round(time.Millisecond), end.ErrText, end.ErrVisible, end.Transitions)
	r := uas.wait()
	if r.Code != 0 {
		t.Errorf("gus (G.729 answer) was not hung up on cleanly (no BYE within 20 s of its 200?):\n%s", r)
	}
	byes := pxAllReceived(r.Msgs, "BYE ")
	for _, bye := range byes {
		t.Logf("gus got a BYE, CSeq %q, Reason %q", pxHeaders(bye, "CSeq", ""), pxHeaders(bye, "Reason", ""))
	}
	if len(byes) == 0 {
		t.Errorf("gus got no BYE after answering with a codec the bridge cannot relay")
	}
	// RFC 3261 §13.2.2.4: every 2xx is ACKed end to end, even one whose
	// answer is useless; a BYE that overtakes the 2xx at the page leaves
	// it unACKed (the phone retransmits it for 32 s).
	if acks := pxAllReceived(r.Msgs, "ACK "); len(acks) == 0 {
		t.Errorf("gus's 200 was never ACKed: the call was ended without the ACK every 2xx needs (RFC 3261 §13.2.2.4)")
	}
	// Who hangs up first: the page (it cannot use the answer it got) or
	// H, a moment after the 2xx (it cannot bridge the answer).
	hByes := bfMetric(t, e.H, `p2psip_sip_bridge_byes_total{reason="other"}`) - other0
	t.Logf("H sent BYEs of its own for this call: %v (p2psip_sip_bridge_byes_total{reason=\"other\"})", hByes)
	bfWaitNoBridgedCalls(t, e.H)
	// The page goes back to idle: nothing was left hanging.
	a.waitCall(t, "idle")
}

// bfSSRCAndReinvite: the page calls bob@atlanta.example, answered by the
// Go test phone dave (registered as bob). Mid-call dave switches to a new
// SSRC, then jumps its sequence number by 40000: the page must keep
// receiving without a stall, as one stream. Then dave moves its RTP to a
// new port with a re-INVITE: the bridge answers with its own unchanged
// leg and sends to the new port. dave hangs up.
func bfSSRCAndReinvite(t *testing.T, e *pxEnv, a *tab) {
	dave := startTestPhone(t, testPhoneOpts{name: "dave", ip: bfDaveIP,
		user: "bob", domain: pxPublic, password: "bobpw", registrar: pxAddr(pxKamIP, 5060)})
	splices0 := bfMetric(t, e.H, `p2psip_bridge_stream_splices_total{leg="plain"}`)

	start := time.Now()
	a.typeInto(t, "#dial", "bob@"+pxPublic)
	a.click(t, "#call")
	c := dave.WaitCall(t, browserWait)
	t.Logf("dave got the bridge's offer after %s:\n%s", time.Since(start).Round(time.Millisecond), c.Offer.Raw)
	if !slices.Contains(c.Offer.PTs, 0) || strings.Contains(c.Offer.Raw, "a=fingerprint") {
		t.Errorf("the offer dave got is not plain RTP/AVP with PCMU: %v\n%s", c.Offer.PTs, c.Offer.Raw)
	}
	a.waitCall(t, "connected")
	bfAudioBothWaysGo(t, a, c, "at the start")

	// One new source, then a sequence jump: each a splice at the bridge.
	bfStartSampler(t, a)
	sampleFrom := time.Now()
	time.Sleep(2 * time.Second)
	oldSSRC, newSSRC := c.ChangeSSRC()
	t.Logf("dave: SSRC %08x → %08x (new random sequence number and timestamp)", oldSSRC, newSSRC)
	time.Sleep(3 * time.Second)
	s0, s1 := c.JumpSeq(40000)
	t.Logf("dave: sequence number %d → %d (+40000, timestamp +40000×160)", s0, s1)
	time.Sleep(3 * time.Second)
	sampleTo := time.Now()
	samples := bfStopSampler(t, a)
	sentN, sentGap := c.SentWindow(sampleFrom, sampleTo)
	bfCheckContinuous(t, samples, "while dave changed SSRC and jumped its sequence number", sentN, sentGap)
	if n := bfMetric(t, e.H, `p2psip_bridge_stream_splices_total{leg="plain"}`); n < splices0+2 {
		t.Errorf("H's p2psip_bridge_stream_splices_total{leg=\"plain\"} went %v → %v: want +2 (a new SSRC, a sequence jump)", splices0, n)
	}
	if st := a.state(t); num(st.Level) <= 0 {
		t.Errorf("after the splices the page's audio level is %s: want > 0 (dave's tone)", st.Level)
	}

	// The re-INVITE that moves dave's RTP to a new port.
	old := c.Sock()
	moved := c.NewSocket(t)
	pageBefore := a.state(t)
	sent := time.Now()
	res := c.Reinvite(t, moved)
	t.Logf("re-INVITE (RTP %d → %d): %d %s after %s", old.port, moved.port, res.StatusCode, res.Reason, time.Since(sent).Round(time.Millisecond))
	if res.StatusCode != 200 {
		t.Fatalf("dave's re-INVITE moving its RTP got %d %s: want 200", res.StatusCode, res.Reason)
	}
	ans, err := parseTPSDP(string(res.Body()))
	if err != nil {
		t.Fatalf("the re-INVITE's 200 has no usable SDP: %v\n%s", err, res.Body())
	}
	t.Logf("the bridge's answer to the re-INVITE:\n%s", ans.Raw)
	if ans.IP != c.Offer.IP || ans.Port != c.Offer.Port {
		t.Errorf("the bridge answered the re-INVITE with %s:%d, want its leg %s:%d unchanged", ans.IP, ans.Port, c.Offer.IP, c.Offer.Port)
	}
	// RFC 3264 §8: the same session, the next version.
	if o0, o1 := bfOrigin(c.Offer.Raw), bfOrigin(ans.Raw); len(o0) < 3 || len(o1) < 3 || o0[1] != o1[1] || bfAtoi(o1[2]) != bfAtoi(o0[2])+1 {
		t.Errorf("the bridge's answer to the re-INVITE has o=%q after o=%q: want the same session id and the version one up (RFC 3264 §8)", o1, o0)
	}
	if !slices.Contains(ans.PTs, 0) || ans.Dir != "sendrecv" || strings.Contains(ans.Raw, "a=fingerprint") || strings.Contains(ans.Raw, "a=ice-") {
		t.Errorf("the bridge's answer to the re-INVITE is not a plain sendrecv PCMU answer (PTs %v, %s)", ans.PTs, ans.Dir)
	}
	// From the 200 on, the bridge sends to the new port only: all it
	// relays from the browser lands there, at about 50 packets/s.
	okAt := time.Now()
	in0 := bfMetric(t, e.H, `p2psip_bridge_packets_total{direction="out",leg="plain"}`)
	time.Sleep(3 * time.Second)
	in1 := bfMetric(t, e.H, `p2psip_bridge_packets_total{direction="out",leg="plain"}`)
	end := time.Now()
	gotNew, gapNew := moved.Window(okAt, end)
	gotOld, _ := old.Window(okAt, end)
	elapsed := end.Sub(okAt)
	want := int(elapsed.Seconds() * 50)
	firstNew, _ := moved.Window(sent, okAt)
	t.Logf("after the re-INVITE's 200: dave's new port %d got %d packets in %s (%d expected; the bridge sent %.0f to the phone meanwhile; longest gap %s), the old port %d got %d; %d reached the new port while the re-INVITE was under way",
		moved.port, gotNew, elapsed.Round(time.Millisecond), want, in1-in0, gapNew.Round(time.Millisecond), old.port, gotOld, firstNew)
	if float64(gotNew) < 0.9*float64(want) {
		t.Errorf("after the re-INVITE the bridge sent %d packets to dave's new port in %s: want ≥ 90 %% of %d", gotNew, elapsed.Round(time.Millisecond), want)
	}
	if gotOld > 0 {
		t.Errorf("after the re-INVITE's 200 the bridge still sent %d packets to dave's old port", gotOld)
	}
	if st := a.state(t); num(st.Packets) <= num(pageBefore.Packets) {
		t.Errorf("the page stopped receiving across dave's re-INVITE (%s → %s packets)", pageBefore.Packets, st.Packets)
	}

	start = time.Now()
	bye := c.Bye(t)
	if bye.StatusCode != 200 {
		t.Errorf("dave's BYE got %d %s, want 200", bye.StatusCode, bye.Reason)
	}
	a.waitCall(t, "ended", "idle")
	t.Logf("dave's BYE: %d %s; the page's call ended %s after it", bye.StatusCode, bye.Reason, time.Since(start).Round(time.Millisecond))
	bfWaitNoBridgedCalls(t, e.H)
}

// bfPhoneAtOverlayPeer: carol2 registers carol2@overlay.example at the
// proxy peer P (a registrar for the overlay's domain) and calls the
// page's overlay AOR: P routes to H, H bridges; the page rings, answers,
// audio flows both ways.
func bfPhoneAtOverlayPeer(t *testing.T, e *pxEnv, a *tab) {
	setupsH0 := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="ok"}`)
	setupsP0 := bfMetric(t, e.P, `p2psip_sip_bridge_setups_total{result="ok"}`)
	carol2 := startBaresip(t, baresipOpts{name: "carol2", ip: bfCarol2IP,
		account:  baresipAccount("carol2", pxOverlay, "", pxAddr(pxProxyIP, pxSIPPort), 600),
		rtpPorts: [2]int{40200, 40299}})

	start := time.Now()
	carol2.Dial(t, "sip:"+bpName+"@"+pxOverlay)
	st := a.waitCall(t, "incoming")
	t.Logf("carol2 → %s@%s: the page rings after %s, #peer-name %q", bpName, pxOverlay, time.Since(start).Round(time.Millisecond), st.PeerName)
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	carol2.WaitEstablished(t)
	brAudioBothWays(t, a, carol2)
	if n := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="ok"}`); n != setupsH0+1 {
		t.Errorf("H's p2psip_sip_bridge_setups_total{result=\"ok\"} went %v → %v: want the call bridged at H (+1)", setupsH0, n)
	}
	if n := bfMetric(t, e.P, `p2psip_sip_bridge_setups_total{result="ok"}`); n != setupsP0 {
		t.Errorf("P's p2psip_sip_bridge_setups_total{result=\"ok\"} went %v → %v: P must not bridge a call it only routes", setupsP0, n)
	}
	a.click(t, "#hangup")
	ev := carol2.WaitClosed(t)
	t.Logf("carol2's call closed: %q", ev.Param)
	a.waitCall(t, "ended", "idle")
}

// ---- helpers ---------------------------------------------------------------

func bfScenario(name string) string {
	return filepath.Join(moduleRoot, "e2e", "testdata", "bridge", name)
}

// bfMetric reads one series (name{labels} exactly as /metrics prints it)
// from a peer's /metrics; a series not there yet is 0.
func bfMetric(t *testing.T, p *peer, series string) float64 {
	t.Helper()
	code, body := get(t, p.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("%s /metrics: %d", p.Name, code)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s /metrics: %q: %v", p.Name, l, err)
			}
			return f
		}
	}
	return 0
}

// bfWaitNoBridgedCalls waits until the peer has no bridged call left (its
// p2psip_bridge_calls gauge is 0): nothing leaked.
func bfWaitNoBridgedCalls(t *testing.T, p *peer) {
	t.Helper()
	eventually(t, 5*time.Second, 200*time.Millisecond, p.Name+" has no bridged call left", func() (bool, string) {
		n := bfMetric(t, p, "p2psip_bridge_calls")
		return n == 0, fmt.Sprintf("p2psip_bridge_calls %v", n)
	})
}

// bfOrigin is an SDP's o= line split in fields (user, sess-id, version, …).
func bfOrigin(sdp string) []string {
	for _, l := range strings.Split(sdp, "\n") {
		if o, ok := strings.CutPrefix(strings.TrimSpace(l), "o="); ok {
			return strings.Fields(o)
		}
	}
	return nil
}

func bfAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// bfTransitionsSince reports whether the page recorded a transition
// (e.g. "call-state=incoming") between two readings.
func bfTransitionsSince(before, after phoneState, what string) bool {
	n := after.Changes - before.Changes
	tr := after.Transitions
	if n < len(tr) {
		tr = tr[len(tr)-n:]
	}
	for _, s := range tr {
		if strings.HasPrefix(s, what+"@") {
			return true
		}
	}
	return false
}

func bfPageCodec(t *testing.T, a *tab) string {
	t.Helper()
	return evalIn[string](t, a, `(document.querySelector('#quality') || {dataset: {}}).dataset.codec || ''`)
}

// bfAudioBothWaysGo is brAudioBothWays with the Go test phone: the page's
// packets grow with a level above zero, and dave's socket gets ≥ 90 % of
// 50 packets/s.
func bfAudioBothWaysGo(t *testing.T, a *tab, c *tpCall, when string) {
	t.Helper()
	first := a.waitFor(t, "#quality data-packets-received > 0", func(st phoneState) bool { return num(st.Packets) > 0 })
	a.waitFor(t, "#quality data-packets-received grows and data-audio-level > 0", func(st phoneState) bool {
		return num(st.Packets) > num(first.Packets) && num(st.Level) > 0
	})
	s := c.Sock()
	t0 := time.Now()
	time.Sleep(brAudioWait)
	t1 := time.Now()
	got, gap := s.Window(t0, t1)
	elapsed := t1.Sub(t0)
	want := int(elapsed.Seconds() * 50)
	st := a.state(t)
	t.Logf("audio %s: dave received %d packets in %s (%d expected, longest gap %s), sent %d; page: packets %s level %s loss %s jitter %s",
		when, got, elapsed.Round(time.Millisecond), want, gap.Round(time.Millisecond), c.Sent(), st.Packets, st.Level, st.Loss, st.Jitter)
	if float64(got) < 0.9*float64(want) {
		t.Errorf("dave received %d RTP packets in %s: want ≥ 90 %% of %d", got, elapsed.Round(time.Millisecond), want)
	}
}

// ---- the page's RTCPeerConnections ---------------------------------------------

// bfPCHook records every RTCPeerConnection the page makes, so the test can
// read inbound-rtp statistics more often than the page's once-a-second
// #quality.
const bfPCHook = `(() => {
  if (window.__e2ePCs || !window.RTCPeerConnection) return;
  const pcs = window.__e2ePCs = [];
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) { super(...args); pcs.push(this); }
  };
})();`

// bfTrackPeerConnections installs bfPCHook in every new document of the
// tab and reloads it so the page runs with it.
func bfTrackPeerConnections(t *testing.T, a *tab, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(a.ctx, browserAction)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: bfPCHook}); err != nil {
		t.Fatalf("%s: installing the RTCPeerConnection hook: %v", a.name, err)
	}
	a.navigate(t, url)
	if !evalIn[bool](t, a, `Array.isArray(window.__e2ePCs)`) {
		t.Fatalf("%s: the RTCPeerConnection hook is not in the page", a.name)
	}
}

// bfStartSampler samples the page's inbound audio every 50 ms: time,
// packetsReceived, audioLevel, concealedSamples, totalSamplesReceived and
// how many inbound audio streams (SSRCs) the browser knows.
func bfStartSampler(t *testing.T, a *tab) {
	t.Helper()
	evalIn[bool](t, a, `(() => {
	  if (window.__e2eSampler) window.__e2eSampler.stop = true;
	  const s = window.__e2eSampler = {samples: [], stop: false};
	  const tick = async () => {
	    if (s.stop) return;
	    let best = null, streams = 0;
	    for (const pc of window.__e2ePCs || []) {
	      if (pc.connectionState === 'closed') continue;
	      try {
	        (await pc.getStats()).forEach(r => {
	          if (r.type !== 'inbound-rtp' || r.kind !== 'audio') return;
	          streams++;
	          if (!best || (r.packetsReceived || 0) > (best.packetsReceived || 0)) best = r;
	        });
	      } catch (e) {}
	    }
	    if (best) s.samples.push([performance.now(), best.packetsReceived || 0, best.audioLevel || 0,
	      best.concealedSamples || 0, best.totalSamplesReceived || 0, streams]);
	    setTimeout(tick, 50);
	  };
	  tick();
	  return true;
	})()`)
}

// bfStopSampler stops the sampler and returns its samples.
func bfStopSampler(t *testing.T, a *tab) [][]float64 {
	t.Helper()
	return evalIn[[][]float64](t, a, `(() => { const s = window.__e2eSampler; if (!s) return []; s.stop = true; return s.samples; })()`)
}

// bfCheckContinuous checks the samples show packets arriving all along:
// no gap between two increases longer than bfStall, about as many packets
// as the phone sent in the window (sent, with its own longest pause
// gap), one inbound stream.
func bfCheckContinuous(t *testing.T, samples [][]float64, when string, sent int, gap time.Duration) {
	t.Helper()
	if len(samples) < 10 {
		t.Fatalf("%s: only %d samples of the page's inbound audio", when, len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	var maxGap, maxTick float64
	lastRise, maxStreams, silent := first[0], 0.0, 0
	for i := 1; i < len(samples); i++ {
		s := samples[i]
		maxTick = math.Max(maxTick, s[0]-samples[i-1][0])
		if s[1] > samples[i-1][1] {
			maxGap = math.Max(maxGap, s[0]-lastRise)
			lastRise = s[0]
		}
		maxStreams = math.Max(maxStreams, s[5])
		if s[2] == 0 {
			silent++
		}
	}
	maxGap = math.Max(maxGap, last[0]-lastRise)
	span := (last[0] - first[0]) / 1000
	got := last[1] - first[1]
	concealed, total := last[3]-first[3], last[4]-first[4]
	t.Logf("%s: the page got %.0f packets in %.1f s (%.1f/s; the phone sent %d, its longest pause %s), longest wait for a packet %.0f ms (samples every ≤ %.0f ms), %.0f inbound streams, concealed %.0f of %.0f samples, %d of %d samples at level 0",
		when, got, span, got/span, sent, gap.Round(time.Millisecond), maxGap, maxTick, maxStreams, concealed, total, silent, len(samples))
	if time.Duration(maxGap*float64(time.Millisecond)) > bfStall {
		t.Errorf("%s: the page went %.0f ms without a packet: want no stall beyond %s (the phone's own longest pause: %s; the page's stats sampled every ≤ %.0f ms)",
			when, maxGap, bfStall, gap.Round(time.Millisecond), maxTick)
	}
	if got < 0.9*float64(sent) {
		t.Errorf("%s: the page got %.0f packets while the phone sent %d: want ≥ 90 %%", when, got, sent)
	}
	if maxStreams > 1 {
		t.Errorf("%s: the browser saw %.0f inbound audio streams: the bridge must present one continuous stream", when, maxStreams)
	}
}

// bfLateOffer: a phone calls alice@atlanta.example through Kamailio with
// an INVITE without SDP (sipp checks that the 200 offers plain RTP/AVP,
// answers PCMU in its ACK and echoes RTP). The page rings, answers, and
// must hear its own audio back through the bridge; then the phone hangs
// up and the page ends.
func bfLateOffer(t *testing.T, e *pxEnv, a *tab) {
	setups0 := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="ok"}`)
	const hold = 8 * time.Second
	uac := e.startSipp(t, pxSippOpts{name: "late-offer caller", scenario: bfScenario("uac_late.xml"),
		ip: bfLateIP, port: 5099, remote: pxAddr(pxKamIP, 5060), service: "alice",
		keys: map[string]string{"callee_domain": pxPublic}, timeout: 40 * time.Second, hold: hold,
		extra: []string{"-rtp_echo", "-mp", "40300"}})
	t.Cleanup(func() {
		if t.Failed() && !uac.running() {
			t.Logf("the late-offer caller:\n%s", uac.wait())
		}
	})
	a.waitCall(t, "incoming")
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	first := a.waitFor(t, "#quality data-packets-received > 0", func(st phoneState) bool { return num(st.Packets) > 0 })
	a.waitFor(t, "the phone's echo: packets grow past "+first.Packets+" with data-audio-level > 0", func(st phoneState) bool {
		return num(st.Packets) > num(first.Packets)+50 && num(st.Level) > 0
	})
	st := a.state(t)
	t.Logf("late offer: the page received %s packets, level %s", st.Packets, st.Level)
	if r := uac.wait(); r.Code != 0 {
		t.Fatalf("the late-offer caller failed (a 200 without a plain offer, or no 200 to its BYE):\n%s", r)
	}
	a.waitCall(t, "ended", "idle")
	if n := bfMetric(t, e.H, `p2psip_sip_bridge_setups_total{result="ok"}`); n != setups0+1 {
		t.Errorf("H's bridge set-ups went %v → %v, want +1", setups0, n)
	}
}
