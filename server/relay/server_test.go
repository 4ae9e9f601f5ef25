package relay

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestConfigValidate(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for name, c := range map[string]Config{
		"no sockets":     {RelayIP: mustAddr("192.0.2.1")},
		"no relay ip":    {PacketConns: []net.PacketConn{pc}},
		"unspecified ip": {PacketConns: []net.PacketConn{pc}, RelayIP: mustAddr("0.0.0.0")},
		"ports reversed": {PacketConns: []net.PacketConn{pc}, RelayIP: mustAddr("192.0.2.1"), PortMin: 50000, PortMax: 49000},
		"ttl > rotation": {PacketConns: []net.PacketConn{pc}, RelayIP: mustAddr("192.0.2.1"), SecretRotation: time.Hour, MaxTTL: 2 * time.Hour},
		"family":         {PacketConns: []net.PacketConn{pc}, RelayIP: mustAddr("192.0.2.1"), BindIP: mustAddr("::")},
	} {
		if err := c.validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: validate() = %v, want ErrBadConfig", name, err)
		}
	}
	c := Config{PacketConns: []net.PacketConn{pc}, RelayIP: mustAddr("192.0.2.1")}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.PortMin != 49152 || c.PortMax != 65535 || c.Realm != "p2psip" || c.SecretRotation != 24*time.Hour ||
		c.MaxTTL != 12*time.Hour || c.BindIP != netip.IPv4Unspecified() || c.Bandwidth != 1<<20 {
		t.Errorf("defaults: %+v", c)
	}
}

// TestRelayUDP allocates with pion's client over UDP and relays to a peer
// and back, through a permission and through a channel.
func TestRelayUDP(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllowPrivatePeers = true })
	peer := echoPeer(t, "127.0.0.2:0")
	cred, err := r.Mint("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := udpClient(t, r.udp, cred)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	ra := relayed.LocalAddr().(*net.UDPAddr)
	if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < 61000 || ra.Port > 61999 {
		t.Errorf("relayed address %v: want 127.0.0.1 in 61000-61999", ra)
	}
	for i := range 5 { // pion binds a channel after the first sends
		if err := roundTrip(relayed, peer, "hello "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(r.metrics.allocations.WithLabelValues("udp")); got != 1 {
		t.Errorf("allocations gauge = %v, want 1", got)
	}
	// The relay counts a datagram after sending it: the echo can be
	// faster.
	waitFor(t, "5 packets counted each way", func() bool {
		return metricValue(r.metrics.packets.WithLabelValues(dirToPeer)) >= 5 && metricValue(r.metrics.packets.WithLabelValues(dirFromPeer)) >= 5
	})
	if got := metricValue(r.metrics.bytes.WithLabelValues(dirFromPeer)); got < 5*7 {
		t.Errorf("bytes from peer = %v", got)
	}
	if got := metricValue(r.metrics.permissions); got != 1 {
		t.Errorf("permissions gauge = %v, want 1", got)
	}
	_ = relayed.Close()
	waitFor(t, "allocation released", func() bool { return metricValue(r.metrics.allocations.WithLabelValues("udp")) == 0 })
}

// TestRelayTCP is an RFC 6062 TCP allocation: Connect to a TCP peer, data
// both ways.
func TestRelayTCP(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllowPrivatePeers = true })
	pl, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	go func() {
		for {
			conn, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 100)
				n, _ := conn.Read(buf)
				_, _ = conn.Write(buf[:n])
			}()
		}
	}()
	cred, _ := r.Mint("bob", time.Minute)
	control, err := net.Dial("tcp4", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: r.tcp, TURNServerAddr: r.tcp, Conn: turn.NewSTUNConn(control),
		Username: cred.Username, Password: cred.Password, Realm: defaultRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	if got := metricValue(r.metrics.allocations.WithLabelValues("tcp")); got != 1 {
		t.Errorf("tcp allocations = %v", got)
	}
	conn, err := alloc.DialTCP("tcp4", nil, pl.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("over tcp")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "over tcp" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	waitFor(t, "8 bytes each way", func() bool {
		return metricValue(r.metrics.bytes.WithLabelValues(dirToPeer)) == 8 && metricValue(r.metrics.bytes.WithLabelValues(dirFromPeer)) == 8
	})
	// Connect to the relay's own TURN port is refused (447: pion maps a
	// failed dial so), and counted.
	if _, err := alloc.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(r.tcp))); err == nil {
		t.Error("Connect to the relay's own TCP port succeeded")
	}
	if metricValue(r.metrics.refusals.WithLabelValues(reasonOwnPort)) != 1 {
		t.Error("own-port Connect refusal not counted")
	}
}

// TestRelayTCPRefused: Connect to an internal peer gets 403.
func TestRelayTCPRefused(t *testing.T) {
	r := newTestRelay(t, nil)
	cred, _ := r.Mint("oscar", time.Minute)
	control, err := net.Dial("tcp4", r.tcp)
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: r.tcp, TURNServerAddr: r.tcp, Conn: turn.NewSTUNConn(control),
		Username: cred.Username, Password: cred.Password, Realm: defaultRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	_, err = alloc.DialTCP("tcp4", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22})
	if errCode(err) != 403 {
		t.Errorf("Connect to 127.0.0.1:22 = %v, want 403", err)
	}
}

// TestPermissionRefused: internal peers get 403 on CreatePermission and are
// counted by reason; a public one is allowed.
func TestPermissionRefused(t *testing.T) {
	r := newTestRelay(t, nil)
	cred, _ := r.Mint("mallory", time.Minute)
	c := udpClient(t, r.udp, cred)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	for _, peer := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1"} {
		ip := net.ParseIP(peer)
		if ip.To4() == nil {
			continue // an IPv4 allocation: IPv6 peers get 443 before the hook
		}
		err := c.CreatePermission(&net.UDPAddr{IP: ip, Port: 9})
		if errCode(err) != 403 {
			t.Errorf("CreatePermission(%s) = %v, want 403", peer, err)
		}
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 9}); err != nil {
		t.Errorf("CreatePermission(192.0.2.1) = %v, want success", err)
	}
	if got := metricValue(r.metrics.refusals.WithLabelValues(reasonLoopback)); got != 2 {
		t.Errorf("loopback refusals = %v, want 2 (127.0.0.1 and ::ffff:127.0.0.1)", got)
	}
	if got := metricValue(r.metrics.refusals.WithLabelValues(reasonMetadata)); got != 1 {
		t.Errorf("metadata refusals = %v, want 1", got)
	}
	// ChannelBind runs the same hook. (pion answers a refused ChannelBind
	// with 401 rather than RFC 8656's 403; the refusal is what matters.)
	code := transact(t, c, r.udp, cred, stun.MethodChannelBind,
		channelNumber(0x4001), xorPeer(net.ParseIP("10.1.1.1"), 5000))
	if code == 0 || metricValue(r.metrics.refusals.WithLabelValues(reasonPrivate)) != 2 {
		t.Errorf("ChannelBind to 10.1.1.1 = %d, want a refusal counted as private", code)
	}
}

// TestOwnPorts: the relay's own listening ports cannot be reached through
// it, but another client's relayed address can.
func TestOwnPorts(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllowPrivatePeers = true })
	credA, _ := r.Mint("a", time.Minute)
	credB, _ := r.Mint("b", time.Minute)
	a, b := udpClient(t, r.udp, credA), udpClient(t, r.udp, credB)
	ra, err := a.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := b.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	// b lets a in, then a reaches b's relayed address on the relay's own IP.
	if err := b.CreatePermission(ra.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.WriteTo([]byte("to b"), rb.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = rb.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, from, err := rb.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to b" {
		t.Fatalf("b read %q from %v: %v", buf[:n], from, err)
	}
	// The TURN port itself is refused: the datagram is dropped and counted.
	turnAddr, _ := net.ResolveUDPAddr("udp4", r.udp)
	if _, err := ra.WriteTo([]byte("to the relay's own port"), turnAddr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "own_port refusal", func() bool { return metricValue(r.metrics.refusals.WithLabelValues(reasonOwnPort)) >= 1 })
}

// TestExpiryOnAllocateOnly: after the credential expires, the allocation
// made with it keeps working (Refresh, CreatePermission, ChannelBind,
// data), and a new Allocate gets 401.
func TestExpiryOnAllocateOnly(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllowPrivatePeers = true })
	peer := echoPeer(t, "127.0.0.2:0")
	cred, _ := r.Mint("carol", 10*time.Second)
	c := udpClient(t, r.udp, cred)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	if err := roundTrip(relayed, peer, "before"); err != nil {
		t.Fatal(err)
	}
	r.skew.Store(int64(time.Minute)) // the credential is now 50 s past its expiry
	if code := transact(t, c, r.udp, cred, stun.MethodRefresh); code != 0 {
		t.Errorf("Refresh after expiry = %d, want success", code)
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}); err != nil {
		t.Errorf("CreatePermission after expiry = %v", err)
	}
	if code := transact(t, c, r.udp, cred, stun.MethodChannelBind, channelNumber(0x4555), xorPeer(net.ParseIP("192.0.2.8"), 2)); code != 0 {
		t.Errorf("ChannelBind after expiry = %d", code)
	}
	if err := roundTrip(relayed, peer, "after"); err != nil {
		t.Errorf("data after expiry: %v", err)
	}
	c2 := udpClient(t, r.udp, cred)
	if _, err := c2.Allocate(); errCode(err) != 401 {
		t.Errorf("Allocate with an expired credential = %v, want 401", err)
	}
	if got := metricValue(r.metrics.authFailures.WithLabelValues("expired")); got < 1 {
		t.Errorf("expired auth failures = %v", got)
	}
}

func TestWrongPassword(t *testing.T) {
	r := newTestRelay(t, nil)
	cred, _ := r.Mint("dave", time.Minute)
	cred.Password = string(cred.Password[0]^1) + cred.Password[1:] // always differs
	if _, err := udpClient(t, r.udp, cred).Allocate(); errCode(err) != 401 {
		t.Errorf("Allocate with a wrong password = %v, want 401", err)
	}
	if got := metricValue(r.metrics.authFailures.WithLabelValues("bad_password")); got != 1 {
		t.Errorf("bad_password failures = %v, want 1", got)
	}
}

// TestAllocationQuota: the N+1th allocation of a user gets 486, and so
// does one past the total.
func TestAllocationQuota(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllocationsPerUser = 2; c.AllocationsTotal = 3 })
	cred, _ := r.Mint("erin", time.Minute)
	for i := range 2 {
		rc, err := udpClient(t, r.udp, cred).Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		defer rc.Close()
	}
	if _, err := udpClient(t, r.udp, cred).Allocate(); errCode(err) != 486 {
		t.Errorf("third allocation of one user = %v, want 486", err)
	}
	other, _ := r.Mint("frank", time.Minute)
	rc, err := udpClient(t, r.udp, other).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := udpClient(t, r.udp, other).Allocate(); errCode(err) != 486 {
		t.Errorf("allocation past the total = %v, want 486", err)
	}
	if metricValue(r.metrics.refusals.WithLabelValues(reasonUserQuota)) != 1 || metricValue(r.metrics.refusals.WithLabelValues(reasonTotalQuota)) != 1 {
		t.Errorf("quota refusals not counted")
	}
}

// TestRESTCredential checks the TURN REST format against an independent
// computation, and that a static secret interoperates with pion's (and
// coturn's) generator.
func TestRESTCredential(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.StaticSecret = []byte("s3cret") })
	before := time.Now()
	cred, err := r.Mint("grace", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp, user, ok := strings.Cut(cred.Username, ":")
	if !ok || user != "grace" {
		t.Fatalf("username %q", cred.Username)
	}
	sec, _ := strconv.ParseInt(exp, 10, 64)
	if d := time.Unix(sec, 0).Sub(before); d < time.Hour-time.Second || d > time.Hour+2*time.Second || !cred.Expires.Equal(time.Unix(sec, 0)) {
		t.Errorf("expiry %v, %v after minting", cred.Expires, d)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(cred.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); cred.Password != want {
		t.Errorf("password %q, want %q", cred.Password, want)
	}
	u, p, _ := turn.GenerateLongTermTURNRESTCredentials("s3cret", "heidi", time.Minute)
	rc, err := udpClient(t, r.udp, Credential{Username: u, Password: p}).Allocate()
	if err != nil {
		t.Fatalf("allocating with an externally minted credential: %v", err)
	}
	_ = rc.Close()

	for _, bad := range []string{"", "a:b", "with space", strings.Repeat("x", 129), "tab\t"} {
		if _, err := r.Mint(bad, time.Minute); !errors.Is(err, ErrBadUser) {
			t.Errorf("Mint(%q) = %v, want ErrBadUser", bad, err)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, 13 * time.Hour} {
		if _, err := r.Mint("ivan", ttl); !errors.Is(err, ErrBadTTL) {
			t.Errorf("Mint ttl %v = %v, want ErrBadTTL", ttl, err)
		}
	}
}

func TestMintQuota(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.MintsPerMinute = 3 })
	r.skew.Store(int64(time.Until(time.Now().Truncate(time.Minute).Add(5 * time.Second))))
	for i := range 3 {
		if _, err := r.Mint("judy", time.Minute); err != nil {
			t.Fatalf("mint %d: %v", i, err)
		}
	}
	if _, err := r.Mint("judy", time.Minute); !errors.Is(err, ErrMintQuota) {
		t.Errorf("fourth mint = %v, want ErrMintQuota", err)
	}
	if _, err := r.Mint("ken", time.Minute); err != nil {
		t.Errorf("another user: %v", err)
	}
	r.skew.Add(int64(time.Minute))
	if _, err := r.Mint("judy", time.Minute); err != nil {
		t.Errorf("next minute: %v", err)
	}
}

// TestRotation: a credential survives one rotation of the secret, for
// Allocate and for the allocation's later requests, and not two.
func TestRotation(t *testing.T) {
	r := newTestRelay(t, nil)
	cred, _ := r.Mint("leo", time.Hour)
	r.keys.rotate()
	c := udpClient(t, r.udp, cred)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate after one rotation: %v", err)
	}
	defer relayed.Close()
	fresh, _ := r.Mint("leo", time.Hour)
	if fresh.Password == restPassword(r.keys.prev.key, fresh.Username) {
		t.Error("minting still uses the previous secret")
	}
	if _, err := udpClient(t, r.udp, fresh).Allocate(); err != nil {
		t.Errorf("Allocate with a credential of the new secret: %v", err)
	}
	r.keys.rotate()
	if code := transact(t, c, r.udp, cred, stun.MethodRefresh); code != 401 {
		t.Errorf("Refresh after two rotations = %d, want 401", code)
	}
	if _, err := udpClient(t, r.udp, cred).Allocate(); errCode(err) != 401 {
		t.Errorf("Allocate after two rotations = %v, want 401", err)
	}
}

func TestSelfTest(t *testing.T) {
	r := newTestRelay(t, nil)
	rtt, err := r.SelfTest(context.Background(), r.udp)
	if err != nil || rtt <= 0 {
		t.Fatalf("SelfTest = %v, %v", rtt, err)
	}
	waitFor(t, "self-test allocation released", func() bool { return metricValue(r.metrics.allocations.WithLabelValues("udp")) == 0 })
	// Nothing listens there.
	dead, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	addr := dead.LocalAddr().String()
	_ = dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.SelfTest(ctx, addr); !errors.Is(err, ErrSelfTest) {
		t.Errorf("SelfTest to a dead address = %v, want ErrSelfTest", err)
	}
}

// TestBandwidthCap: datagrams over an allocation's cap are dropped and
// counted.
func TestBandwidthCap(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.AllowPrivatePeers = true; c.Bandwidth = 1000 })
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cred, _ := r.Mint("mike", time.Minute)
	relayed, err := udpClient(t, r.udp, cred).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	payload := make([]byte, 1000)
	for range 100 { // 100 kB against a burst of 64 KiB
		if _, err := relayed.WriteTo(payload, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "drops over the cap", func() bool { return metricValue(r.metrics.dropped.WithLabelValues(dirToPeer)) > 0 })
	if got := metricValue(r.metrics.bytes.WithLabelValues(dirToPeer)); got > 66000 {
		t.Errorf("relayed %v bytes past a 1000 B/s cap with a 64 KiB burst", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// channelNumber and xorPeer build CHANNEL-NUMBER and XOR-PEER-ADDRESS
// (RFC 8656 §18.1, §18.3) for hand-made requests.
type channelNumber uint16

func (n channelNumber) AddTo(m *stun.Message) error {
	m.Add(stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0})
	return nil
}

func xorPeer(ip net.IP, port int) stun.Setter {
	return xorPeerAddr{stun.XORMappedAddress{IP: ip, Port: port}}
}

type xorPeerAddr struct{ a stun.XORMappedAddress }

func (x xorPeerAddr) AddTo(m *stun.Message) error { return x.a.AddToAs(m, stun.AttrXORPeerAddress) }

// TestPermissionRefusedIPv6: an IPv6 relay judges the IPv4 address inside
// IPv4-compatible, NAT64 and 6to4 peers, and IPv6's own internal ranges.
func TestPermissionRefusedIPv6(t *testing.T) {
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		skipOrFail(t, fmt.Errorf("no IPv6 loopback: %w", err))
	}
	r := newTestRelay(t, func(c *Config) {
		_ = c.PacketConns[0].Close()
		_ = c.Listeners[0].Close()
		c.PacketConns, c.Listeners = []net.PacketConn{pc}, nil
		c.RelayIP = mustAddr("::1")
	})
	cred, _ := r.Mint("ipv6", time.Minute)
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := pc.LocalAddr().String()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: cred.Username, Password: cred.Password, Realm: defaultRealm,
		RequestedAddressFamily: turn.RequestedAddressFamilyIPv6,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	if ip := relayed.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv6loopback) {
		t.Errorf("relayed address %v, want ::1", ip)
	}
	for _, peer := range []string{"::1", "::", "fe80::1", "fc00::1", "fec0::1", "ff02::1",
		"::127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a00:1::1", "64:ff9b:1::1"} {
		if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(peer), Port: 9}); errCode(err) != 403 {
			t.Errorf("CreatePermission(%s) = %v, want 403", peer, err)
		}
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 9}); err != nil {
		t.Errorf("CreatePermission(2001:db8::1) = %v, want success", err)
	}
}
