package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/p2psip/p2psip/bridge"

	"github.com/p2psip/p2psip/overlay"
)

// errUsage means the command line was wrong; the usage has been printed.
var errUsage = errors.New("usage")

// Config is the peer's configuration, from flags and P2PSIP_* variables.
type Config struct {
	Overlay       string
	DataDir       string
	HTTPS         string
	SIP           string
	SIPS          string
	SIPHost       string
	Users         string
	Roles         []string
	FQDN          string
	PublicIP      string
	DNS           string
	Join          []string
	Bootstrap     []string
	PSKFile       string
	P2PPort       int
	P2PHost       string
	MDNS          bool
	Reachability  string
	TLSCert       string
	TLSKey        string
	LogLevel      string
	LogFormat     string
	Refresh       time.Duration
	Hold          time.Duration
	RegsPerSource int
	// Web
	ICEServers    []string
	ICEUser       string
	ICECredential string
	HTTP          string
	EmbedOrigins  []string
	ACME          bool
	ACMEEmail     string
	ACMEDirectory string

	// ProxyPrivateTargets lets the proxy role relay to loopback, private,
	// link-local and own addresses on the public side. Default false.
	ProxyPrivateTargets bool

	// Relay role (server/relay).
	TURN              string // UDP and TCP listen address
	RelayPorts        string // "min-max", parsed into RelayPortMin/Max
	RelayPortMin      uint16
	RelayPortMax      uint16
	RelayPrivatePeers bool
	RelayBandwidth    int64 // bytes/s per allocation and direction; 0: no cap
	RelaySecretFile   string

	// Media bridge (package bridge): browsers ↔ plain RTP/AVP phones.
	RTPPorts      string // "min-max", parsed into RTPPortMin/Max
	RTPPortMin    int
	RTPPortMax    int
	MediaTimeout  time.Duration
	MediaLoopback bool
	MediaIPs      []string     // --media-ips, parsed into MediaICEIPs
	MediaICEIPs   []netip.Addr // nil: the bridge's default (every address but loopback and link-local ones)
}

// letsEncrypt is the default ACME directory.
const letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// listFlag is a repeatable flag; from the environment it takes a
// comma-separated list.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.v = append(*l.v, part)
		}
	}
	return nil
}

func defaultDataDir() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "p2psip")
	}
	return "p2psip-data"
}

// envName is the environment variable of a flag: --psk-file → P2PSIP_PSK_FILE.
func envName(flagName string) string {
	return "P2PSIP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func newFlagSet(c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("p2psip", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Overlay, "overlay", "p2psip.local", "overlay name: the host part of every AOR in it (a DNS name)")
	fs.StringVar(&c.DataDir, "data", defaultDataDir(), "data dir: node key, owner key, TLS certificate")
	fs.StringVar(&c.HTTPS, "https", ":8443", "HTTPS listen address (softphone, API, libp2p over WebSocket); port 0 picks one")
	fs.StringVar(&c.SIP, "sip", ":5060", "SIP UDP and TCP listen address; empty turns SIP off")
	fs.StringVar(&c.SIPS, "sips", ":5061", "SIP over TLS listen address (the HTTPS certificate); empty turns it off")
	fs.StringVar(&c.SIPHost, "sip-host", "", "address other peers and phones reach this peer at, in Path/Record-Route/Via (default: the --sip host, or the first LAN IPv4 address)")
	fs.Var(listFlag{&c.Roles}, "roles", "extra roles of a peer with a public address: proxy, relay (repeatable or comma-separated)")
	fs.StringVar(&c.FQDN, "fqdn", "", "proxy role: the overlay's public DNS name (default: the overlay name)")
	fs.StringVar(&c.PublicIP, "public-addr", "", "proxy and relay roles: this peer's public IP address, announced to the overlay, used in Record-Route and as the TURN relayed address (relay default: the first LAN IPv4 address)")
	fs.BoolVar(&c.ProxyPrivateTargets, "proxy-private-targets", false, "proxy role: also relay to public-side targets that resolve to loopback, private (RFC 1918, fc00::/7), link-local or this host's addresses (default: refused with 403, against SSRF)")
	fs.StringVar(&c.TURN, "turn", ":3478", "relay role: TURN listen address, UDP and TCP (RFC 8656; RFC 6062 TCP relays); port 0 picks one")
	fs.StringVar(&c.RelayPorts, "relay-ports", "49152-65535", "relay role: range of relayed ports, min-max (open them in the firewall)")
	fs.BoolVar(&c.RelayPrivatePeers, "relay-private-peers", false, "relay role: also relay to loopback, private (RFC 1918, CGNAT, fc00::/7) and link-local peers, for a LAN or a test bed (default: refused with 403, against SSRF)")
	fs.Int64Var(&c.RelayBandwidth, "relay-bandwidth", 1<<20, "relay role: bytes per second each TURN allocation may relay in each direction; 0: no cap")
	fs.StringVar(&c.RelaySecretFile, "relay-secret-file", "", "relay role: file holding a TURN REST shared secret (coturn's static-auth-secret), for credentials minted elsewhere (default: random secrets in memory, rotated daily)")
	fs.StringVar(&c.RTPPorts, "rtp-ports", "20000-29999", "media bridge: UDP ports of bridged calls' RTP legs and of their WebRTC (ICE) sockets, min-max (open them in the firewall of a public peer)")
	fs.DurationVar(&c.MediaTimeout, "media-timeout", 30*time.Second, "media bridge: end a bridged call (BYE to both sides) when no RTP arrives this long outside hold")
	fs.BoolVar(&c.MediaLoopback, "media-loopback", false, "media bridge: offer loopback addresses as ICE candidates to browsers (a peer and its browsers on one machine, as in tests)")
	fs.Var(listFlag{&c.MediaIPs}, "media-ips", "media bridge: this peer's addresses browsers' WebRTC reaches it at; the ICE port binds these only, one candidate each (repeatable or comma-separated; default: every address but loopback and link-local ones, loopback too with --media-loopback)")
	fs.StringVar(&c.DNS, "dns", "", "DNS server (host:port) for RFC 3263 lookups of public SIP domains (default: /etc/resolv.conf)")
	fs.IntVar(&c.RegsPerSource, "registrations-per-source", 64, "live SIP registrations one source address (host:port) may hold; 0: no cap (load tests)")
	fs.StringVar(&c.Users, "users", "", "file of user:password lines: digest credentials of phones registering here (others are first-come)")
	fs.Var(listFlag{&c.Join}, "join", "https:// URL of a peer whose overlay to join (repeatable; #sha256=<fingerprint> pins its certificate)")
	fs.Var(listFlag{&c.Bootstrap}, "bootstrap", "multiaddr of a bootstrap peer, ending in /p2p/<id> (repeatable)")
	fs.StringVar(&c.PSKFile, "psk-file", "", "private overlay: libp2p swarm key file (/key/swarm/psk/1.0.0/); QUIC is off with a PSK")
	fs.IntVar(&c.P2PPort, "p2p-port", 0, "TCP and UDP (QUIC) port of the overlay; 0 picks one")
	fs.StringVar(&c.P2PHost, "p2p-host", "0.0.0.0", "IPv4 address the overlay listens on (0.0.0.0: every interface)")
	fs.BoolVar(&c.MDNS, "mdns", true, "find overlay peers on the LAN with multicast DNS")
	fs.StringVar(&c.Reachability, "reachability", "", "can other peers dial this one: auto (libp2p's AutoNAT finds out; relay reservations while unknown), public (serves the DHT, relays for NATed and HTTPS-only peers) or private (behind NAT or an HTTPS-only firewall: DHT client, reached through relays); default public with --public-addr or --roles proxy, else auto")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain (default: a self-signed one kept in the data dir)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.Var(listFlag{&c.ICEServers}, "ice-servers", "STUN/TURN URLs the softphone uses for ICE (stun:host:3478, turn:host:3478?transport=tcp; repeatable); default none")
	fs.StringVar(&c.ICEUser, "ice-username", "", "username for the --ice-servers TURN URLs")
	fs.StringVar(&c.ICECredential, "ice-credential", "", "credential for the --ice-servers TURN URLs")
	fs.StringVar(&c.HTTP, "http", "", "plain HTTP listen address that only redirects to HTTPS (and answers ACME challenges), e.g. :80; empty: none")
	fs.Var(listFlag{&c.EmbedOrigins}, "embed-origins", "origins (https://portal.example) whose pages may embed the phone widget (repeatable or comma-separated)")
	fs.BoolVar(&c.ACME, "acme", false, "get the HTTPS certificate for --fqdn from an ACME CA (Let's Encrypt); needs --fqdn and port 443 or --http :80 reachable")
	fs.StringVar(&c.ACMEEmail, "acme-email", "", "contact e-mail for the ACME account (optional)")
	fs.StringVar(&c.ACMEDirectory, "acme-directory", letsEncrypt, "ACME directory URL (another CA, or a test CA)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&c.Refresh, "refresh", 5*time.Minute, "how often hosted records are republished")
	fs.DurationVar(&c.Hold, "hold", time.Hour, "how long an expired AOR stays locked to its owner (same on every peer)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: p2psip [serve] [flags]\n       p2psip status|lookup|register|unregister --help\n\nRuns a p2psip peer. Every flag can also be set by the environment variable shown.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (%s, default %q)\n      %s\n", f.Name, envName(f.Name), f.DefValue, f.Usage)
		})
		fmt.Fprintf(out, "\nMemory: unless GOGC or GOMEMLIMIT is set, a peer sets Go's GOGC after each collection\n"+
			"(%d to %d, so that the collector takes about %g %% of the peer's CPU), under a soft memory\n"+
			"limit of half the machine's memory (or its cgroup's memory.max), at least %d MiB.\n",
			gcPercentMin, gcPercentMax, gcCPUTarget*100, memLimitFloor>>20)
	}
	return fs
}

// parseConfig reads flags, then fills flags not given on the command line
// from P2PSIP_* variables, then checks the result.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := newFlagSet(&c, out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, flag.ErrHelp
		}
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if given[f.Name] || v == "" || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
		}
	})
	if envErr != nil {
		return c, envErr
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	if err := overlay.ValidateOverlayName(c.Overlay); err != nil {
		return fmt.Errorf("--overlay: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("--data: a data directory is required")
	}
	if _, _, err := net.SplitHostPort(c.HTTPS); err != nil {
		return fmt.Errorf("--https %q: want host:port or :port: %w", c.HTTPS, err)
	}
	for name, v := range map[string]string{"--sip": c.SIP, "--sips": c.SIPS} {
		if _, _, err := net.SplitHostPort(v); v != "" && err != nil {
			return fmt.Errorf("%s %q: want host:port or :port: %w", name, v, err)
		}
	}
	if ip := net.ParseIP(c.P2PHost); ip == nil || ip.To4() == nil {
		return fmt.Errorf("--p2p-host %q: want an IPv4 address", c.P2PHost)
	}
	if c.RegsPerSource < 0 {
		return fmt.Errorf("--registrations-per-source %d: want 0 (no cap) or more", c.RegsPerSource)
	}
	if c.P2PPort < 0 || c.P2PPort > 65535 {
		return fmt.Errorf("--p2p-port %d: want 0..65535", c.P2PPort)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if _, _, err := net.SplitHostPort(c.HTTP); c.HTTP != "" && err != nil {
		return fmt.Errorf("--http %q: want host:port or :port: %w", c.HTTP, err)
	}
	if c.ACME && (c.FQDN == "" || c.TLSCert != "") {
		return errors.New("--acme needs --fqdn (the name to get a certificate for) and no --tls-cert")
	}
	if c.ACME && !strings.HasPrefix(c.ACMEDirectory, "https://") {
		return fmt.Errorf("--acme-directory %q: want an https:// URL", c.ACMEDirectory)
	}
	for _, u := range c.ICEServers {
		scheme, rest, _ := strings.Cut(u, ":")
		if (scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns") || rest == "" {
			return fmt.Errorf("--ice-servers %q: want a stun:, stuns:, turn: or turns: URL", u)
		}
	}
	for _, o := range c.EmbedOrigins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") {
			return fmt.Errorf("--embed-origins %q: want an origin like https://portal.example", o)
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.Refresh < time.Second || c.Hold < 0 {
		return fmt.Errorf("--refresh must be at least 1s and --hold not negative")
	}
	for _, r := range c.Roles {
		if r != "proxy" && r != "relay" {
			return fmt.Errorf("--roles %q: the roles are: proxy, relay", r)
		}
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	lo, hi, err := bridge.ParsePortRange(c.RTPPorts)
	if err != nil {
		return fmt.Errorf("--rtp-ports: %w", err)
	}
	c.RTPPortMin, c.RTPPortMax = lo, hi
	if c.MediaTimeout < time.Second {
		return fmt.Errorf("--media-timeout %s: want at least 1s", c.MediaTimeout)
	}
	if c.MediaICEIPs, err = bridge.ParseICEIPs(c.MediaIPs); err != nil {
		return fmt.Errorf("--media-ips: %w", err)
	}
	if len(c.MediaICEIPs) == 0 {
		c.MediaICEIPs = nil
	}
	switch c.Reachability {
	case "":
		c.Reachability = c.defaultReachability()
	case overlay.ReachAuto, overlay.ReachPublic, overlay.ReachPrivate:
	default:
		return fmt.Errorf("--reachability %q: want auto, public or private", c.Reachability)
	}
	if c.PublicIP != "" && net.ParseIP(c.PublicIP) == nil {
		return fmt.Errorf("--public-addr %q: want an IP address", c.PublicIP)
	}
	if c.ProxyPrivateTargets && !c.hasRole("proxy") {
		return errors.New("--proxy-private-targets needs --roles proxy")
	}
	if c.hasRole("proxy") && c.SIP == "" {
		return errors.New("--roles proxy needs SIP (--sip)")
	}
	if c.DNS != "" {
		if _, _, err := net.SplitHostPort(c.DNS); err != nil {
			return fmt.Errorf("--dns %q: want host:port: %w", c.DNS, err)
		}
	}
	for _, j := range c.Join {
		if !strings.HasPrefix(j, "https://") && !strings.HasPrefix(j, "http://") {
			return fmt.Errorf("--join %q: want the https:// URL of a peer", j)
		}
	}
	return nil
}

// validateRelay checks the relay role's flags.
func (c *Config) validateRelay() error {
	if !c.hasRole("relay") {
		if c.RelayPrivatePeers || c.RelaySecretFile != "" {
			return errors.New("--relay-private-peers and --relay-secret-file need --roles relay")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.TURN); err != nil {
		return fmt.Errorf("--turn %q: want host:port or :port: %w", c.TURN, err)
	}
	lo, hi, ok := strings.Cut(c.RelayPorts, "-")
	pmin, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	pmax, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || pmin == 0 || pmax < pmin {
		return fmt.Errorf("--relay-ports %q: want min-max, like 49160-49200", c.RelayPorts)
	}
	c.RelayPortMin, c.RelayPortMax = uint16(pmin), uint16(pmax)
	if c.RelayBandwidth < 0 {
		return fmt.Errorf("--relay-bandwidth %d: want bytes per second, 0 for no cap", c.RelayBandwidth)
	}
	return nil
}

func (c *Config) p2pListenAddrs() []string {
	port := strconv.Itoa(c.P2PPort)
	return []string{"/ip4/" + c.P2PHost + "/tcp/" + port, "/ip4/" + c.P2PHost + "/udp/" + port + "/quic-v1"}
}

// defaultReachability is public for a peer said to have a public address
// (--public-addr) or a role that needs one (proxy, relay),
// else auto.
func (c *Config) defaultReachability() string {
	if c.PublicIP != "" || c.hasRole("proxy") || c.hasRole("relay") {
		return overlay.ReachPublic
	}
	return overlay.ReachAuto
}

func (c *Config) hasRole(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}
