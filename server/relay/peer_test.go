package relay

import (
	"net/netip"
	"testing"
)

func TestCheckPeer(t *testing.T) {
	tests := []struct {
		addr string
		// want is the reason without allowPrivate ("" = allowed);
		// wantPrivate the one with it.
		want, wantPrivate string
	}{
		// Public, including the TEST-NETs the e2e tests relay to.
		{"8.8.8.8", "", ""},
		{"192.0.2.10", "", ""},
		{"198.51.100.7", "", ""},
		{"203.0.113.1", "", ""},
		{"2001:4860:4860::8888", "", ""},
		{"2001:db8::1", "", ""},
		{"::ffff:8.8.8.8", "", ""},
		{"64:ff9b::808:808", "", ""},
		{"2002:808:808::1", "", ""},
		// Unspecified (CVE-2020-26262) and "this network".
		{"0.0.0.0", reasonUnspecified, reasonUnspecified},
		{"0.1.2.3", reasonUnspecified, reasonUnspecified},
		{"::", reasonUnspecified, reasonUnspecified},
		{"::ffff:0.0.0.0", reasonUnspecified, reasonUnspecified},
		// Loopback.
		{"127.0.0.1", reasonLoopback, ""},
		{"127.255.255.254", reasonLoopback, ""},
		{"::1", reasonLoopback, ""},
		{"::ffff:127.0.0.1", reasonLoopback, ""}, // CVE-2026-27624
		{"::127.0.0.1", reasonLoopback, ""},      // IPv4-compatible
		{"64:ff9b::7f00:1", reasonLoopback, ""},  // NAT64
		{"2002:7f00:1::", reasonLoopback, ""},    // 6to4
		{"2002:7f00:0001:ffff::1", reasonLoopback, ""},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", reasonLoopback, ""}, // Teredo, client 127.0.0.1
		// RFC 1918.
		{"10.0.0.1", reasonPrivate, ""},
		{"172.16.0.1", reasonPrivate, ""},
		{"172.31.255.255", reasonPrivate, ""},
		{"192.168.1.1", reasonPrivate, ""},
		{"::ffff:10.1.2.3", reasonPrivate, ""},
		{"::ffff:192.168.0.1", reasonPrivate, ""},
		{"::10.1.2.3", reasonPrivate, ""},
		{"64:ff9b::a01:203", reasonPrivate, ""},
		{"64:ff9b::c0a8:101", reasonPrivate, ""},
		{"2002:a00:1::1", reasonPrivate, ""},
		{"2002:c0a8:101::", reasonPrivate, ""},
		{"172.32.0.1", "", ""},
		// CGNAT (RFC 6598).
		{"100.64.0.1", reasonCGNAT, ""},
		{"100.127.255.255", reasonCGNAT, ""},
		{"::ffff:100.64.1.1", reasonCGNAT, ""},
		{"64:ff9b::6440:101", reasonCGNAT, ""},
		{"2002:6440:101::", reasonCGNAT, ""},
		{"100.128.0.1", "", ""},
		// Link-local, and the cloud metadata address in every form.
		{"169.254.1.1", reasonLinkLocal, ""},
		{"fe80::1", reasonLinkLocal, ""},
		{"fe80::1%eth0", reasonLinkLocal, ""},
		{"169.254.169.254", reasonMetadata, reasonMetadata},
		{"::ffff:169.254.169.254", reasonMetadata, reasonMetadata},
		{"::169.254.169.254", reasonMetadata, reasonMetadata},
		{"64:ff9b::a9fe:a9fe", reasonMetadata, reasonMetadata},
		{"2002:a9fe:a9fe::", reasonMetadata, reasonMetadata},
		// Multicast and broadcast.
		{"224.0.0.1", reasonMulticast, reasonMulticast},
		{"239.255.255.250", reasonMulticast, reasonMulticast},
		{"ff02::1", reasonMulticast, reasonMulticast},
		{"ff05::1:3", reasonMulticast, reasonMulticast},
		{"::ffff:224.0.0.251", reasonMulticast, reasonMulticast},
		{"64:ff9b::e000:fb", reasonMulticast, reasonMulticast},
		{"2002:e000:fb::", reasonMulticast, reasonMulticast},
		{"255.255.255.255", reasonBroadcast, reasonBroadcast},
		{"::ffff:255.255.255.255", reasonBroadcast, reasonBroadcast},
		{"2002:ffff:ffff::", reasonBroadcast, reasonBroadcast},
		{"240.0.0.1", reasonReserved, reasonReserved},
		// ULA and site-local.
		{"fc00::1", reasonULA, ""},
		{"fd12:3456:789a::1", reasonULA, ""},
		{"fec0::1", reasonSiteLocal, ""},
		{"feff::1", reasonSiteLocal, ""},
		// Local-use NAT64 (RFC 8215): the embedded address is unknowable.
		{"64:ff9b:1::a00:1", reasonNAT64Local, reasonNAT64Local},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		for _, allow := range []bool{false, true} {
			want := tt.want
			if allow {
				want = tt.wantPrivate
			}
			ok, reason := checkPeer(a, allow)
			if ok != (want == "") || reason != want {
				t.Errorf("checkPeer(%s, allowPrivate=%v) = %v, %q; want %v, %q", tt.addr, allow, ok, reason, want == "", want)
			}
		}
	}
	if ok, reason := checkPeer(netip.Addr{}, true); ok || reason != reasonInvalid {
		t.Errorf("checkPeer(invalid) = %v, %q", ok, reason)
	}
}

// FuzzCheckPeer checks that no 16-byte address, in any disguise, passes
// checkPeer when the IPv4 address it carries is refused, and that an
// allowed address is never refused once private peers are allowed.
func FuzzCheckPeer(f *testing.F) {
	for _, s := range []string{"::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a00:1::", "::1", "fe80::1", "8.8.8.8", "::7f00:1"} {
		a := netip.MustParseAddr(s)
		b := a.As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		strict, reason := checkPeer(a, false)
		lax, _ := checkPeer(a, true)
		if strict && !lax {
			t.Fatalf("%v: allowed strictly but refused with allowPrivate", a)
		}
		if !strict && reason == "" {
			t.Fatalf("%v: refused without a reason", a)
		}
		if v4, embedded := embeddedIPv4(a); embedded {
			if ok4, _ := checkPeer(v4, false); strict && !ok4 {
				t.Fatalf("%v allowed but carries refused %v", a, v4)
			}
		}
		if strict && (a.Unmap().IsLoopback() || a.Unmap().IsPrivate() || a.IsLinkLocalUnicast() || a.Unmap().IsMulticast() || a.Unmap().IsUnspecified()) {
			t.Fatalf("%v allowed", a)
		}
	})
}
