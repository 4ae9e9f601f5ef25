//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Relay discovery (issue 11 item 3): a peer with the relay role announces
// itself in the overlay; another peer finds it, probes it and lists it in
// /api/config's iceServers with a credential the relay minted over the
// overlay. coturn's turnutils_uclient then relays data through the relay
// with exactly that credential, over UDP and TCP. Everything runs in a
// namespace with only lo (see newTurnEnv); loopback targets need
// --relay-private-peers.

type apiICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
	Expires    int64    `json:"expires"`
}

// iceServers reads GET /api/config's iceServers from p inside the namespace.
func (e *turnEnv) iceServers(t *testing.T, p *peer) []apiICEServer {
	t.Helper()
	curl := requireTool(t, "curl", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	argv := append(append([]string(nil), e.ns...), curl, "-sk", p.URL+"/api/config")
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("GET %s/api/config: %v", p.URL, err)
	}
	var cfg struct {
		ICEServers []apiICEServer `json:"iceServers"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("/api/config: %v: %s", err, out)
	}
	return cfg.ICEServers
}

// overlayRelay waits until p's /api/config lists a TURN server with a
// credential, and returns it.
func (e *turnEnv) overlayRelay(t *testing.T, p *peer) apiICEServer {
	t.Helper()
	var found apiICEServer
	eventually(t, 45*time.Second, 500*time.Millisecond, p.Name+" lists the overlay relay", func() (bool, string) {
		servers := e.iceServers(t, p)
		for _, s := range servers {
			if s.Username != "" && slices.ContainsFunc(s.URLs, func(u string) bool { return strings.HasPrefix(u, "turn:") }) {
				found = s
				return true, ""
			}
		}
		return false, "iceServers: " + jsonString(servers)
	})
	return found
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRelayDiscoveryICEServers(t *testing.T) {
	e := newTurnEnv(t)
	// No --relay-secret-file: the relay's secrets are random and in
	// memory, so only a credential the relay itself minted can work.
	relayPeer := startPeerOpts(t, peerOpts{name: "relay", wrapper: e.ns, args: []string{
		"--roles", "relay", "--turn", "127.0.0.1:3478", "--public-addr", "127.0.0.1",
		"--relay-ports", "49401-49600", "--relay-private-peers", "--sip", "", "--sips", ""}})
	user := startPeerOpts(t, peerOpts{name: "user", wrapper: e.ns, args: []string{
		"--join", relayPeer.URL + "/", "--sip", "", "--sips", ""}})

	s := e.overlayRelay(t, user)
	wantURLs := []string{"turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"}
	if !slices.Equal(s.URLs, wantURLs) {
		t.Errorf("urls %v, want %v (no turns: without a trusted certificate and a name)", s.URLs, wantURLs)
	}
	if !strings.Contains(s.Username, ":"+user.NodeID+"/") || s.Credential == "" {
		t.Errorf("the credential is not minted for the asking peer %s: %+v", user.NodeID, s)
	}
	if left := time.Until(time.Unix(s.Expires, 0)); left < 5*time.Minute || left > 11*time.Minute {
		t.Errorf("expires in %v, want about 10 minutes", left)
	}
	// The relay peer hands out its own relay too.
	if own := e.overlayRelay(t, relayPeer); !strings.Contains(own.Username, ":"+relayPeer.NodeID+"/") {
		t.Errorf("the relay peer's own entry: %+v", own)
	}

	// The user's peer counts the working relay and its probes.
	curl := requireTool(t, "curl", "curl")
	argv := append(append([]string(nil), e.ns...), curl, "-sk", user.URL+"/metrics")
	metrics, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for _, want := range []string{"p2psip_overlay_relays_working 1", `p2psip_overlay_relay_probes_total{result="ok"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// p2psip status tells the operator both sides: the relay's own
	// self-test, and the relays a peer hands out.
	eventually(t, 20*time.Second, 250*time.Millisecond, "the relay's status shows its self-test passed", func() (bool, string) {
		res := relayPeer.cli(t, "status", "--peer", relayPeer.URL)
		return res.Code == 0 && strings.Contains(res.Stdout, "self-test ok"), res.String()
	})
	if res := user.cli(t, "status", "--peer", user.URL); !regexp.MustCompile(`overlay relays:\s+1 working\n\s+relay\s+` + relayPeer.NodeID).MatchString(res.Stdout) {
		t.Errorf("the user's status does not list the working relay:\n%s", res)
	}

	base := []string{"-u", s.Username, "-w", s.Credential, "-e", relayPeerAddr, "-r", relayPeerPort,
		"-n", "10", "-m", "1", "-l", "160", "-z", "5", "-p", "3478"}
	t.Run("UDP", func(t *testing.T) {
		requireDelivered(t, e.run(t, append(base, "127.0.0.1")...), 20)
	})
	t.Run("TCP", func(t *testing.T) {
		requireDelivered(t, e.run(t, append(append([]string{"-t"}, base...), "127.0.0.1")...), 20)
	})
	t.Run("ForgedPassword", func(t *testing.T) {
		forged := slices.Clone(base)
		forged[3] = wrongPassword(s.Credential)
		if out := e.run(t, append(forged, "127.0.0.1")...); !strings.Contains(out, "Cannot complete Allocation") {
			t.Fatalf("a forged credential was accepted:\n%s", out)
		}
	})
	// The relay stops: within a probe round the user's peer no longer
	// hands it out.
	relayPeer.stop(t)
	eventually(t, 90*time.Second, time.Second, "the dead relay is dropped", func() (bool, string) {
		for _, s := range e.iceServers(t, user) {
			if s.Username != "" {
				return false, "still listed: " + jsonString(s)
			}
		}
		return true, ""
	})
}
