package sip

import (
	"strings"
	"testing"
)

func TestPeerHostRoundTrip(t *testing.T) {
	for _, id := range []string{otherPeer, newFakeLocator().ID()} {
		h, err := PeerHost(id)
		if err != nil {
			t.Fatalf("PeerHost(%s): %v", id, err)
		}
		label := strings.TrimSuffix(h, peerDomain)
		if len(label) > 63 || label != strings.ToLower(label) {
			t.Errorf("PeerHost(%s) = %q: the label must be one lower-case DNS label", id, h)
		}
		// Twice each: the second answer comes from nodeNames.
		for _, host := range []string{h, strings.ToUpper(h), h, strings.ToUpper(h)} {
			got, ok := NodeOfHost(host)
			if !ok || got != id {
				t.Errorf("NodeOfHost(%q) = %q, %v; want %s", host, got, ok, id)
			}
		}
	}
}

// TestNodeNamesBounded: the cache of decoded names starts over when full.
func TestNodeNamesBounded(t *testing.T) {
	c := &nameCache{m: map[string]string{}}
	for i := range nodeNamesMax + 10 {
		c.put(strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26), "id")
	}
	if n := len(c.m); n > nodeNamesMax {
		t.Errorf("the cache holds %d names, over its %d", n, nodeNamesMax)
	}
}

func TestNodeOfHostRejects(t *testing.T) {
	h, _ := PeerHost(otherPeer)
	for _, host := range []string{
		"", "p2psip.invalid", ".p2psip.invalid", "10.0.0.1", "example.com", "abc123.invalid",
		"k51qzi5uqu5d.p2psip.invalid",                        // truncated
		otherPeer + ".p2psip.invalid",                        // base58: not a host name
		strings.TrimSuffix(h, peerDomain) + ".other.invalid", // another suffix
		"x" + h, // not the base36 prefix
	} {
		if id, ok := NodeOfHost(host); ok {
			t.Errorf("NodeOfHost(%q) = %q, true; want false", host, id)
		}
	}
}

// FuzzNodeOfHost: any host either names no node, or names one whose
// PeerHost maps back to it.
func FuzzNodeOfHost(f *testing.F) {
	h, _ := PeerHost(otherPeer)
	for _, s := range []string{h, strings.ToUpper(h), "abc.invalid", "", ".p2psip.invalid", "k.p2psip.invalid", "K51" + h[3:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		id, ok := NodeOfHost(host)
		if !ok {
			return
		}
		back, err := PeerHost(id)
		if err != nil {
			t.Fatalf("NodeOfHost(%q) = %s, which PeerHost refuses: %v", host, id, err)
		}
		if again, ok := NodeOfHost(back); !ok || again != id {
			t.Fatalf("round trip of %q: %s → %s → %s", host, id, back, again)
		}
	})
}
