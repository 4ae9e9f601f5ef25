package sip

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/p2psip/p2psip/overlay"
	"github.com/prometheus/client_golang/prometheus"
)

// Locator is what the SIP service needs of the overlay.
type Locator interface {
	Register(ctx context.Context, req overlay.RegisterRequest) (*overlay.Registration, error)
	Unregister(ctx context.Context, aor, instance string) error
	Lookup(ctx context.Context, aor string) (*overlay.Registration, error)
	ID() string
	// Sign signs with the node key (see overlay.VerifyNodeSignature).
	Sign(msg []byte) ([]byte, error)
}

// ProxyConfig makes a peer the overlay's P2P SIP proxy toward public SIP
// domains (draft-marocco-sipping-p2p-scenarios §3.4).
type ProxyConfig struct {
	// FQDN is the overlay's public DNS name: requests for *@FQDN are for
	// overlay AORs. Default: the overlay name.
	FQDN string
	// Resolver finds public domains' servers (RFC 3263). Required.
	Resolver *Resolver
	// AllowPrivateTargets lets the proxy relay to public-side hops whose
	// resolved address is loopback, private (RFC 1918, RFC 6598,
	// fc00::/7), link-local or one of this host's own: for a test bed or
	// a SIP domain on the operator's own network. Default false: such a
	// request gets 403, so overlay users cannot reach the services only
	// the proxy's host and networks reach (SSRF). Unspecified, multicast
	// and broadcast addresses are refused either way.
	AllowPrivateTargets bool
}

// Config configures the service; New checks it once.
type Config struct {
	// Domain is the overlay name: the registrar serves *@Domain. Required.
	Domain string
	// Locator is the overlay. Required.
	Locator Locator
	// Owner signs the registrations of the phones this peer hosts.
	// Required.
	Owner overlay.Signer
	// Proxy, when set, makes this peer a public P2P SIP proxy.
	Proxy *ProxyConfig
	// Peers carries SIP to and from the other peers of the overlay, over
	// streams of the overlay's own connections (see peerlink.go). Default
	// nil: this peer reaches no other (a lone peer, or a unit test).
	Peers PeerNet
	// Bridge bridges the media of calls between this peer's browsers and
	// plain RTP/AVP phones (media.go). Default nil: no bridging; such
	// calls fail at the browser (488).
	Bridge MediaBridge
	// FindProxy returns the node ids of the proxies announced in the
	// overlay, for requests to other domains. Default nil: none.
	FindProxy func(ctx context.Context) ([]string, error)
	// Users holds digest credentials local to this peer. Default: none,
	// every AOR is first-come (see Users).
	Users *Users
	// Host is the address other peers and devices reach this peer at,
	// used in Path, Record-Route and Via. Required.
	Host string
	// Aliases are other hosts that name this peer (its other addresses
	// when it listens on all interfaces), so that a request addressed to
	// any of them is recognised as its own. Default: none.
	Aliases []string
	// MinExpires and MaxExpires bound registration lifetimes (RFC 3261
	// §10.3 step 7). Defaults 60s and 3600s.
	MinExpires, MaxExpires time.Duration
	// RegistrationsPerSource caps the live bindings one source address
	// (host:port) may hold, so a client registering name after name cannot
	// grow the peer's memory; a phone holds one per AOR. Default 64;
	// negative: no cap (a load test, or a gateway with many lines).
	RegistrationsPerSource int
	// RequestTimeout bounds one overlay operation. Default 5s.
	RequestTimeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the SIP metrics. Default nil: none.
	Registerer prometheus.Registerer
}

func (c *Config) applyDefaults() {
	if c.RegistrationsPerSource == 0 {
		c.RegistrationsPerSource = maxFlowsPerSource
	}
	if c.MinExpires == 0 {
		c.MinExpires = 60 * time.Second
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = time.Hour
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Users == nil {
		c.Users = &Users{}
	}
}

func (c *Config) validate() error {
	if c.Domain == "" || c.Locator == nil || c.Owner == nil || c.Host == "" {
		return fmt.Errorf("%w: Domain, Locator, Owner and Host are required", ErrBadConfig)
	}
	if c.Proxy != nil && c.Proxy.Resolver == nil {
		return fmt.Errorf("%w: the proxy role needs a Resolver", ErrBadConfig)
	}
	if c.Proxy != nil && c.Proxy.FQDN == "" {
		c.Proxy.FQDN = c.Domain
	}
	if c.MinExpires > c.MaxExpires {
		return fmt.Errorf("%w: MinExpires %s above MaxExpires %s", ErrBadConfig, c.MinExpires, c.MaxExpires)
	}
	return nil
}
