package relay

import (
	"net"
	"net/netip"
)

// Refusal reasons: the label values of p2psip_relay_refusals_total, and the
// "reason" of the log line each refusal writes.
const (
	reasonInvalid     = "invalid"
	reasonUnspecified = "unspecified" // 0.0.0.0/8, :: (CVE-2020-26262)
	reasonLoopback    = "loopback"
	reasonPrivate     = "private"    // RFC 1918
	reasonCGNAT       = "cgnat"      // RFC 6598 100.64.0.0/10
	reasonLinkLocal   = "link_local" // 169.254/16, fe80::/10
	reasonMetadata    = "metadata"   // 169.254.169.254: cloud instance metadata
	reasonMulticast   = "multicast"
	reasonBroadcast   = "broadcast"
	reasonReserved    = "reserved"    // 240.0.0.0/4 (RFC 1112 class E)
	reasonULA         = "ula"         // fc00::/7 (RFC 4193)
	reasonSiteLocal   = "site_local"  // fec0::/10 (deprecated by RFC 3879, still routed by some stacks)
	reasonNAT64Local  = "nat64_local" // 64:ff9b:1::/48 (RFC 8215): a local translator
	reasonOwnPort     = "own_port"    // one of the relay's own addresses outside the relayed ports
	reasonUserQuota   = "user_quota"
	reasonTotalQuota  = "total_quota"
	reasonNoEvenPort  = "no_even_port" // EVEN-PORT: no free even port with port+1 in the range
)

var (
	cgnat      = netip.MustParsePrefix("100.64.0.0/10")
	thisNet    = netip.MustParsePrefix("0.0.0.0/8")
	reserved4  = netip.MustParsePrefix("240.0.0.0/4")
	metadata4  = netip.MustParseAddr("169.254.169.254")
	broadcast4 = netip.MustParseAddr("255.255.255.255")
	siteLocal  = netip.MustParsePrefix("fec0::/10")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052 well-known prefix
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215
	sixToFour  = netip.MustParsePrefix("2002::/16")      // RFC 3056
	teredo     = netip.MustParsePrefix("2001::/32")      // RFC 4380
)

// checkPeer says whether a client may relay to addr, and if not why. It is
// the relay's guard against being an open proxy into its own host and
// networks (RFC 8656 §21.3.1 "Preventing Relaying to Internal Networks"
// leaves the policy to the server; coturn's CVE-2020-26262 and
// CVE-2026-27624 show the holes: 0.0.0.0, [::], and ::ffff:127.0.0.1).
//
// IPv6 forms that carry an IPv4 address a host or a translator may deliver
// to (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16 and
// Teredo) are judged by the IPv4 address inside, as coturn 4.13 does.
// allowPrivate lets loopback, private, CGNAT, ULA, site-local and
// link-local targets through (a LAN or a test bed); unspecified,
// multicast, broadcast, reserved and the cloud metadata address never pass.
func checkPeer(addr netip.Addr, allowPrivate bool) (ok bool, reason string) {
	if !addr.IsValid() {
		return false, reasonInvalid
	}
	addr = addr.WithZone("")
	if addr.Is6() {
		if v4, embedded := embeddedIPv4(addr); embedded {
			return checkPeer(v4, allowPrivate)
		}
	}
	// Refused whatever allowPrivate says: nobody has a use for relaying to
	// these, and some stacks deliver them to the host itself.
	switch {
	case addr.IsUnspecified() || (addr.Is4() && thisNet.Contains(addr)):
		return false, reasonUnspecified
	case addr.IsMulticast():
		return false, reasonMulticast
	case addr == broadcast4:
		return false, reasonBroadcast
	case addr.Is4() && reserved4.Contains(addr):
		return false, reasonReserved
	case addr == metadata4:
		return false, reasonMetadata
	case addr.Is6() && nat64Local.Contains(addr):
		// The embedded address's position depends on the local prefix
		// length, so it cannot be judged: refuse the whole range.
		return false, reasonNAT64Local
	}
	if allowPrivate {
		return true, ""
	}
	switch {
	case addr.IsLoopback():
		return false, reasonLoopback
	case addr.IsLinkLocalUnicast():
		return false, reasonLinkLocal
	case addr.Is4() && cgnat.Contains(addr):
		return false, reasonCGNAT
	case addr.Is6() && siteLocal.Contains(addr):
		return false, reasonSiteLocal
	case addr.Is6() && addr.IsPrivate():
		return false, reasonULA
	case addr.IsPrivate():
		return false, reasonPrivate
	}
	return true, ""
}

// embeddedIPv4 returns the IPv4 address an IPv6 address carries in a form
// that may end up delivered to that IPv4 address.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case a.Is4In6(): // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
		return a.Unmap(), true
	case isZero(b[:12]):
		// IPv4-compatible ::a.b.c.d (RFC 4291 §2.5.5.1, deprecated), but
		// :: and ::1 are IPv6's own unspecified and loopback.
		if a.IsUnspecified() || a.IsLoopback() {
			return netip.Addr{}, false
		}
		return v4(12), true
	case nat64.Contains(a):
		return v4(12), true
	case sixToFour.Contains(a):
		return v4(2), true
	case teredo.Contains(a):
		// RFC 4380 §4: the client's IPv4 address is the last 32 bits,
		// inverted.
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// permissionHandler is pion's hook on CreatePermission, ChannelBind and
// (RFC 6062) Connect: the peer's IP only, so the port-level rule on the
// relay's own addresses lives in the relayed sockets (conn.go).
func (s *Server) permissionHandler(client net.Addr, peerIP net.IP) bool {
	addr, _ := netip.AddrFromSlice(peerIP)
	ok, reason := checkPeer(addr, s.cfg.AllowPrivatePeers)
	if !ok {
		s.refuse(reason, "client", client.String(), "peer", peerIP.String())
	}
	return ok
}

// ownPort reports whether ap is one of the relay's own addresses on a port
// outside the relayed range. The relayed range stays reachable so that
// two clients of one relay can reach each other's relayed addresses.
func (s *Server) ownPort(ap netip.AddrPort) bool {
	if p := ap.Port(); p >= s.cfg.PortMin && p <= s.cfg.PortMax {
		return false
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		if v4, ok := embeddedIPv4(a); ok {
			a = v4
		}
	}
	for _, own := range s.cfg.OwnAddrs {
		if a == own {
			return true
		}
	}
	return false
}

// refuse logs and counts one refusal.
func (s *Server) refuse(reason string, args ...any) {
	s.metrics.refusals.WithLabelValues(reason).Inc()
	s.log.Info("relay refused", append([]any{"reason", reason}, args...)...)
}
