//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The media bridge on one network (issue: "On one network"): the page in
// Chromium on the home peer H calls carol@atlanta.example, an ordinary SIP
// phone (baresip: plain RTP/AVP, PCMU, a 440 Hz tone as microphone)
// registered at Kamailio and reached through the proxy peer P. H bridges:
// audio both ways, DTMF from the page reaches the phone, hold and unhold,
// hang-up from each side; then carol calls alice@atlanta.example (the
// page's public account): the page rings, answers, audio both ways. All
// actors run in the browser suite's namespace with the addresses of
// proxy_test.go.

const (
	brCarolIP   = "127.0.0.32"
	brCarolURI  = "carol@" + pxPublic
	brAudioWait = 5 * time.Second
)

func TestBridgeOneNetwork(t *testing.T) {
	if os.Getenv(browserInNetnsEnv) != "1" {
		pxRequireTools(t)
		requireTool(t, "baresip", "baresip-core")
		runBrowserSuiteInNetns(t, "TestBridgeOneNetwork", func(ns string) { pxWriteResolvConf(t, ns) })
		return
	}
	e := pxSetupHere(t)
	carol := startBaresip(t, baresipOpts{name: "carol", ip: brCarolIP,
		account: baresipAccount("carol", pxPublic, "carolpw", pxAddr(pxKamIP, 5060), 600),
		codecs:  []string{"PCMU"}, autoAnswer: true, rtpPorts: [2]int{40000, 40099}})

	waitPublicProxy(t, e.H)
	b := newBrowser(t, "A")
	a := b.open(t, "A", e.H.URL+"/")
	a.waitFor(t, "the page proposes a name", func(st phoneState) bool { return st.Name != "" })
	a.typeInto(t, "#name", bpName)
	a.click(t, "#join")
	a.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" })

	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"browser-calls-phone", func(t *testing.T) { brBrowserCallsPhone(t, a, carol); brLogMetrics(t, e.H); brFastPath(t, e.H) }},
		{"phone-hangs-up", func(t *testing.T) { brPhoneHangsUp(t, a, carol) }},
		{"phone-calls-browser", func(t *testing.T) { brPhoneCallsBrowser(t, a, carol); brLogMetrics(t, e.H) }},
		{"timing", func(t *testing.T) { brTiming(t, a, carol) }},
		{"tab-closes", func(t *testing.T) { brTabCloses(t, a, carol) }}, // last: the page is gone after it
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			t.Cleanup(func() { hangUpAll(a) })
			s.run(t)
		})
	}
	if t.Failed() {
		t.Logf("H's log (tail):\n%s", pxTail(e.H.stderr.String(), 20000))
	}
}

// brAudioBothWays checks a bridged call carries audio both ways: the
// page's inbound packets grow with an audio level above zero, and the
// phone receives at least 90 % of the 50 packets/s G.711 sends over
// brAudioWait.
func brAudioBothWays(t *testing.T, a *tab, phone *baresipProc) {
	t.Helper()
	first := a.waitFor(t, "#quality data-packets-received > 0", func(st phoneState) bool { return num(st.Packets) > 0 })
	a.waitFor(t, fmt.Sprintf("#quality data-packets-received to grow past %s and data-audio-level > 0", first.Packets), func(st phoneState) bool {
		return num(st.Packets) > num(first.Packets) && num(st.Level) > 0
	})
	// Each reading is taken at the middle of its control round trip.
	read := func() (baresipLiveStats, time.Time) {
		before := time.Now()
		s := phone.LiveStats(t)
		return s, before.Add(time.Since(before) / 2)
	}
	s0, start := read()
	time.Sleep(brAudioWait)
	s1, end := read()
	elapsed := end.Sub(start)
	got := s1.RxPackets - s0.RxPackets
	want := int(elapsed.Seconds() * 50)
	st := a.state(t)
	t.Logf("audio: %s received %d packets in %s (%d expected, lost %d); page: packets %s level %s loss %s jitter %s",
		phone.name, got, elapsed.Round(time.Millisecond), want, s1.RxLost, st.Packets, st.Level, st.Loss, st.Jitter)
	if float64(got) < 0.9*float64(want) {
		t.Errorf("%s received %d RTP packets in %s: want ≥ 90 %% of %d", phone.name, got, elapsed.Round(time.Millisecond), want)
	}
}

func brBrowserCallsPhone(t *testing.T, a *tab, carol *baresipProc) {
	a.typeInto(t, "#dial", brCarolURI)
	a.click(t, "#call")
	carol.WaitEstablished(t)
	a.waitCall(t, "connected")
	brAudioBothWays(t, a, carol)

	// A muted page still sends RTP (silence): the phone's jitter buffer and
	// the bridge's media timeout must not take mute for a dead call.
	a.click(t, "#mute")
	muted := carol.LiveStats(t)
	time.Sleep(2 * time.Second)
	if st := carol.LiveStats(t); st.RxPackets-muted.RxPackets < 80 {
		t.Errorf("while the page is muted carol receives %d packets in 2 s: want RTP to go on (silence)", st.RxPackets-muted.RxPackets)
	}
	a.click(t, "#mute")

	// DTMF from the page: RFC 4733 through the bridge, payload type mapped.
	for _, d := range []string{"1", "2", "3", "#"} {
		a.click(t, fmt.Sprintf(`[data-digit=%q]`, d))
		time.Sleep(300 * time.Millisecond)
	}
	carol.WaitDTMF(t, "123#")

	// Hold and unhold from the page: re-INVITEs through the bridge.
	// The page's hold offer is sendonly (RFC 3264 §8.4): carol answers
	// recvonly and the page hears nothing while it holds.
	a.click(t, "#hold")
	a.waitCall(t, "held")
	// The page's stats refresh once a second: start counting after one.
	time.Sleep(1500 * time.Millisecond)
	held := a.state(t)
	time.Sleep(2 * time.Second)
	if st := a.state(t); num(st.Packets)-num(held.Packets) > 10 {
		t.Errorf("while the page holds, it still receives carol's audio (%s → %s packets)", held.Packets, st.Packets)
	}
	a.click(t, "#hold")
	a.waitCall(t, "connected")
	resumed := carol.LiveStats(t)
	before := a.state(t)
	a.waitFor(t, "inbound packets flow again after the resume", func(st phoneState) bool { return num(st.Packets) > num(before.Packets) })
	time.Sleep(2 * time.Second)
	if st := carol.LiveStats(t); st.RxPackets-resumed.RxPackets < 50 {
		t.Errorf("after the resume carol receives little audio (%d → %d packets in 2 s)", resumed.RxPackets, st.RxPackets)
	}

	// Hang-up from the page.
	a.click(t, "#hangup")
	ev := carol.WaitClosed(t)
	t.Logf("carol's call closed: %+v", ev)
	a.waitCall(t, "ended", "idle")
}

func brPhoneHangsUp(t *testing.T, a *tab, carol *baresipProc) {
	a.waitCall(t, "idle")
	a.typeInto(t, "#dial", brCarolURI)
	a.click(t, "#call")
	carol.WaitEstablished(t)
	a.waitCall(t, "connected")
	time.Sleep(time.Second)
	carol.Hangup(t)
	carol.WaitClosed(t)
	a.waitCall(t, "ended", "idle")
}

func brPhoneCallsBrowser(t *testing.T, a *tab, carol *baresipProc) {
	a.waitCall(t, "idle")
	a.click(t, "#public > summary")
	a.waitPub(t, "the public account form is enabled", func(st pubState) bool { return !st.Disabled })
	bpSubmit(t, a, bpPassword)
	a.waitPub(t, "#pub-state registered", func(st pubState) bool { return st.State == "registered" })

	carol.Dial(t, "sip:"+bpPublic)
	st := a.waitCall(t, "incoming")
	t.Logf("incoming from the phone: #peer-name %q", st.PeerName)
	a.click(t, "#answer")
	a.waitCall(t, "connected")
	carol.WaitEstablished(t)
	brAudioBothWays(t, a, carol)

	// Hold and resume from the phone: its sendonly re-INVITE reaches the
	// page as a WebRTC re-offer through the bridge, the page shows it is
	// held and hears nothing; the resume brings the audio back.
	if _, err := carol.Command(t, "hold", ""); err != nil {
		t.Fatalf("carol: hold: %v", err)
	}
	a.waitCall(t, "remote-held")
	if _, err := carol.Command(t, "resume", ""); err != nil {
		t.Fatalf("carol: resume: %v", err)
	}
	a.waitCall(t, "connected")
	resumed := a.state(t)
	a.waitFor(t, "inbound packets flow again after carol's resume", func(st phoneState) bool { return num(st.Packets) > num(resumed.Packets)+20 })

	// DTMF from the phone: RFC 4733 to the bridge, SIP INFO to the page.
	carol.SendDTMF(t, "42")
	a.waitFor(t, `#dtmf-received "42"`, func(st phoneState) bool { return strings.HasSuffix(st.DTMF, "42") })

	carol.Hangup(t)
	carol.WaitClosed(t)
	a.waitCall(t, "ended", "idle")
}

// brFastPath checks that the bridge relayed a real browser's SRTP on its
// fast path both ways (its keys come from the DTLS handshake Chromium
// did, with the SRTP profile Chromium chose), not only through pion.
func brFastPath(t *testing.T, p *peer) {
	t.Helper()
	for _, dir := range []string{"in", "out"} {
		if n := bfMetric(t, p, `p2psip_bridge_fast_path_packets_total{direction="`+dir+`"}`); n < 50 {
			t.Errorf("%s: %v packets on the fast path %s, want ≥ 50 (a second of audio)", p.Name, n, dir)
		}
	}
}

// brLogMetrics logs the peer's bridge metrics (what a failing step's
// media did).
func brLogMetrics(t *testing.T, p *peer) {
	t.Helper()
	code, body := get(t, p.URL+"/metrics")
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "p2psip_bridge") || strings.HasPrefix(l, "p2psip_sip_bridge") {
			if !strings.Contains(l, "_bucket{") {
				lines = append(lines, l)
			}
		}
	}
	t.Logf("%s /metrics (%d), bridge series:\n%s", p.Name, code, strings.Join(lines, "\n"))
}

// brTiming: click → ringing and click → audio of the page's calls to
// carol (auto-answer) through H's bridge, P and Kamailio, over
// brTimingCalls calls, from the page's performance marks (call-click,
// call-ringing: the 18x, call-media: the first inbound audio). With
// P2PSIP_SCREENSHOTS=1 the first call is shot for the README.
func brTiming(t *testing.T, a *tab, carol *baresipProc) {
	const brTimingCalls = 10
	a.waitCall(t, "idle", "ended")
	a.typeInto(t, "#dial", brCarolURI)
	var ringing, media []time.Duration
	for i := 0; i < brTimingCalls; i++ {
		a.click(t, "#call")
		a.waitCall(t, "connected")
		a.waitFor(t, "performance marks call-click and call-media", func(phoneState) bool {
			m := evalIn[perfMarks](t, a, perfMarksJS)
			return m.Click >= 0 && m.Media >= m.Click
		})
		m := evalIn[perfMarks](t, a, perfMarksJS)
		if m.Ringing >= m.Click {
			ringing = append(ringing, ms(m.Ringing-m.Click))
		}
		media = append(media, ms(m.Media-m.Click))
		if i == 0 && os.Getenv("P2PSIP_SCREENSHOTS") == "1" {
			dir := filepath.Join(moduleRoot, "docs", "screenshots")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			a.waitFor(t, "inbound audio level > 0", func(st phoneState) bool { return num(st.Level) > 0 })
			time.Sleep(2 * time.Second) // the quality panel's figures settle
			a.screenshot(t, filepath.Join(dir, "softphone-bridged-call-desktop.png"), 1280, 800, false)
		}
		a.click(t, "#hangup")
		carol.WaitClosed(t)
		a.waitCall(t, "ended", "idle")
	}
	line := fmt.Sprintf("bridged call to a SIP phone: click→ringing p50=%s p95=%s; click→audio p50=%s p95=%s (%d calls)",
		pct(ringing, 50), pct(ringing, 95), pct(media, 50), pct(media, 95), brTimingCalls)
	t.Log(line)
	t.Logf("click→audio samples: %v", media)
	if out := os.Getenv("P2PSIP_BRIDGE_TIMING_OUT"); out != "" {
		if !filepath.IsAbs(out) {
			out = filepath.Join(moduleRoot, out)
		}
		if err := os.WriteFile(out, []byte(line+"\nclick→ringing samples: "+fmt.Sprint(ringing)+"\nclick→audio samples: "+fmt.Sprint(media)+"\n"), 0o644); err != nil {
			t.Errorf("P2PSIP_BRIDGE_TIMING_OUT: %v", err)
		}
	}
	// The target is p50 < 400 ms; the test fails only far above it
	// (a loaded CI machine), the number is recorded in bench/README.md.
	if p50 := percentile(media, 50); p50 > 2*time.Second {
		t.Errorf("click→audio p50 = %s: far over the 400 ms target", p50)
	}
}

// brTabCloses: the page's tab closes in a bridged call: H ends the call
// with a BYE to carol within a bounded time (DTLS close, or ICE failing).
func brTabCloses(t *testing.T, a *tab, carol *baresipProc) {
	a.waitCall(t, "idle", "ended")
	a.typeInto(t, "#dial", brCarolURI)
	a.click(t, "#call")
	carol.WaitEstablished(t)
	a.waitCall(t, "connected")
	time.Sleep(time.Second)
	closed := time.Now()
	a.close()
	ev := carol.WaitClosed(t)
	took := time.Since(closed)
	t.Logf("the tab closed; carol's call closed %s later (%s)", took.Round(time.Millisecond), ev.Param)
	if took > 20*time.Second {
		t.Errorf("carol's call ended %s after the tab closed: want within the ICE failure timeout (10 s) and a margin", took)
	}
}
