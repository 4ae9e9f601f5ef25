package overlay

import (
	"slices"
	"testing"
	"time"

	"github.com/multiformats/go-base32"
)

// TestLookupCacheSeesWrites checks that the lookup cache never hides a
// write that reached this node: its own registrations, and a value another
// peer stored here. A one-hour TTL makes any stale answer show.
func TestLookupCacheSeesWrites(t *testing.T) {
	tn := newTestNet(t, 2, func(c *Config) { c.LookupCacheTTL = time.Hour })
	a, b := tn.nodes[0], tn.nodes[1]
	const aor = "sip:carol@test.overlay"
	key := mustKey(t)
	register(t, b, aor, key, binding("d1", "sip:carol@192.0.2.1", time.Hour))
	if got := lookupLive(t, a, aor); !slices.Equal(got, []string{"sip:carol@192.0.2.1"}) {
		t.Fatalf("first lookup: %v", got)
	}
	// b's update is stored at a (the only other peer): a's cache drops it.
	register(t, b, aor, key, binding("d2", "sip:carol@192.0.2.2", time.Hour))
	if got := lookupLive(t, a, aor); len(got) != 2 {
		t.Fatalf("after b's update a sees %v, want both bindings", got)
	}
	// a's own write is seen at once too.
	register(t, a, aor, key, binding("d3", "sip:carol@192.0.2.3", time.Hour))
	if got := lookupLive(t, a, aor); len(got) != 3 {
		t.Fatalf("after a's own update a sees %v, want three bindings", got)
	}
	// A returned record is the caller's to change.
	reg, err := a.Lookup(ctxT(t), aor)
	if err != nil {
		t.Fatal(err)
	}
	reg.Bindings = reg.Bindings[:0]
	if got := lookupLive(t, a, aor); len(got) != 3 {
		t.Fatalf("cached record changed through a returned copy: %v", got)
	}
}

func TestLookupCacheExpires(t *testing.T) {
	c := newLookupCache(50 * time.Millisecond)
	p := &parsedReg{reg: &Registration{AOR: "sip:x@test.overlay"}}
	now := time.Now()
	c.put("sip:x@test.overlay", p, now, c.gen("sip:x@test.overlay"))
	if c.get("sip:x@test.overlay", now.Add(10*time.Millisecond)) != p {
		t.Fatal("fresh entry missed")
	}
	if c.get("sip:x@test.overlay", now.Add(50*time.Millisecond)) != nil {
		t.Fatal("entry outlived its TTL")
	}
	off := newLookupCache(-1)
	off.put("sip:x@test.overlay", p, now, 0)
	if off.get("sip:x@test.overlay", now) != nil {
		t.Fatal("disabled cache answered")
	}
	// A lookup that read before a write does not fill the cache.
	g := c.gen("sip:y@test.overlay")
	c.drop("sip:y@test.overlay")
	c.put("sip:y@test.overlay", p, now, g)
	if c.get("sip:y@test.overlay", now) != nil {
		t.Fatal("a read from before a write was cached")
	}
}

// TestAppendBase32: dropKey decodes datastore keys as go-base32 does.
func TestAppendBase32(t *testing.T) {
	for _, key := range []string{"", "a", "/sip/reg/sip:alice@test.overlay", "/sip/svc/proxy/12D3KooW", string(make([]byte, 300))} {
		enc := base32.RawStdEncoding.EncodeToString([]byte(key))
		got, ok := appendBase32(nil, enc)
		if !ok || string(got) != key {
			t.Errorf("appendBase32(%q) = %q, %v; want %q", enc, got, ok, key)
		}
	}
	if _, ok := appendBase32(nil, "abc"); ok {
		t.Error("lower case accepted")
	}
}
