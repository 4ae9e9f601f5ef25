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
	if got, refresh := c.get("sip:x@test.overlay", now.Add(10*time.Millisecond)); got != p || refresh {
		t.Fatalf("fresh entry: %v, refresh %v", got, refresh)
	}
	if got, _ := c.get("sip:x@test.overlay", now.Add(50*time.Millisecond)); got != nil {
		t.Fatal("entry outlived its TTL")
	}
	off := newLookupCache(-1)
	off.put("sip:x@test.overlay", p, now, 0)
	if got, _ := off.get("sip:x@test.overlay", now); got != nil {
		t.Fatal("disabled cache answered")
	}
	// A lookup that read before a write does not fill the cache.
	g := c.gen("sip:y@test.overlay")
	c.drop("sip:y@test.overlay")
	c.put("sip:y@test.overlay", p, now, g)
	if got, _ := c.get("sip:y@test.overlay", now); got != nil {
		t.Fatal("a read from before a write was cached")
	}
}

// TestLookupCacheRefreshAhead: past half its TTL an entry is still
// served, and exactly one get asks for a refresh; a refresh that found
// nothing drops it, unless a write came first.
func TestLookupCacheRefreshAhead(t *testing.T) {
	const aor = "sip:x@test.overlay"
	c := newLookupCache(100 * time.Millisecond)
	p := &parsedReg{reg: &Registration{AOR: aor}}
	now := time.Now()
	c.put(aor, p, now, c.gen(aor))
	if got, refresh := c.get(aor, now.Add(60*time.Millisecond)); got != p || !refresh {
		t.Fatalf("past half the TTL: %v, refresh %v; want the entry and a refresh", got, refresh)
	}
	if got, refresh := c.get(aor, now.Add(70*time.Millisecond)); got != p || refresh {
		t.Fatalf("second get: %v, refresh %v; want the entry, no second refresh", got, refresh)
	}
	// The refresh's answer restarts the entry's age and its refresh.
	later := now.Add(60 * time.Millisecond)
	p2 := &parsedReg{reg: &Registration{AOR: aor}}
	c.put(aor, p2, later, c.gen(aor))
	if got, refresh := c.get(aor, now.Add(100*time.Millisecond)); got != p2 || refresh {
		t.Fatalf("after the refresh: %v, refresh %v; want the new entry", got, refresh)
	}
	if _, refresh := c.get(aor, later.Add(60*time.Millisecond)); !refresh {
		t.Fatal("the refreshed entry is not refreshed again")
	}
	// A refresh that found no record drops the entry...
	g := c.gen(aor)
	c.forget(aor, g)
	if got, _ := c.get(aor, later.Add(61*time.Millisecond)); got != nil {
		t.Fatal("the entry outlived a refresh that found no record")
	}
	// ...but not one a write put there after the refresh began.
	g = c.gen(aor)
	c.drop(aor)
	c.put(aor, p, later, c.gen(aor))
	c.forget(aor, g)
	if got, _ := c.get(aor, later); got != p {
		t.Fatal("a stale refresh dropped an entry written after it began")
	}
}

// TestLookupRefreshesAhead: a node whose cached record is in use fetches
// it again before it lapses, so that Lookup keeps answering from the
// cache past the TTL of the first answer (no call waits for the DHT).
func TestLookupRefreshesAhead(t *testing.T) {
	const ttl = 2 * time.Second
	tn := newTestNet(t, 2, func(c *Config) { c.LookupCacheTTL = ttl })
	a, b := tn.nodes[0], tn.nodes[1]
	const aor = "sip:dora@test.overlay"
	register(t, b, aor, mustKey(t), binding("d1", "sip:dora@192.0.2.1", time.Hour))
	lookupLive(t, a, aor)
	at := func() time.Time {
		a.lookups.mu.Lock()
		defer a.lookups.mu.Unlock()
		return a.lookups.m[aor].at
	}
	first := at()
	if first.IsZero() {
		t.Fatal("the first lookup was not cached")
	}
	time.Sleep(ttl*3/4 - time.Since(first))
	lookupLive(t, a, aor) // served, and starts the refresh
	deadline := time.Now().Add(10 * time.Second)
	for !at().After(first) {
		if time.Now().After(deadline) {
			t.Fatal("the entry was not refreshed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Until(first.Add(ttl + 100*time.Millisecond)))
	if got, _ := a.lookups.get(aor, time.Now()); got == nil {
		t.Fatal("the entry lapsed at the first answer's TTL although it was refreshed")
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
