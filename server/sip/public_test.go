package sip

import (
	"github.com/emiago/sipgo/sip"
	"net/netip"
	"strings"
	"testing"
)

func TestHopKind(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::5")}
	for _, c := range []struct {
		addr, kind string
		allowed    bool // with AllowPrivateTargets
	}{
		{"192.0.2.10:5060", "", true},
		{"8.8.8.8:5060", "", true},
		{"[2001:db8::1]:5060", "", true},
		{"100.63.255.255:5060", "", true},
		{"127.0.0.1:5060", kindLoopback, true},
		{"127.0.0.2:6379", kindLoopback, true},
		{"[::1]:5060", kindLoopback, true},
		{"[::ffff:127.0.0.1]:5060", kindLoopback, true}, // IPv4-mapped
		{"10.0.0.1:5060", kindPrivate, true},
		{"172.16.0.1:5060", kindPrivate, true},
		{"172.31.255.255:5060", kindPrivate, true},
		{"192.168.1.1:80", kindPrivate, true},
		{"[::ffff:192.168.1.1]:80", kindPrivate, true},
		{"100.64.0.1:5060", kindPrivate, true}, // RFC 6598
		{"100.100.100.200:80", kindPrivate, true},
		{"[fc00::1]:5060", kindPrivate, true},
		{"[fd00:ec2::254]:80", kindPrivate, true},
		{"169.254.169.254:80", kindLinkLocal, true},
		{"[fe80::1]:5060", kindLinkLocal, true},
		{"[fe80::1%eth0]:5060", kindLinkLocal, true},
		{"203.0.113.5:8443", kindOwn, true},
		{"[2001:db8::5]:5060", kindOwn, true},
		{"0.0.0.0:5060", kindUnspecified, false},
		{"0.1.2.3:5060", kindUnspecified, false},
		{"[::]:5060", kindUnspecified, false},
		{"224.0.1.75:5060", kindMulticast, false},
		{"239.255.255.250:1900", kindMulticast, false},
		{"[ff02::1]:5060", kindMulticast, false},
		{"255.255.255.255:5060", kindBroadcast, false},
		{"atlanta.example:5060", kindInvalid, false},
		{"", kindInvalid, false},
	} {
		kind := hopKind(c.addr, own)
		if kind != c.kind {
			t.Errorf("hopKind(%q) = %q, want %q", c.addr, kind, c.kind)
		}
		if got := hopAllowed(kind, false); got != (c.kind == "") {
			t.Errorf("%q (%s): allowed %v by default", c.addr, kind, got)
		}
		if got := hopAllowed(kind, true); got != c.allowed {
			t.Errorf("%q (%s): allowed %v with AllowPrivateTargets, want %v", c.addr, kind, got, c.allowed)
		}
	}
}

// TestProxyRefusesPrivateTargets: the proxy role checks every hop RFC
// 3263 resolution gives (NAPTR, SRV, A, literal IPs) and refuses, with
// 403, a request whose hops are all loopback, private, link-local or its
// own; AllowPrivateTargets lifts that.
func TestProxyRefusesPrivateTargets(t *testing.T) {
	dns := dnsServer(t,
		`private.example. 60 IN A 10.1.2.3`,
		`public.example. 60 IN A 192.0.2.20`,
		// NAPTR → SRV → A, the first SRV target loopback, the second public.
		`mixed.example. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.mixed.example.`,
		`_sip._udp.mixed.example. 60 IN SRV 1 0 6379 lo.mixed.example.`,
		`_sip._udp.mixed.example. 60 IN SRV 2 0 5060 pub.mixed.example.`,
		`lo.mixed.example. 60 IN A 127.0.0.1`,
		`pub.mixed.example. 60 IN A 192.0.2.30`,
		// NAPTR → SRV → A, every target private or link-local.
		`inside.example. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.inside.example.`,
		`_sip._tcp.inside.example. 60 IN SRV 1 0 5060 a.inside.example.`,
		`_sip._tcp.inside.example. 60 IN SRV 2 0 80 b.inside.example.`,
		`a.inside.example. 60 IN A 192.168.0.10`,
		`b.inside.example. 60 IN A 169.254.169.254`,
	)
	ts := newTestService(t, nil)
	ts.cfg.Proxy = &ProxyConfig{FQDN: testDomain, Resolver: &Resolver{Server: dns}}
	ts.cfg.Aliases = []string{"192.0.2.77"}
	if c := codes(ts.handle(parse(t, register("caller", "<sip:caller@127.0.0.1:5099>")...))); len(c) != 1 || c[0] != 200 {
		t.Fatalf("REGISTER: %v", c)
	}
	n := 0
	for _, c := range []struct {
		ruri, dest  string // dest "" = refused
		allowed     string // dest with AllowPrivateTargets; "" = refused
		reasonMatch string
	}{
		{"sip:bob@public.example", "192.0.2.20:5060", "192.0.2.20:5060", ""},
		{"sip:bob@mixed.example", "192.0.2.30:5060", "127.0.0.1:6379", ""},
		{"sip:bob@private.example", "", "10.1.2.3:5060", "private address"},
		{"sip:bob@inside.example", "", "192.168.0.10:5060", "private address"},
		{"sip:bob@127.0.0.1:6379", "", "127.0.0.1:6379", "loopback address"},
		{"sip:bob@127.0.0.2", "", "127.0.0.2:5060", "loopback address"},
		{"sip:bob@169.254.169.254:80", "", "169.254.169.254:80", "link-local address"},
		{"sip:bob@192.0.2.77:8443", "", "192.0.2.77:8443", "own address"},
		{"sip:bob@224.0.1.75", "", "", "multicast address"},
		{"sip:bob@0.0.0.0:5070", "", "", "unspecified address"},
	} {
		for _, allow := range []bool{false, true} {
			ts.cfg.Proxy.AllowPrivateTargets = allow
			want := c.dest
			if allow {
				want = c.allowed
			}
			n++
			lines := invite(c.ruri)
			for i, l := range lines {
				if strings.HasPrefix(l, "Call-ID:") {
					lines[i] = "Call-ID: private-" + strings.Repeat("x", n)
				}
			}
			before := len(ts.forwarded.Requests())
			res := last(t, ts.handle(parse(t, lines...)))
			fw := ts.forwarded.Requests()[before:]
			if want == "" {
				if res.StatusCode != 403 || !strings.Contains(res.Reason, c.reasonMatch) || len(fw) != 0 {
					t.Errorf("%s (allow %v): got %d %q and %d forwarded, want 403 naming %q and none", c.ruri, allow,
						res.StatusCode, res.Reason, len(fw), c.reasonMatch)
				}
				continue
			}
			if res.StatusCode != 200 || len(fw) != 1 || fw[0].Destination() != want {
				var dest string
				if len(fw) > 0 {
					dest = fw[0].Destination()
				}
				t.Errorf("%s (allow %v): got %d %q, %d forwarded to %q, want 200 from %s", c.ruri, allow,
					res.StatusCode, res.Reason, len(fw), dest, want)
			}
		}
	}
}

// TestProxyChecksDialogHops: inside a dialog through the proxy, the next
// hop comes from the request (its route set or remote target), so the
// proxy checks it like a public one, except for overlay peers, which it
// reaches by node name over a stream.
func TestProxyChecksDialogHops(t *testing.T) {
	ts := newTestService(t, nil)
	ts.cfg.Proxy = &ProxyConfig{FQDN: testDomain, Resolver: &Resolver{Server: dnsServer(t)}}
	peerName, _ := PeerHost(otherPeer)
	bye := func(ruri, route string) *sip.Request {
		lines := []string{"BYE " + ruri + " SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK-dh" + ruri,
			"Max-Forwards: 70", "From: <sip:caller@" + testDomain + ">;tag=abc", "To: <sip:x@public.example>;tag=xyz",
			"Call-ID: dialog-hop", "CSeq: 2 BYE"}
		self := ts.recordRouteURI(parse(t, append(lines, "Content-Length: 0")...), "udp")
		lines = append(lines, "Route: <"+self.String()+">")
		if route != "" {
			lines = append(lines, "Route: "+route)
		}
		return parse(t, append(lines, "Content-Length: 0")...)
	}
	for name, c := range map[string]struct {
		req  *sip.Request
		dest string // "" = refused
	}{
		"remote target on loopback":    {bye("sip:x@127.0.0.1:6379", ""), ""},
		"route entry in a private net": {bye("sip:x@192.0.2.60", "<sip:192.168.1.1:5060;lr>"), ""},
		"public remote target":         {bye("sip:x@192.0.2.60:5062", ""), "192.0.2.60:5062"},
		"overlay peer by node name":    {bye("sip:x@192.0.2.60", "<sip:"+peerName+";lr>"), ts.peerAddr(otherPeer)},
	} {
		before := len(ts.forwarded.Requests())
		res := last(t, ts.handle(c.req))
		fw := ts.forwarded.Requests()[before:]
		switch {
		case c.dest == "" && (res.StatusCode != 403 || len(fw) != 0):
			t.Errorf("%s: %d %q, %d forwarded; want 403 and none", name, res.StatusCode, res.Reason, len(fw))
		case c.dest != "" && (len(fw) != 1 || fw[0].Destination() != c.dest):
			t.Errorf("%s: %d %q, forwarded %v; want it sent to %s", name, res.StatusCode, res.Reason, fw, c.dest)
		}
	}
}
