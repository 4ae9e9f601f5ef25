package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// Hop is one place to send a request: transport and host:port.
type Hop struct {
	Transport string // UDP, TCP or TLS
	Addr      string // ip:port
}

// Resolver finds the next hops of a SIP URI (RFC 3263 §4): NAPTR, then
// SRV, then A/AAAA. Tests point it at their own DNS server.
type Resolver struct {
	// Server is the DNS server (host:port). Default: the first nameserver
	// of /etc/resolv.conf.
	Server string
	// Timeout bounds each query. Default 2s.
	Timeout time.Duration
}

var naptrServices = map[string]string{"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}

func defaultPort(transport string) int {
	if transport == "TLS" {
		return 5061
	}
	return 5060
}

// Resolve returns the hops for u in the order to try them.
func (r *Resolver) Resolve(ctx context.Context, u sip.Uri) ([]Hop, error) {
	transport := strings.ToUpper(u.UriParams.GetOr("transport", ""))
	if u.IsEncrypted() {
		transport = "TLS"
	}
	host := u.Host
	// §4.1–4.2: a numeric host or an explicit port skips NAPTR and SRV.
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil || u.Port != 0 {
		if transport == "" {
			transport = "UDP"
		}
		port := u.Port
		if port == 0 {
			port = defaultPort(transport)
		}
		ips, err := r.addrs(ctx, host)
		if err != nil {
			return nil, err
		}
		return hopsFor(transport, ips, port), nil
	}
	var srvs []srvName
	if transport != "" {
		srvs = []srvName{{transport, srvPrefix(transport) + host}}
	} else {
		var err error
		if srvs, err = r.naptr(ctx, host); err != nil {
			return nil, err
		}
		if len(srvs) == 0 { // §4.1: no NAPTR, try the SRV names
			srvs = []srvName{{"UDP", "_sip._udp." + host}, {"TCP", "_sip._tcp." + host}}
		}
	}
	var hops []Hop
	for _, s := range srvs {
		h, err := r.srv(ctx, s)
		if err != nil {
			return nil, err
		}
		hops = append(hops, h...)
	}
	if len(hops) > 0 {
		return hops, nil
	}
	// §4.2: no SRV either: the A records on the default port.
	if transport == "" {
		transport = "UDP"
	}
	ips, err := r.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	return hopsFor(transport, ips, defaultPort(transport)), nil
}

type srvName struct{ transport, name string }

func srvPrefix(transport string) string {
	switch transport {
	case "TCP":
		return "_sip._tcp."
	case "TLS":
		return "_sips._tcp."
	}
	return "_sip._udp."
}

func hopsFor(transport string, ips []string, port int) []Hop {
	out := make([]Hop, 0, len(ips))
	for _, ip := range ips {
		out = append(out, Hop{Transport: transport, Addr: net.JoinHostPort(ip, strconv.Itoa(port))})
	}
	return out
}

// naptr returns the SRV names of the SIP services a domain's NAPTR
// records name, in order and preference (RFC 3263 §4.1, RFC 3403).
func (r *Resolver) naptr(ctx context.Context, host string) ([]srvName, error) {
	ans, err := r.query(ctx, host, dns.TypeNAPTR)
	if noRecords(err) {
		return nil, nil // §4.1: as for no NAPTR records, try SRV
	}
	if err != nil {
		return nil, err
	}
	var recs []*dns.NAPTR
	for _, rr := range ans {
		if n, ok := rr.(*dns.NAPTR); ok && strings.EqualFold(n.Flags, "s") {
			if _, known := naptrServices[strings.ToUpper(n.Service)]; known {
				recs = append(recs, n)
			}
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.NAPTR) int {
		if a.Order != b.Order {
			return int(a.Order) - int(b.Order)
		}
		return int(a.Preference) - int(b.Preference)
	})
	out := make([]srvName, 0, len(recs))
	for _, n := range recs {
		out = append(out, srvName{naptrServices[strings.ToUpper(n.Service)], strings.TrimSuffix(n.Replacement, ".")})
	}
	return out, nil
}

// srv resolves an SRV name into hops by priority, then weight (RFC 2782;
// the weighted shuffle is left out: order is deterministic).
func (r *Resolver) srv(ctx context.Context, s srvName) ([]Hop, error) {
	ans, err := r.query(ctx, s.name, dns.TypeSRV)
	if noRecords(err) {
		return nil, nil // §4.2: as for no SRV records, try A
	}
	if err != nil {
		return nil, err
	}
	var recs []*dns.SRV
	for _, rr := range ans {
		if v, ok := rr.(*dns.SRV); ok && v.Target != "." {
			recs = append(recs, v)
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		return int(b.Weight) - int(a.Weight)
	})
	var out []Hop
	for _, v := range recs {
		ips, err := r.addrs(ctx, strings.TrimSuffix(v.Target, "."))
		if err != nil {
			continue
		}
		out = append(out, hopsFor(s.transport, ips, int(v.Port))...)
	}
	return out, nil
}

// addrs returns the IPv4 addresses of host (or host itself if numeric).
func (r *Resolver) addrs(ctx context.Context, host string) ([]string, error) {
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return []string{ip.String()}, nil
	}
	ans, err := r.query(ctx, host, dns.TypeA)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, nil // none: NXDOMAIN or no A record
}

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	server := r.Server
	if server == "" {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			return nil, fmt.Errorf("%w: no DNS server (set --dns)", ErrResolve)
		}
		server = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrResolve, dns.TypeToString[qtype], name, err)
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, &rcodeError{fmt.Errorf("%w: %s %s: %s", ErrResolve, dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode]), in.Rcode}
	}
	return in.Answer, nil
}

// rcodeError is a DNS answer with an error rcode; it wraps ErrResolve.
type rcodeError struct {
	err   error
	rcode int
}

func (e *rcodeError) Error() string { return e.err.Error() }
func (e *rcodeError) Unwrap() error { return e.err }

// noRecords reports a NAPTR or SRV answer that RFC 3263 resolution takes
// as "no such records" and falls back from, as Kamailio does: a server
// that refuses the type, fails on it or does not implement it (dnsmasq
// with only A and SRV records answers NAPTR with REFUSED).
func noRecords(err error) bool {
	var re *rcodeError
	if !errors.As(err, &re) {
		return false
	}
	switch re.rcode {
	case dns.RcodeRefused, dns.RcodeServerFailure, dns.RcodeNotImplemented:
		return true
	}
	return false
}

// Kinds of address a public-side hop must not have (see hopKind).
const (
	kindUnspecified = "unspecified"
	kindMulticast   = "multicast"
	kindBroadcast   = "broadcast"
	kindLoopback    = "loopback"
	kindLinkLocal   = "link-local"
	kindPrivate     = "private"
	kindOwn         = "own"
	kindInvalid     = "invalid"
)

// sharedSpace is RFC 6598's carrier-grade NAT space: as private as RFC
// 1918 to whoever is behind it (and home to some clouds' metadata
// services).
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// hopKind says what sort of address a public-side hop (ip:port) has: ""
// for a public unicast address, else one of the kind* constants. own
// lists this host's addresses. The proxy must not be a way for overlay
// users into the services only its host or its networks reach (SSRF), so
// it checks every hop RFC 3263 resolution gives, not just literal IPs in
// the Request-URI.
func hopKind(addr string, own []netip.Addr) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return kindInvalid
	}
	ip := ap.Addr().Unmap().WithZone("")
	switch {
	case ip.IsUnspecified() || (ip.Is4() && ip.As4()[0] == 0): // 0.0.0.0/8: "this network"
		return kindUnspecified
	case ip.IsMulticast():
		return kindMulticast
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return kindBroadcast
	case ip.IsLoopback():
		return kindLoopback
	case ip.IsLinkLocalUnicast():
		return kindLinkLocal
	case ip.IsPrivate() || sharedSpace.Contains(ip): // RFC 1918, fc00::/7, RFC 6598
		return kindPrivate
	case slices.Contains(own, ip):
		return kindOwn
	}
	return ""
}

// hopAllowed reports whether a hop of that kind may be used;
// allowPrivate (ProxyConfig.AllowPrivateTargets) lets loopback, private,
// link-local and own addresses through, never the rest: they name no one
// SIP server.
func hopAllowed(kind string, allowPrivate bool) bool {
	switch kind {
	case "":
		return true
	case kindLoopback, kindLinkLocal, kindPrivate, kindOwn:
		return allowPrivate
	}
	return false
}
