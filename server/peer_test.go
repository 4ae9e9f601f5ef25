package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootPeer runs a whole peer in-process from its command line, as the
// binary would, and returns its URL and a stop function that reports the
// exit status.
func bootPeer(t *testing.T, args ...string) (url string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	base := []string{"--data", t.TempDir(), "--https", "127.0.0.1:0", "--p2p-host", "127.0.0.1", "--sip", "127.0.0.1:0", "--sips", "127.0.0.1:0", "--mdns=false", "--log-level", "warn"}
	go func() {
		done <- run(ctx, append(base, args...), func(string) string { return "" }, pw, io.Discard)
		_ = pw.Close()
	}()
	ready := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`softphone:\s+(\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}()
	select {
	case url = <-ready:
	case code := <-done:
		t.Fatalf("peer exited with %d before it was ready", code)
	case <-time.After(20 * time.Second):
		t.Fatal("peer not ready within 20 s")
	}
	stopped := false
	stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(5 * time.Second):
			t.Fatal("peer did not stop within 5 s")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return url, stop
}

var insecure = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
}}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := insecure.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestPeerBootsAndStops(t *testing.T) {
	url, stop := bootPeer(t)
	var info struct {
		Overlay string `json:"overlay"`
		NodeID  string `json:"node_id"`
		Addrs   []string
	}
	if code := getJSON(t, url+".well-known/p2psip", &info); code != 200 || info.Overlay != "p2psip.local" || info.NodeID == "" {
		t.Fatalf("well-known: %d %+v", code, info)
	}
	if !slicesContain(info.Addrs, "/tls/ws/") {
		t.Fatalf("no libp2p-over-HTTPS address advertised: %v", info.Addrs)
	}
	if code := getJSON(t, url+"healthz", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestJoinThroughHTTPSPortOnly: peer B joins A using only A's HTTPS URL,
// with A's TCP and QUIC addresses unusable, so the overlay connection
// must run through libp2p over WebSocket on the HTTPS port.
func TestJoinThroughHTTPSPortOnly(t *testing.T) {
	urlA, _ := bootPeer(t)
	var infoA struct {
		NodeID string `json:"node_id"`
	}
	getJSON(t, urlA+".well-known/p2psip", &infoA)
	// Join via a bootstrap multiaddr that names only the HTTPS port.
	wss := strings.Replace(strings.TrimSuffix(urlA, "/"), "https://127.0.0.1:", "/ip4/127.0.0.1/tcp/", 1) + "/tls/ws/p2p/" + infoA.NodeID
	urlB, _ := bootPeer(t, "--bootstrap", wss)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Peers []struct{ ID string }
		}
		getJSON(t, urlB+"api/overlay", &st)
		if len(st.Peers) == 1 && st.Peers[0].ID == infoA.NodeID {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("B did not join A through the HTTPS port")
}

func slicesContain(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestPrivateOverlay: peers with the same swarm key join; a peer without
// it cannot.
func TestPrivateOverlay(t *testing.T) {
	dir := t.TempDir()
	psk := dir + "/swarm.key"
	key := "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.Repeat("ab", 32) + "\n"
	if err := os.WriteFile(psk, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	urlA, _ := bootPeer(t, "--psk-file", psk)
	urlB, _ := bootPeer(t, "--psk-file", psk, "--join", urlA)
	urlC, _ := bootPeer(t, "--join", urlA)
	peersOf := func(url string) int {
		var st struct{ Peers []struct{ ID string } }
		getJSON(t, url+"api/overlay", &st)
		return len(st.Peers)
	}
	deadline := time.Now().Add(15 * time.Second)
	for peersOf(urlB) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if peersOf(urlB) != 1 {
		t.Fatal("B did not join A's private overlay")
	}
	time.Sleep(2 * time.Second) // C has had its tries
	if n := peersOf(urlC); n != 0 {
		t.Fatalf("a peer without the key joined the private overlay (%d peers)", n)
	}
}
