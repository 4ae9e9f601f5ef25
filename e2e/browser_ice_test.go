//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// TestBrowserICEGatherCap: the peers hand the softphone a STUN server that
// never answers (its packets are dropped inside the namespace), as on a
// network that blocks UDP. Without the page's cap on ICE gathering, the
// browser waits for the STUN transaction to time out (10–40 s) before the
// INVITE leaves; with it, the call rings within a second of the click and
// connects over the host candidates.
func TestBrowserICEGatherCap(t *testing.T) {
	if os.Getenv(browserInNetnsEnv) != "1" {
		runBrowserSuiteInNetns(t, "TestBrowserICEGatherCap")
		return
	}
	iptables := requireTool(t, "iptables", "iptables")
	const stun = browserAddr + ":3478"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// This process runs inside the test's namespace: the rule is its own.
	if out, err := exec.CommandContext(ctx, iptables, "-A", "OUTPUT", "-p", "udp", "-d", browserAddr,
		"--dport", "3478", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}

	ice := []string{"--ice-servers", "stun:" + stun}
	p1 := startPeerOpts(t, peerOpts{name: "peer1", args: ice})
	p2 := startPeerOpts(t, peerOpts{name: "peer2", args: append(ice, "--join", p1.URL+"/")})
	waitJoined(t, p1, p2)
	var cfg struct {
		ICEServers []struct {
			URLs []string `json:"urls"`
		} `json:"iceServers"`
	}
	if code, body := get(t, p1.URL+"/api/config"); code != 200 || json.Unmarshal(body, &cfg) != nil {
		t.Fatalf("/api/config: %d %s", code, body)
	}
	if len(cfg.ICEServers) != 1 || !slices.Contains(cfg.ICEServers[0].URLs, "stun:"+stun) {
		t.Fatalf("/api/config iceServers = %+v, want stun:%s", cfg.ICEServers, stun)
	}

	a := newBrowser(t, "A").open(t, "A", p1.URL+"/")
	b := newBrowser(t, "B").open(t, "B", p2.URL+"/")
	for _, p := range []struct {
		tb   *tab
		name string
	}{{a, "ice-alice"}, {b, "ice-bob"}} {
		p.tb.waitFor(t, "the page proposes a name", func(st phoneState) bool {
			return st.Name != "" && !slices.Contains(st.Missing, "#join")
		})
		p.tb.typeInto(t, "#name", p.name)
		p.tb.click(t, "#join")
		p.tb.waitFor(t, "#reg-state registered", func(st phoneState) bool { return st.Reg == "registered" })
	}

	a.typeInto(t, "#dial", "ice-bob")
	a.click(t, "#call")
	b.waitCall(t, "incoming")
	m := evalIn[perfMarks](t, a, perfMarksJS)
	ringing := ms(m.Ringing - m.Click)
	t.Logf("with a STUN server that never answers: click→ringing %s", ringing)
	if m.Ringing < 0 || ringing > time.Second {
		t.Fatalf("click→ringing %s (marks %+v): the page waited for ICE gathering", ringing, m)
	}
	b.click(t, "#answer")
	a.waitCall(t, "connected")
	b.waitCall(t, "connected")
	a.waitFor(t, "inbound audio packets", func(st phoneState) bool { return num(st.Packets) > 0 })
	a.click(t, "#hangup")
	b.waitCall(t, "ended", "idle")
}
