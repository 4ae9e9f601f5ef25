//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestBaresipHarness proves the baresip harness against a real SIP domain.
// In a namespace whose only interface is lo: Kamailio as atlanta.example on
// 127.0.0.2, carol (127.0.0.5) and bob (127.0.0.6) register there; carol
// calls bob, who answers automatically; the call carries G.711 both ways
// for ≥ 5 s; carol sends DTMF 1 2 3 # and bob receives them; carol hangs up
// and each phone received ≥ 90 % of the ~50 packets/s expected. alice
// (127.0.0.7) offers PCMA only: carol (PCMU, PCMA) takes the call, bob (PCMU
// only) refuses it with 488. Then a call that bob answers by hand ends with
// carol killed mid-call: bob closes it when its RTP stops (rtp_timeout).
func TestBaresipHarness(t *testing.T) {
	requireRoot(t)
	requireTool(t, "baresip", "baresip-core")
	ns := newNetns(t)
	kam := startAtlantaKamailio(t, ns)

	const domain = "atlanta.example"
	outbound := pxAddr(pxKamIP, 5060)
	carol := startBaresip(t, baresipOpts{
		name: "carol", wrap: ns, ip: "127.0.0.5",
		account:    baresipAccount("carol", domain, "carolpw", outbound, 600),
		codecs:     []string{"PCMU", "PCMA"},
		autoAnswer: true,
		rtpPorts:   [2]int{20000, 20099},
	})
	bob := startBaresip(t, baresipOpts{
		name: "bob", wrap: ns, ip: "127.0.0.6",
		account:    baresipAccount("bob", domain, "bobpw", outbound, 600),
		codecs:     []string{"PCMU"},
		autoAnswer: true,
		rtpPorts:   [2]int{20100, 20199},
		rtpTimeout: 2 * time.Second,
	})
	alice := startBaresip(t, baresipOpts{
		name: "alice", wrap: ns, ip: "127.0.0.7",
		account:  baresipAccount("alice", domain, "alicepw", outbound, 600),
		codecs:   []string{"PCMA"},
		rtpPorts: [2]int{20200, 20299},
	})

	// Both are in Kamailio's location table.
	out, err := kam.kamcmd(t, "ul.dump")
	if err != nil {
		t.Fatalf("kamcmd ul.dump: %v\n%s", err, out)
	}
	// (baresip registers the contact sip:USER-0x…@IP:PORT.)
	for user, contact := range map[string]string{"carol": "@127.0.0.5:5060", "bob": "@127.0.0.6:5060", "alice": "@127.0.0.7:5060"} {
		if !strings.Contains(out, "AoR: "+user+"\n") || !strings.Contains(out, contact) {
			t.Errorf("Kamailio's location has no %s with a contact …%s:\n%s", user, contact, out)
		}
	}

	// ---- call 1: auto-answer, ≥ 5 s of audio, DTMF, hang-up ----
	carol.Dial(t, "sip:bob@"+domain)
	ce := carol.WaitEstablished(t)
	be := bob.WaitEstablished(t)
	established := time.Now()
	if ce.Direction != "outgoing" || ce.PeerURI != "sip:bob@"+domain {
		t.Errorf("carol's CALL_ESTABLISHED: %+v, want outgoing to sip:bob@%s", ce, domain)
	}
	if be.Direction != "incoming" || be.PeerURI != "sip:carol@"+domain {
		t.Errorf("bob's CALL_ESTABLISHED: %+v, want incoming from sip:carol@%s", be, domain)
	}
	for _, p := range []*baresipProc{carol, bob} {
		v := p.ParseLog()
		if len(v.Established) != 1 {
			t.Errorf("%s: the log shows %d established calls %q, want 1", p.name, len(v.Established), v.Established)
		}
	}

	// Live counters mid-call, from audio_debug.
	time.Sleep(2 * time.Second)
	for _, p := range []*baresipProc{carol, bob} {
		ls := p.LiveStats(t)
		t.Logf("%s after ~2 s: live RTP tx=%d rx=%d lost=%d", p.name, ls.TxPackets, ls.RxPackets, ls.RxLost)
		if ls.TxPackets < 50 || ls.RxPackets < 50 {
			t.Errorf("%s: after ~2 s of call only tx=%d rx=%d RTP packets (want ≥ 50 each):\n%s", p.name, ls.TxPackets, ls.RxPackets, ls.Raw)
		}
	}

	carol.SendDTMF(t, "123#")
	bob.WaitDTMF(t, "123#")
	var ctrlDigits strings.Builder
	for range 4 {
		ctrlDigits.WriteString(bob.WaitEvent(t, "CALL_DTMF_START", baresipWaitTimeout).Param)
	}
	if got := ctrlDigits.String(); got != "123#" {
		t.Errorf("bob's CALL_DTMF_START events carry %q, want 123#", got)
	}
	if d := carol.ParseLog().DTMF; d != "" {
		t.Errorf("carol received DTMF %q, want none", d)
	}

	// The first RTCP report comes ~5 s into the call: a live CALL_RTCP event.
	for _, p := range []*baresipProc{carol, bob} {
		ev := p.WaitEvent(t, "CALL_RTCP", 10*time.Second)
		for ev.RTCP == nil || ev.RTCP.RX.Sent == 0 {
			ev = p.WaitEvent(t, "CALL_RTCP", 10*time.Second)
		}
		t.Logf("%s: CALL_RTCP %+v", p.name, *ev.RTCP)
	}
	if d := time.Until(established.Add(6 * time.Second)); d > 0 {
		time.Sleep(d)
	}

	carol.Hangup(t)
	held := time.Since(established)
	if r := carol.WaitClosed(t).Param; r != "Connection reset by user" {
		t.Errorf("carol's CALL_CLOSED reason %q, want \"Connection reset by user\"", r)
	}
	if r := bob.WaitClosed(t).Param; r != "Connection reset by peer" {
		t.Errorf("bob's CALL_CLOSED reason %q, want \"Connection reset by peer\"", r)
	}

	expected := baresipPacketsPerSec * held.Seconds()
	for _, p := range []*baresipProc{carol, bob} {
		st := p.WaitStats(t, 1)
		t.Logf("%s: call held %s, expected ≈%.0f packets each way; stats %+v", p.name, held.Round(time.Millisecond), expected, st)
		if st.Media != "audio" {
			t.Errorf("%s: stats for %q, want audio", p.name, st.Media)
		}
		if float64(st.RxPackets) < 0.9*expected {
			t.Errorf("%s: received %d RTP packets, want ≥ 90%% of %.0f", p.name, st.RxPackets, expected)
		}
		if float64(st.TxPackets) < 0.9*expected {
			t.Errorf("%s: sent %d RTP packets, want ≥ 90%% of %.0f", p.name, st.TxPackets, expected)
		}
		if st.RxErrors != 0 || st.TxErrors != 0 {
			t.Errorf("%s: RTP errors tx=%d rx=%d", p.name, st.TxErrors, st.RxErrors)
		}
		if !st.HaveRTCP || st.RxLost != 0 || !strings.Contains(st.Summary, "PR=") {
			t.Errorf("%s: want RTCP statistics with no loss and an rtcpsummary line; got %+v", p.name, st)
		}
		v := p.ParseLog()
		if len(v.Closed) != 1 || v.Closed[0].Duration == "" {
			t.Errorf("%s: the log shows calls closed %+v, want one with a duration", p.name, v.Closed)
		}
	}
	if c := carol.ParseLog().Closed; len(c) == 1 && c[0].Reason != "local hangup" {
		t.Errorf("carol's log gives the close reason %q, want local hangup", c[0].Reason)
	}
	if c := bob.ParseLog().Closed; len(c) == 1 && c[0].Reason != "Connection reset by peer" {
		t.Errorf("bob's log gives the close reason %q, want \"Connection reset by peer\"", c[0].Reason)
	}

	// ---- codecs: alice offers PCMA only ----
	// carol (PCMU, PCMA) takes it ...
	alice.Dial(t, "sip:carol@"+domain)
	alice.WaitEstablished(t)
	carol.WaitEstablished(t)
	time.Sleep(500 * time.Millisecond)
	for _, p := range []*baresipProc{alice, carol} {
		if ls := p.LiveStats(t); !strings.Contains(ls.Raw, "encode: PCMA 8000Hz") {
			t.Errorf("%s: the call with alice does not send PCMA:\n%s", p.name, ls.Raw)
		}
	}
	alice.Hangup(t)
	alice.WaitClosed(t)
	carol.WaitClosed(t)
	// ... bob (PCMU only) cannot.
	alice.Dial(t, "sip:bob@"+domain)
	if r := alice.WaitClosed(t).Param; r != "488 Not Acceptable Here" {
		t.Errorf("alice (PCMA) calling bob (PCMU): closed with %q, want 488 Not Acceptable Here", r)
	}
	if r := bob.WaitClosed(t).Param; r != "No audio codecs" {
		t.Errorf("bob (PCMU) called by alice (PCMA): closed with %q, want \"No audio codecs\"", r)
	}

	// ---- call 2: manual answer, then carol dies mid-call ----
	bob.mustCommand(t, "answermode", "manual")
	carol.Dial(t, "sip:bob@"+domain)
	bob.WaitEvent(t, "CALL_INCOMING", baresipWaitTimeout)
	bob.Answer(t)
	carol.WaitEstablished(t)
	bob.WaitEstablished(t)
	time.Sleep(time.Second)
	carol.Kill()
	killed := time.Now()
	r := bob.WaitClosed(t)
	t.Logf("bob: call closed %s after carol was killed: %q", time.Since(killed).Round(time.Millisecond), r.Param)
	if r.Param != "rtp stream error" {
		t.Errorf("bob's CALL_CLOSED reason after carol died: %q, want \"rtp stream error\" (rtp_timeout)", r.Param)
	}
	v := bob.WaitLog(t, "the RTP timeout", baresipWaitTimeout, func(v baresipLogView) bool {
		return len(v.Closed) > 0 && strings.HasPrefix(v.Closed[len(v.Closed)-1].Reason, "rtp stream error")
	})
	t.Logf("bob: calls closed per the log: %+v", v.Closed)
	// The 488 call never had media: bob's second stats block is call 2's.
	if st := bob.WaitStats(t, 2); st.RxPackets == 0 || st.HaveRTCP {
		t.Errorf("bob: call 2 stats %+v: want RTP received and no RTCP yet (carol died after ~1 s)", st)
	}
}
