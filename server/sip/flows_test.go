package sip

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// flowSizes is the length of each index.
func (f *flows) sizes() [6]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return [6]int{len(f.byAOR), len(f.byContact), len(f.byHP), len(f.bySrc), len(f.perSrc), f.n}
}

func testFlow(i int, source string, expires time.Time) *flow {
	return &flow{aor: fmt.Sprintf("sip:u%d@example.org", i), instance: "i", contact: fmt.Sprintf("sip:u%d@10.0.%d.%d:5060", i, i/250, i%250),
		source: source, transport: "UDP", expires: expires}
}

// TestFlowsExpire: flows that expire without an unregister (UDP phones
// that vanish, a client registering name after name) leave every index.
func TestFlowsExpire(t *testing.T) {
	f := newFlows(maxFlowsPerSource)
	soon := time.Now().Add(time.Hour)
	for i := range 3000 {
		if err := f.put(testFlow(i, fmt.Sprintf("10.1.%d.%d:5060", i/250, i%250), soon)); err != nil {
			t.Fatal(err)
		}
	}
	if s := f.sizes(); s != [6]int{3000, 3000, 3000, 3000, 3000, 3000} {
		t.Fatalf("indexes %v", s)
	}
	// An hour and a minute later: every flow has expired.
	f.mu.Lock()
	for _, m := range f.byAOR {
		for _, fl := range m {
			fl.expires = time.Now().Add(-time.Second)
		}
	}
	f.swept = f.swept.Add(-flowSweepEvery)
	f.mu.Unlock()
	if fl := f.bySource("10.1.0.1:5060"); fl != nil {
		t.Fatal("an expired flow was found")
	}
	if err := f.put(testFlow(0, "10.1.0.0:5060", soon)); err != nil {
		t.Fatal(err)
	}
	if s := f.sizes(); s != [6]int{1, 1, 1, 1, 1, 1} {
		t.Fatalf("after expiry, indexes %v", s)
	}

	// Names registered one after another, each gone before long, from
	// sources that change: the indexes stay bounded between sweeps by
	// the flows' doubling.
	f = newFlows(maxFlowsPerSource)
	past := time.Now().Add(-time.Second)
	for i := range 20_000 {
		if err := f.put(testFlow(i, fmt.Sprintf("10.2.%d.%d:%d", i/250%250, i%250, 1024+i/62500), past)); err != nil {
			t.Fatal(err)
		}
		if s := f.sizes(); s[0] > minFlowSweepAt || s[4] > minFlowSweepAt {
			t.Fatalf("after %d expired flows, indexes %v", i+1, s)
		}
	}
}

// TestFlowsCap: one source holds at most maxFlowsPerSource live flows; a
// refresh of one it holds, another source and an expired flow's room are
// fine.
func TestFlowsCap(t *testing.T) {
	f := newFlows(maxFlowsPerSource)
	const src = "192.0.2.1:5060"
	soon := time.Now().Add(time.Hour)
	for i := range maxFlowsPerSource {
		if err := f.put(testFlow(i, src, soon)); err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
	}
	over := testFlow(maxFlowsPerSource, src, soon)
	if err := f.admit(over.aor, over.instance, src); !errors.Is(err, errTooManyFlows) {
		t.Fatalf("admit over the cap: %v", err)
	}
	if err := f.put(over); !errors.Is(err, errTooManyFlows) {
		t.Fatalf("put over the cap: %v", err)
	}
	if err := f.put(testFlow(3, src, soon.Add(time.Minute))); err != nil {
		t.Fatalf("refresh at the cap: %v", err)
	}
	if err := f.put(testFlow(1000, "192.0.2.1:5061", soon)); err != nil {
		t.Fatalf("another source: %v", err)
	}
	f.mu.Lock()
	f.get(testFlow(5, "", soon).aor, "i").expires = time.Now().Add(-time.Second)
	f.mu.Unlock()
	if err := f.put(over); err != nil {
		t.Fatalf("put with an expired flow's room: %v", err)
	}
	if len(f.all(testFlow(5, "", soon).aor)) != 0 || f.byContactURI(testFlow(5, "", soon).contact) != nil {
		t.Fatal("the expired flow is still there")
	}
	if gone := f.dropSource("UDP", src); len(gone) != maxFlowsPerSource {
		t.Fatalf("dropSource dropped %d", len(gone))
	}
	if s := f.sizes(); s != [6]int{1, 1, 1, 1, 1, 1} {
		t.Fatalf("indexes %v", s)
	}
}

// TestRegisterFlowCap: the REGISTER over a source's cap gets a 503 with
// the reason, and its binding is not written to the overlay.
func TestRegisterFlowCap(t *testing.T) {
	ts := newTestService(t, nil)
	for i := range maxFlowsPerSource {
		user := fmt.Sprintf("u%d", i)
		if c := codes(ts.handle(parse(t, register(user, "<sip:"+user+"@127.0.0.1:5099>")...))); c[0] != 200 {
			t.Fatalf("register %s: %v", user, c)
		}
	}
	res := last(t, ts.handle(parse(t, register("over", "<sip:over@127.0.0.1:5099>")...)))
	if res.StatusCode != 503 || !strings.Contains(res.Reason, "too many registrations") {
		t.Fatalf("over the cap: %d %s", res.StatusCode, res.Reason)
	}
	if _, err := ts.loc.Lookup(t.Context(), "sip:over@"+testDomain); err == nil {
		t.Fatal("the refused REGISTER's binding is in the overlay")
	}
	// A refresh of a binding the source holds still goes through.
	if c := codes(ts.handle(parse(t, register("u0", "<sip:u0@127.0.0.1:5099>")...))); c[0] != 200 {
		t.Fatalf("refresh at the cap: %v", c)
	}
}

// BenchmarkFlowsPutOneSource: many registrations from one source (a load
// generator, a gateway) cost the same per put however many it holds.
func BenchmarkFlowsPutOneSource(b *testing.B) {
	for _, limit := range []int{-1, maxFlowsPerSource} {
		b.Run(fmt.Sprintf("cap=%d", limit), func(b *testing.B) {
			f := newFlows(limit)
			exp := time.Now().Add(time.Hour)
			for i := 0; b.Loop(); i++ {
				aor := fmt.Sprintf("sip:u%d@%s", i, testDomain)
				if err := f.admit(aor, "i", "127.0.0.1:5080"); err != nil {
					continue
				}
				_ = f.put(&flow{aor: aor, instance: "i", contact: "sip:u@127.0.0.1:5080", source: "127.0.0.1:5080",
					transport: "UDP", expires: exp})
			}
		})
	}
}

// Without a cap, UDP flows stay out of the per-source sets (one load
// generator would grow one huge set); connection flows stay in, so that
// a closed connection still drops its bindings.
func TestFlowsUncappedUDP(t *testing.T) {
	f := newFlows(-1)
	soon := time.Now().Add(time.Hour)
	for i := range 100 {
		if err := f.put(testFlow(i, "192.0.2.1:5060", soon)); err != nil {
			t.Fatal(err)
		}
	}
	tcp := testFlow(100, "192.0.2.2:40000", soon)
	tcp.transport = "TCP"
	if err := f.put(tcp); err != nil {
		t.Fatal(err)
	}
	if s := f.sizes(); s != [6]int{101, 101, 101, 2, 1, 101} {
		t.Fatalf("indexes %v", s)
	}
	if gone := f.dropSource("TCP", "192.0.2.2:40000"); len(gone) != 1 || gone[0] != tcp {
		t.Fatalf("dropSource dropped %v", gone)
	}
	f.remove(testFlow(7, "", soon).aor, "i")
	if s := f.sizes(); s != [6]int{99, 99, 99, 1, 0, 99} {
		t.Fatalf("indexes %v", s)
	}
}
