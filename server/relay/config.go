package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a relay; New checks it once.
type Config struct {
	// PacketConns are the UDP sockets TURN is served on (RFC 8656 §2.1).
	// The server owns them from New on and closes them on Close.
	PacketConns []net.PacketConn
	// Listeners are the stream listeners TURN is served on: plain TCP, and
	// listeners of already-decrypted TLS connections (the HTTPS port's
	// demultiplexer hands those in). Owned and closed like PacketConns.
	// At least one PacketConn or Listener is required.
	Listeners []net.Listener

	// RelayIP is the address put in XOR-RELAYED-ADDRESS: the peer's public
	// address (--public-addr). Required. Its family is the one relayed
	// (RFC 6156: an allocation of the other family gets 440).
	RelayIP netip.Addr
	// BindIP is the local address relayed sockets bind to. Default:
	// RelayIP when it is one of this host's addresses, else the
	// unspecified address of its family (a host behind a 1:1 NAT, as on
	// most clouds, does not have its public address on an interface).
	BindIP netip.Addr
	// PortMin and PortMax bound the relayed ports, both included
	// (--relay-ports), so a firewall can open exactly them. Default
	// 49152–65535, the IANA dynamic range that RFC 8656 §6.2 suggests.
	PortMin, PortMax uint16

	// Realm is the long-term credential realm (RFC 8489 §9.2). Default
	// "p2psip".
	Realm string
	// StaticSecret, when set, replaces the rotating random secrets: an
	// operator who mints credentials elsewhere (coturn's
	// static-auth-secret, for a portal or a load test) shares it with the
	// relay. Default empty: random secrets kept in memory only.
	StaticSecret []byte
	// SecretRotation is how often the random secret is replaced; the
	// previous one stays accepted for one more period, so a credential
	// minted just before a rotation keeps working. Default 24h.
	SecretRotation time.Duration
	// MaxTTL bounds the lifetime Mint gives a credential. Default 12h;
	// at most SecretRotation (a credential must not outlive the secret
	// that signs it).
	MaxTTL time.Duration
	// MintsPerMinute caps the credentials one user id may get per minute,
	// so a member cannot stockpile credentials to hand out. Default 10;
	// negative: no cap.
	MintsPerMinute int

	// AllocationsPerUser caps one user id's live allocations: a browser
	// needs one or two per call. Default 8; negative: no cap.
	AllocationsPerUser int
	// AllocationsTotal caps the live allocations of the whole relay.
	// Default 1000; negative: no cap.
	AllocationsTotal int
	// Bandwidth caps each allocation's relayed bytes per second, in each
	// direction separately (as coturn's max-bps); UDP packets over the cap
	// are dropped, TCP relays slow down. Default 1 MiB/s (HD video fits);
	// negative: no cap.
	Bandwidth int64
	// AllocationLifetime is the default allocation lifetime (RFC 8656
	// §7.2). Default pion's 10 minutes.
	AllocationLifetime time.Duration

	// AllowPrivatePeers lets clients relay to loopback, private (RFC 1918,
	// RFC 6598, fc00::/7, fec0::/10) and link-local peers: for a LAN or a
	// test bed (--relay-private-peers). Default false: refused with 403,
	// so a relay client cannot reach the services only the relay's host
	// and networks reach (SSRF). Unspecified, multicast, broadcast,
	// reserved and the cloud metadata address are refused either way.
	AllowPrivatePeers bool
	// OwnAddrs are this host's addresses, on which only the relayed port
	// range may be reached through the relay (so a client cannot reach
	// the peer's own HTTPS, SIP or TURN ports from inside). Default:
	// RelayIP, the listeners' addresses and every interface address, as
	// found at New. With AllowPrivatePeers, the rest of 127.0.0.0/8 is not
	// "own": a test bed runs its peers there.
	OwnAddrs []netip.Addr

	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Registerer takes the metrics. Default nil: not registered.
	Registerer prometheus.Registerer

	// now is the clock of credential expiry and mint quotas; tests move it.
	// Default time.Now.
	now func() time.Time
	// reservationHold is how long port+1 of an EVEN-PORT allocation is
	// held for its RESERVATION-TOKEN; tests shorten it. Default 31 s.
	reservationHold time.Duration
	// probeHold is how long a probed even port waits for its allocation;
	// tests shorten it. Default 5 s.
	probeHold time.Duration
}

const (
	defaultPortMin        = 49152
	defaultPortMax        = 65535
	defaultRealm          = "p2psip"
	defaultSecretRotation = 24 * time.Hour
	defaultMaxTTL         = 12 * time.Hour
	defaultMintsPerMinute = 10
	defaultAllocsPerUser  = 8
	defaultAllocsTotal    = 1000
	defaultBandwidth      = 1 << 20
)

func (c *Config) validate() error {
	if len(c.PacketConns) == 0 && len(c.Listeners) == 0 {
		return fmt.Errorf("%w: no PacketConns and no Listeners", ErrBadConfig)
	}
	if !c.RelayIP.IsValid() || c.RelayIP.IsUnspecified() {
		return fmt.Errorf("%w: RelayIP %v: want the relay's public address", ErrBadConfig, c.RelayIP)
	}
	c.RelayIP = c.RelayIP.Unmap()
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = defaultPortMin, defaultPortMax
	}
	if c.PortMin == 0 || c.PortMax < c.PortMin {
		return fmt.Errorf("%w: relayed ports %d-%d: want 1 <= min <= max", ErrBadConfig, c.PortMin, c.PortMax)
	}
	if !c.BindIP.IsValid() {
		c.BindIP = defaultBindIP(c.RelayIP)
	}
	if c.BindIP.Unmap().Is4() != c.RelayIP.Is4() {
		return fmt.Errorf("%w: BindIP %v and RelayIP %v differ in family", ErrBadConfig, c.BindIP, c.RelayIP)
	}
	c.BindIP = c.BindIP.Unmap()
	if c.Realm == "" {
		c.Realm = defaultRealm
	}
	if c.SecretRotation == 0 {
		c.SecretRotation = defaultSecretRotation
	}
	if c.SecretRotation < time.Minute {
		return fmt.Errorf("%w: SecretRotation %v: want at least 1m", ErrBadConfig, c.SecretRotation)
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = min(defaultMaxTTL, c.SecretRotation)
	}
	if c.MaxTTL < 0 || (c.MaxTTL > c.SecretRotation && len(c.StaticSecret) == 0) {
		return fmt.Errorf("%w: MaxTTL %v: want at most SecretRotation %v", ErrBadConfig, c.MaxTTL, c.SecretRotation)
	}
	c.MintsPerMinute = orDefault(c.MintsPerMinute, defaultMintsPerMinute)
	c.AllocationsPerUser = orDefault(c.AllocationsPerUser, defaultAllocsPerUser)
	c.AllocationsTotal = orDefault(c.AllocationsTotal, defaultAllocsTotal)
	if c.Bandwidth == 0 {
		c.Bandwidth = defaultBandwidth
	}
	if c.AllocationLifetime < 0 {
		return fmt.Errorf("%w: AllocationLifetime %v is negative", ErrBadConfig, c.AllocationLifetime)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.reservationHold == 0 {
		c.reservationHold = reservationHold
	}
	if c.probeHold == 0 {
		c.probeHold = probeHold
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.OwnAddrs == nil {
		c.OwnAddrs = c.defaultOwnAddrs()
	}
	return nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// defaultBindIP is relayIP when an interface has it, else the unspecified
// address of its family.
func defaultBindIP(relayIP netip.Addr) netip.Addr {
	for _, a := range interfaceAddrs() {
		if a == relayIP {
			return relayIP
		}
	}
	if relayIP.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func (c *Config) defaultOwnAddrs() []netip.Addr {
	own := append([]netip.Addr{c.RelayIP}, interfaceAddrs()...)
	for _, pc := range c.PacketConns {
		if ap, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil && !ap.Addr().IsUnspecified() {
			own = append(own, ap.Addr().Unmap())
		}
	}
	for _, l := range c.Listeners {
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil && !ap.Addr().IsUnspecified() {
			own = append(own, ap.Addr().Unmap())
		}
	}
	return own
}

func interfaceAddrs() []netip.Addr {
	var out []netip.Addr
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}
