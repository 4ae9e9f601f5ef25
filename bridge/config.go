package bridge

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Config sets a Bridge up. The zero value works: every field documents
// its default.
type Config struct {
	// PortMin and PortMax bound the UDP ports of plain RTP legs on this
	// peer's own address and of the browser legs' ICE host candidates.
	// Default 20000–29999 (--rtp-ports).
	PortMin, PortMax int
	// ListenIP is the address plain legs on this peer bind. Default: all
	// addresses.
	ListenIP netip.Addr
	// PublicIPs, when set, are the addresses ICE host candidates carry
	// instead of the interfaces' (a public peer behind 1:1 NAT).
	PublicIPs []string
	// ICEServers are STUN/TURN servers the browser leg may gather relay
	// candidates from. Default none: the browser reaches its own peer by
	// host candidates, or through a relay of its own.
	ICEServers []webrtc.ICEServer
	// IncludeLoopback puts loopback addresses among ICE host candidates
	// (peers and browsers on one machine, as in tests). Default false.
	// Ignored with ICEIPs.
	IncludeLoopback bool
	// ICEIPs are the addresses of the browser legs' ICE host candidates:
	// the shared ICE port binds exactly these (--media-ips). Default: every
	// interface address but link-local ones, loopback only with
	// IncludeLoopback. Each address costs every call a candidate, a reader
	// goroutine, a watcher goroutine and an 8 KiB buffer in pion, so a
	// multi-homed peer names the ones its browsers reach.
	ICEIPs []netip.Addr
	// MediaTimeout ends a call when no RTP arrives on a leg this long
	// while neither side holds. Default 30 s.
	MediaTimeout time.Duration
	// ICEFailedTimeout is how long the browser leg may stay disconnected
	// before the call ends (a closed tab, a lost Wi-Fi). Default 10 s.
	ICEFailedTimeout time.Duration
	// PortQuarantine keeps a finished call's port unused this long, so a
	// late packet of the old call never reaches a new one. Default 60 s.
	PortQuarantine time.Duration
	// RTCPInterval is how often the plain leg sends RTCP reports
	// (RFC 3550 §6.2 suggests 5 s). Default 5 s.
	RTCPInterval time.Duration
	// GatherTimeout bounds ICE gathering before an offer or answer goes
	// out (never a 10–40 s wait before a call is placed). Default 2 s.
	GatherTimeout time.Duration
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer takes the bridge's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

func (c *Config) applyDefaults() {
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = 20000, 29999
	}
	if !c.ListenIP.IsValid() {
		c.ListenIP = netip.IPv4Unspecified()
	}
	if c.MediaTimeout == 0 {
		c.MediaTimeout = 30 * time.Second
	}
	if c.ICEFailedTimeout == 0 {
		c.ICEFailedTimeout = 10 * time.Second
	}
	if c.PortQuarantine == 0 {
		c.PortQuarantine = time.Minute
	}
	if c.RTCPInterval == 0 {
		c.RTCPInterval = 5 * time.Second
	}
	if c.GatherTimeout == 0 {
		c.GatherTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		return fmt.Errorf("bridge: RTP port range %d-%d: want 1024 ≤ min ≤ max ≤ 65535", c.PortMin, c.PortMax)
	}
	if c.PortMax-c.PortMin < 1 {
		return fmt.Errorf("bridge: RTP port range %d-%d holds too few ports", c.PortMin, c.PortMax)
	}
	if err := checkICEIPs(c.ICEIPs); err != nil {
		return err
	}
	if c.MediaTimeout < time.Second || c.ICEFailedTimeout < time.Second {
		return fmt.Errorf("bridge: timeouts below a second (media %s, ICE %s)", c.MediaTimeout, c.ICEFailedTimeout)
	}
	return nil
}

// ParsePortRange reads "min-max" (the --rtp-ports flag).
func ParsePortRange(s string) (int, int, error) {
	var lo, hi int
	// Sscanf stops after the second number: compare, so that a typo or a
	// list ("20000-29999,40000-49999") is refused, not half taken.
	if _, err := fmt.Sscanf(s, "%d-%d", &lo, &hi); err != nil || fmt.Sprintf("%d-%d", lo, hi) != s {
		return 0, 0, fmt.Errorf("RTP port range %q: want min-max, e.g. 20000-29999", s)
	}
	c := Config{PortMin: lo, PortMax: hi}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}

// ParseICEIPs reads the addresses of the --media-ips flag.
func ParseICEIPs(ss []string) ([]netip.Addr, error) {
	ips := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ICE address %q: want an IP address", s)
		}
		ips = append(ips, ip)
	}
	if err := checkICEIPs(ips); err != nil {
		return nil, err
	}
	return ips, nil
}

func checkICEIPs(ips []netip.Addr) error {
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		// A candidate must carry an address a browser can send to: not
		// 0.0.0.0 or ::, not a group, and not an IPv6 link-local address,
		// whose zone a browser on another host cannot know.
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || (ip.Is6() && !ip.Is4In6() && ip.IsLinkLocalUnicast()) {
			return fmt.Errorf("bridge: ICE address %q: want a unicast address browsers can reach", ip)
		}
		if seen[ip.Unmap()] {
			return fmt.Errorf("bridge: ICE address %s given twice", ip)
		}
		seen[ip.Unmap()] = true
	}
	return nil
}
