package overlay

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Node. Zero fields take the documented defaults;
// New checks the result once with validate.
type Config struct {
	// Name is the overlay name, the host part of every AOR in it, and part
	// of the DHT protocol prefix (/p2psip/<name>), so overlays never mix.
	// Required.
	Name string
	// Identity is the node's libp2p key; the node ID is derived from it.
	// Required (LoadOrCreateIdentity persists one).
	Identity crypto.PrivKey
	// ListenAddrs are the libp2p listen addresses. Default: TCP and QUIC
	// on all IPv4 interfaces, random ports.
	ListenAddrs []ma.Multiaddr
	// WSS, when set, is the HTTPS listener that carries libp2p over secure
	// WebSocket (for peers behind firewalls that pass only HTTPS). The node
	// listens for plain WebSocket on a loopback port (WSBackend) that the
	// web server proxies to, and advertises /tcp/<port>/tls/ws on this
	// listener's addresses. Default: nil, no WebSocket path.
	WSS *net.TCPAddr
	// PSK makes the overlay private (libp2p pnet); only nodes holding the
	// same 32-byte key can connect. QUIC cannot run with a PSK, so QUIC
	// listen addresses are dropped. Default: nil, an open overlay.
	PSK []byte
	// Reachability says whether other peers can dial this one: ReachAuto
	// ("auto", libp2p's AutoNAT finds out), ReachPublic ("public": a peer
	// with a public address; it serves the DHT and runs the circuit relay
	// service for the overlay's members) or ReachPrivate ("private": behind
	// NAT or a firewall that passes only outbound HTTPS; it is a DHT client
	// and holds relay reservations on two public peers, advertising its
	// /p2p-circuit addresses). Default "auto".
	Reachability string
	// MDNS enables LAN discovery by multicast DNS. Default: false in
	// Config; the server turns it on.
	MDNS bool
	// Bootstrap peers to connect to at start, with retries.
	Bootstrap []peer.AddrInfo
	// JoinURLs are https:// URLs of peers whose overlay to join (see
	// JoinURL); tried at start and whenever the node has no peers.
	JoinURLs []string
	// Hold is how long an expired or removed AOR stays locked to its
	// owner. Every node of an overlay must use the same value. Default 1h.
	Hold time.Duration
	// RefreshInterval is how often the node republishes the records it
	// hosts, so they reach the peers now closest to their keys after
	// churn. Default 5m.
	RefreshInterval time.Duration
	// ServiceTTL is the lifetime of a service entry; entries are
	// republished every RefreshInterval. Default 30m.
	ServiceTTL time.Duration
	// MaxTTL is the longest lifetime a record may claim. Default 24h.
	MaxTTL time.Duration
	// LookupQuorum is how many peers must answer before a lookup settles
	// on the best record they gave; -1 waits for the whole query. Waiting
	// for the whole query only adds a long tail: the put reached the same
	// closest peers a lookup asks first, and a stale answer loses to a
	// newer one in Select (bench/README.md has both measured). Default 4.
	LookupQuorum int
	// LookupCacheTTL is how long Lookup answers from the record it found
	// last instead of asking the DHT again. Writes that pass through this
	// node (its own, and values other peers store here) take effect at
	// once; others within this time. Negative: no cache. Default 1s.
	LookupCacheTTL time.Duration
	// ConnectTimeout bounds one dial attempt. Default 10s.
	ConnectTimeout time.Duration
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the overlay's Prometheus metrics, and libp2p's.
	// Default nil: no metrics.
	Registerer prometheus.Registerer

	// gater, for tests, filters the host's connections (e.g. to make two
	// peers on one loopback undialable to each other but through a relay).
	gater connmgr.ConnectionGater
}

func (c *Config) applyDefaults() {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []ma.Multiaddr{
			ma.StringCast("/ip4/0.0.0.0/tcp/0"),
			ma.StringCast("/ip4/0.0.0.0/udp/0/quic-v1"),
		}
	}
	if c.Hold == 0 {
		c.Hold = time.Hour
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	if c.ServiceTTL == 0 {
		c.ServiceTTL = 30 * time.Minute
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = 24 * time.Hour
	}
	if c.LookupQuorum == 0 {
		c.LookupQuorum = 4
	}
	if c.LookupQuorum < 0 {
		c.LookupQuorum = 0 // go-libp2p-kad-dht: 0 means the whole query
	}
	if c.LookupCacheTTL == 0 {
		c.LookupCacheTTL = time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.Reachability == "" {
		c.Reachability = ReachAuto
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	if err := ValidateOverlayName(c.Name); err != nil {
		return err
	}
	if c.Identity == nil {
		return fmt.Errorf("%w: no identity key", ErrBadConfig)
	}
	if c.PSK != nil && len(c.PSK) != 32 {
		return fmt.Errorf("%w: PSK must be 32 bytes, got %d", ErrBadConfig, len(c.PSK))
	}
	switch c.Reachability {
	case ReachAuto, ReachPublic, ReachPrivate:
	default:
		return fmt.Errorf("%w: reachability %q: want auto, public or private", ErrBadConfig, c.Reachability)
	}
	if c.Hold < 0 || c.RefreshInterval <= 0 || c.ServiceTTL <= c.RefreshInterval || c.MaxTTL <= 0 {
		return fmt.Errorf("%w: durations must be positive and ServiceTTL (%s) longer than RefreshInterval (%s)",
			ErrBadConfig, c.ServiceTTL, c.RefreshInterval)
	}
	return nil
}

// ValidateOverlayName checks that name is a DNS name (RFC 1123 labels):
// it is the host part of SIP URIs and may become a public FQDN.
func ValidateOverlayName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: overlay name must be 1..253 characters", ErrBadConfig)
	}
	if name != strings.ToLower(name) {
		return fmt.Errorf("%w: overlay name %q must be lower case", ErrBadConfig, name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: overlay name %q has an empty or malformed label", ErrBadConfig, name)
		}
		if strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("%w: overlay name %q: labels take a-z, 0-9 and -", ErrBadConfig, name)
		}
	}
	return nil
}
