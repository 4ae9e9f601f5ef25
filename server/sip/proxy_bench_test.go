package sip

import "testing"

// BenchmarkProxyInvite runs an INVITE to an AOR on another peer through
// the proxy (targets, fork, branch, relayed 200) with sipgo's transport
// faked: the per-call CPU and allocations of our proxy code.
func BenchmarkProxyInvite(b *testing.B) {
	ts := newTestService(b, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;lr>")
	lines := invite("sip:bob@"+testDomain, "Max-Forwards: 70")
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		req := parse(b, lines...)
		ts.forwarded.reqs = ts.forwarded.reqs[:0]
		b.StartTimer()
		if res := ts.handle(req); len(res) != 2 {
			b.Fatalf("%d responses", len(res))
		}
	}
}
