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

// TestSippScenarios checks the scenario files in testdata/sipp against sipp
// itself (a registrar that challenges once, a record-route-aware UAS, a UAS
// that rejects), so that a failure in the tests below is the peer's, not a
// broken scenario's. No p2psip peer is involved.
func TestSippScenarios(t *testing.T) {
	t.Run("register+unregister", func(t *testing.T) {
		t.Parallel()
		for _, sc := range []string{"register.xml", "unregister.xml"} {
			srv := startSipp(t, sippOpts{scenario: "reg_uas.xml"})
			srv.waitListening(t)
			remote := fmt.Sprintf("127.0.0.1:%d", srv.localPort)
			requireSippOK(t, sc, runSipp(t, sippOpts{scenario: sc, remote: remote, user: "alice", password: "secret",
				keys: map[string]string{"contact": "*"}}))
			requireSippOK(t, "reg_uas for "+sc, srv.wait(t))
		}
	})
	t.Run("uac_rr+uas_rr", func(t *testing.T) {
		t.Parallel()
		uas := startSipp(t, sippOpts{scenario: "uas_rr.xml", calls: 2})
		uas.waitListening(t)
		remote := fmt.Sprintf("127.0.0.1:%d", uas.localPort)
		requireSippOK(t, "uac_rr", runSipp(t, sippOpts{scenario: "uac_rr.xml", remote: remote, service: "bob", calls: 2}))
		requireSippOK(t, "uas_rr", uas.wait(t))
	})
	for _, code := range []string{"404", "480"} {
		t.Run("uac_unavailable/"+code, func(t *testing.T) {
			t.Parallel()
			uas := startSipp(t, sippOpts{scenario: rejectScenario(t, code)})
			uas.waitListening(t)
			remote := fmt.Sprintf("127.0.0.1:%d", uas.localPort)
			requireSippOK(t, "uac_unavailable", runSipp(t, sippOpts{scenario: "uac_unavailable.xml", remote: remote, service: "bob"}))
			requireSippOK(t, "uas_reject", uas.wait(t))
		})
	}
	t.Run("uac_unavailable rejects a 486", func(t *testing.T) {
		t.Parallel()
		uas := startSipp(t, sippOpts{scenario: rejectScenario(t, "486")})
		uas.waitListening(t)
		remote := fmt.Sprintf("127.0.0.1:%d", uas.localPort)
		if r := runSipp(t, sippOpts{scenario: "uac_unavailable.xml", remote: remote, service: "bob",
			args: []string{"-recv_timeout", "3000"}}); r.Code == 0 {
			t.Errorf("uac_unavailable.xml accepted a 486:\n%s", r)
		}
		uas.wait(t)
	})
}

// rejectScenario writes uas_reject.xml with its status code set to code.
func rejectScenario(t *testing.T, code string) string {
	t.Helper()
	b, err := os.ReadFile(sippScenario("uas_reject.xml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "uas_reject_"+code+".xml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "SIP/2.0 CODE ", "SIP/2.0 "+code+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testSIPRegister: sipp registers alice, who has digest credentials on
// the peer (--users), over transport, and the contact is visible through
// the CLI; a wrong password is refused.
func testSIPRegister(t *testing.T, transport string) {
	p := startPeer(t, "--users", usersFile(t, "alice:secret"))
	addr := p.sipAddr(t, transport)
	aor := "sip:alice@" + overlayDomain
	port := freeSIPPort(t)
	contact := fmt.Sprintf("alice@127.0.0.1:%d", port)
	sippT := map[string]string{"udp": "u1", "tcp": "t1"}[transport]

	// Over TCP the binding belongs to the connection (it goes when sipp
	// closes it), so sipp holds the call, and the connection, open for 10 s
	// (-d: the pause after the 200) while the test looks the binding up.
	reg := startSipp(t, sippOpts{scenario: "register.xml", remote: addr, transport: sippT, localPort: port,
		user: "alice", password: "secret", args: []string{"-d", "10000"}})
	eventually(t, 9*time.Second, 300*time.Millisecond, "lookup shows alice's contact", func() (bool, string) {
		rg, res, found := lookupAOR(t, p, aor)
		return found && rg.hasContact(contact), res.String()
	})
	requireSippOK(t, "REGISTER alice over "+transport, reg.wait(t))

	if transport != "udp" {
		return
	}
	// alice's password is "secret"; another is refused and leaves the
	// binding alone.
	bad := runSipp(t, sippOpts{scenario: "register.xml", remote: addr, localPort: freeSIPPort(t),
		user: "alice", password: "wrong", args: []string{"-recv_timeout", "5000"}})
	if bad.Code == 0 {
		t.Errorf("REGISTER alice with a wrong password succeeded:\n%s", bad)
	}
	// Expires: 0 for the contact removes it.
	requireSippOK(t, "unregister alice", runSipp(t, sippOpts{scenario: "unregister.xml", remote: addr, localPort: port,
		user: "alice", password: "secret",
		keys: map[string]string{"contact": fmt.Sprintf("<sip:%s;transport=UDP>", contact)}}))
	eventually(t, 10*time.Second, 300*time.Millisecond, "alice's contact gone after Expires: 0", func() (bool, string) {
		rg, res, found := lookupAOR(t, p, aor)
		return !found || !rg.hasContact(contact), res.String()
	})
}

func TestSIPRegisterUDP(t *testing.T) { testSIPRegister(t, "udp") }
func TestSIPRegisterTCP(t *testing.T) { testSIPRegister(t, "tcp") }

// TestSIPRegisterWildcard: Contact: * with Expires: 0 removes every binding.
func TestSIPRegisterWildcard(t *testing.T) {
	p := startPeer(t)
	addr := p.sipAddr(t, "udp")
	aor := "sip:carol@" + overlayDomain
	for _, c := range []string{"<sip:carol@127.0.0.1:40001>", "<sip:carol@127.0.0.1:40002>"} {
		if rep := registerDigest(t, addr, "carol", overlayDomain, "carolpw", 3600, c); rep.Code != 200 {
			t.Fatalf("REGISTER carol %s: %s\n%s", c, rep.Status, rep.Raw)
		}
	}
	eventually(t, 10*time.Second, 300*time.Millisecond, "both of carol's contacts", func() (bool, string) {
		rg, res, found := lookupAOR(t, p, aor)
		return found && rg.hasContact(":40001") && rg.hasContact(":40002"), res.String()
	})
	if rep := registerDigest(t, addr, "carol", overlayDomain, "carolpw", 0, "*"); rep.Code != 200 {
		t.Fatalf("REGISTER carol Contact: * Expires: 0: %s\n%s", rep.Status, rep.Raw)
	}
	eventually(t, 10*time.Second, 300*time.Millisecond, "carol has no bindings", func() (bool, string) {
		rg, res, found := lookupAOR(t, p, aor)
		return !found || len(rg.Bindings) == 0, res.String()
	})
}

// TestSIPCallAcrossPeers: bob (a sipp UAS) registers through B; a sipp UAC
// calls sip:bob@p2psip.local through A. The INVITE goes A → B → bob by DHT
// lookup, every forwarding peer record-routes, and ACK and BYE follow the
// route set. After bob unregisters, a call gets 404 or 480.
func TestSIPCallAcrossPeers(t *testing.T) {
	a, b := joinedPair(t)
	aAddr, bAddr := a.sipAddr(t, "udp"), b.sipAddr(t, "udp")
	aor := "sip:bob@" + overlayDomain
	bobPort := freeSIPPort(t)
	bobContact := fmt.Sprintf("bob@127.0.0.1:%d", bobPort)

	requireSippOK(t, "bob registers through B", runSipp(t, sippOpts{scenario: "register.xml", remote: bAddr,
		localPort: bobPort, user: "bob", password: "bobpw"}))
	eventually(t, 10*time.Second, 300*time.Millisecond, "A's lookup finds bob", func() (bool, string) {
		rg, res, found := lookupAOR(t, a, aor)
		return found && rg.hasContact(bobContact), res.String()
	})

	for _, calls := range []int{1, 10} {
		t.Logf("--- %d call(s) A → B → bob", calls)
		// The UAS listens on the port bob registered from: B delivers to the
		// flow (source address) of the REGISTER.
		uas := startSipp(t, sippOpts{name: fmt.Sprintf("bob-uas-%d", calls), scenario: "uas_rr.xml",
			localPort: bobPort, calls: calls})
		uas.waitListening(t)
		uac := runSipp(t, sippOpts{name: fmt.Sprintf("uac-%d", calls), scenario: "uac_rr.xml", remote: aAddr,
			service: "bob", calls: calls, keys: map[string]string{"domain": overlayDomain}})
		uasRes := uas.wait(t)
		if uac.Code != 0 || uasRes.Code != 0 {
			t.Fatalf("%d call(s) through A to bob@B failed\n=== UAC:\n%s\n=== UAS (bob):\n%s", calls, uac, uasRes)
		}
		if !strings.Contains(uasRes.Messages, "Record-Route:") {
			t.Errorf("the INVITE reaching bob has no Record-Route (forwarding peers must record-route):\n%s", tail(uasRes.Messages, 4000))
		}
	}

	requireSippOK(t, "bob unregisters (Expires: 0)", runSipp(t, sippOpts{scenario: "unregister.xml", remote: bAddr,
		localPort: bobPort, user: "bob", password: "bobpw",
		keys: map[string]string{"contact": fmt.Sprintf("<sip:%s;transport=UDP>", bobContact)}}))
	eventually(t, 10*time.Second, 300*time.Millisecond, "A's lookup no longer finds bob's contact", func() (bool, string) {
		rg, res, found := lookupAOR(t, a, aor)
		return !found || !rg.hasContact(bobContact), res.String()
	})
	requireSippOK(t, "a call to bob after he left gets 404/480", runSipp(t, sippOpts{scenario: "uac_unavailable.xml",
		remote: aAddr, service: "bob", keys: map[string]string{"domain": overlayDomain},
		args: []string{"-recv_timeout", "10000"}}))
}

// TestSIPTakeover: alice registered through A (no --users entry: first come); a
// REGISTER for alice through B, whatever the credentials, gets 403: the AOR
// belongs to A's owner key. The overlay record is unchanged.
func TestSIPTakeover(t *testing.T) {
	a, b := joinedPair(t)
	aAddr, bAddr := a.sipAddr(t, "udp"), b.sipAddr(t, "udp")
	aor := "sip:alice@" + overlayDomain
	alicePort := freeSIPPort(t)
	aliceContact := fmt.Sprintf("alice@127.0.0.1:%d", alicePort)

	requireSippOK(t, "alice registers through A", runSipp(t, sippOpts{scenario: "register.xml", remote: aAddr,
		localPort: alicePort, user: "alice", password: "pw1"}))
	var before registration
	eventually(t, 10*time.Second, 300*time.Millisecond, "B's lookup finds alice", func() (bool, string) {
		rg, res, found := lookupAOR(t, b, aor)
		before = rg
		return found && rg.hasContact(aliceContact), res.String()
	})

	for _, pw := range []string{"pw1", "other"} {
		mallory := freeSIPPort(t)
		r := runSipp(t, sippOpts{name: "takeover-" + pw, scenario: "register_forbidden.xml", remote: bAddr,
			localPort: mallory, user: "alice", password: pw, args: []string{"-recv_timeout", "10000"}})
		if r.Code != 0 {
			t.Errorf("REGISTER alice through B with password %q: want 403\n%s", pw, r)
		}
		for _, p := range []*peer{a, b} {
			rg, res, found := lookupAOR(t, p, aor)
			switch {
			case !found:
				t.Errorf("after the takeover attempt, lookup through %s finds no alice:\n%s", p.Name, res)
			case !rg.hasContact(aliceContact) || rg.hasContact(fmt.Sprintf(":%d", mallory)):
				t.Errorf("after the takeover attempt, lookup through %s shows other contacts:\n%s", p.Name, res)
			case rg.Owner != before.Owner || rg.Seq != before.Seq || len(rg.Bindings) != len(before.Bindings):
				t.Errorf("the record changed (owner %s→%s, seq %d→%d, %d→%d bindings):\n%s",
					before.Owner, rg.Owner, before.Seq, rg.Seq, len(before.Bindings), len(rg.Bindings), res)
			}
		}
	}
}

// TestSIPErrors: the peer's answers to requests it cannot route, sent raw over
// UDP (and TCP for some).
func TestSIPErrors(t *testing.T) {
	// erin has credentials on this peer (--users), so her REGISTER is
	// challenged; names not listed are first-come without a password.
	p := startPeer(t, "--users", usersFile(t, "erin:erinpw"))
	udp, tcp := p.sipAddr(t, "udp"), p.sipAddr(t, "tcp")
	other := "sip:x@other.example"
	nobody := "sip:nobody@" + overlayDomain
	cases := []struct {
		name    string
		network string
		m       sipMsg
		want    []int
	}{
		{"OPTIONS to the peer", "udp", sipMsg{method: "OPTIONS", ruri: "sip:" + udp}, []int{200}},
		{"OPTIONS to the peer over TCP", "tcp", sipMsg{method: "OPTIONS", ruri: "sip:" + tcp + ";transport=tcp"}, []int{200}},
		{"INVITE Max-Forwards 0", "udp", sipMsg{method: "INVITE", ruri: nobody, headers: []string{"Max-Forwards: 0"}}, []int{483}},
		{"INVITE unknown AOR", "udp", sipMsg{method: "INVITE", ruri: nobody}, []int{404}},
		{"INVITE unknown AOR over TCP", "tcp", sipMsg{method: "INVITE", ruri: nobody}, []int{404}},
		{"MESSAGE unknown AOR", "udp", sipMsg{method: "MESSAGE", ruri: nobody,
			headers: []string{"Content-Type: text/plain"}, body: "hello"}, []int{404}},
		{"REGISTER other domain", "udp", sipMsg{method: "REGISTER", ruri: "sip:other.example", to: other, from: other,
			headers: []string{"Expires: 3600"}}, []int{403}},
		{"INVITE other domain", "udp", sipMsg{method: "INVITE", ruri: other}, []int{403}}, // not from a registered device
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := udp
			if c.network == "tcp" {
				addr = tcp
			}
			rep := sendSIP(t, c.network, addr, c.m)
			if !containsInt(c.want, rep.Code) {
				t.Errorf("%s %s: got %q, want %v\n%s", c.m.method, c.m.ruri, rep.Status, c.want, rep.Raw)
			}
		})
	}
	t.Run("REGISTER Expires 30 gets 423 Min-Expires 60", func(t *testing.T) {
		rep := registerDigest(t, udp, "dave", overlayDomain, "davepw", 30, "")
		if rep.Code != 423 || rep.header("Min-Expires") != "60" {
			t.Errorf("got %q (Min-Expires %q), want 423 with Min-Expires: 60\n%s", rep.Status, rep.header("Min-Expires"), rep.Raw)
		}
	})
	t.Run("REGISTER challenge", func(t *testing.T) {
		rep := sendSIP(t, "udp", udp, sipMsg{method: "REGISTER", ruri: "sip:" + overlayDomain,
			to: "sip:erin@" + overlayDomain, from: "sip:erin@" + overlayDomain, headers: []string{"Expires: 3600"}})
		ch := parseDigestChallenge(rep.header("WWW-Authenticate"))
		if rep.Code != 401 || ch["realm"] != overlayDomain || ch["nonce"] == "" ||
			!strings.Contains(ch["qop"], "auth") || (ch["algorithm"] != "" && !strings.EqualFold(ch["algorithm"], "MD5")) {
			t.Errorf("got %q, want 401 with a digest challenge (realm %q, MD5, qop=auth)\n%s", rep.Status, overlayDomain, rep.Raw)
		}
	})
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// usersFile writes a --users file of user:password lines.
func usersFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
