package bridge

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.applyDefaults()
	if c.PortMin != 20000 || c.PortMax != 29999 || c.ListenIP != netip.IPv4Unspecified() || c.MediaTimeout != 30*time.Second ||
		c.ICEFailedTimeout != 10*time.Second || c.PortQuarantine != time.Minute || c.RTCPInterval != 5*time.Second ||
		c.GatherTimeout != 2*time.Second || c.Logger == nil {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	// Set fields stay.
	c = Config{PortMin: 40000, PortMax: 40100, MediaTimeout: 2 * time.Second, ListenIP: netip.MustParseAddr("::1")}
	c.applyDefaults()
	if c.PortMin != 40000 || c.PortMax != 40100 || c.MediaTimeout != 2*time.Second || c.ListenIP != netip.MustParseAddr("::1") {
		t.Fatalf("set fields changed: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"two ports", Config{PortMin: 1024, PortMax: 1025}, true},
		{"top of the range", Config{PortMin: 65000, PortMax: 65535}, true},
		{"one port", Config{PortMin: 20000, PortMax: 20000}, false},
		{"privileged ports", Config{PortMin: 1000, PortMax: 2000}, false},
		{"beyond 65535", Config{PortMin: 60000, PortMax: 70000}, false},
		{"reversed", Config{PortMin: 30000, PortMax: 20000}, false},
		{"only a minimum", Config{PortMin: 20000}, false},
		{"only a maximum", Config{PortMax: 20000}, false},
		{"media timeout below a second", Config{MediaTimeout: 500 * time.Millisecond}, false},
		{"media timeout of a second", Config{MediaTimeout: time.Second}, true},
		{"ICE timeout below a second", Config{ICEFailedTimeout: time.Millisecond}, false},
		{"negative media timeout", Config{MediaTimeout: -time.Second}, false},
		{"ICE on loopback", Config{ICEIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, true},
		{"ICE on IPv4 and IPv6 loopback", Config{ICEIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}}, true},
		{"ICE on 0.0.0.0", Config{ICEIPs: []netip.Addr{netip.IPv4Unspecified()}}, false},
		{"ICE on ::", Config{ICEIPs: []netip.Addr{netip.IPv6Unspecified()}}, false},
		{"ICE on a group", Config{ICEIPs: []netip.Addr{netip.MustParseAddr("224.0.0.251")}}, false},
		{"ICE on IPv6 link-local", Config{ICEIPs: []netip.Addr{netip.MustParseAddr("fe80::1")}}, false},
		{"ICE on the zero Addr", Config{ICEIPs: []netip.Addr{{}}}, false},
		{"ICE address twice", Config{ICEIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1")}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.applyDefaults()
			err := cfg.validate()
			if (err == nil) != c.ok {
				t.Fatalf("validate(%+v) = %v, want ok %v", c.cfg, err, c.ok)
			}
			b, err := New(c.cfg)
			if err == nil {
				b.Close() // its ports are free for the next run (-count)
			}
			if (err == nil) != c.ok {
				t.Fatalf("New = %v, want ok %v", err, c.ok)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	for _, c := range []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"20000-29999", 20000, 29999, true},
		{"1024-1025", 1024, 1025, true},
		{"40000-65535", 40000, 65535, true},
		{"20000", 0, 0, false},
		{"", 0, 0, false},
		{"-", 0, 0, false},
		{"a-b", 0, 0, false},
		{"20000-", 0, 0, false},
		{"29999-20000", 0, 0, false},
		{"80-90", 0, 0, false},
		{"20000-20000", 0, 0, false},
		{"20000-70000", 0, 0, false},
		{"20000:29999", 0, 0, false},
		{"20000--29999", 0, 0, false},
		{"20000-29999x", 0, 0, false},
		{"20000-29999,40000-49999", 0, 0, false},
		{"20000-29999 ", 0, 0, false},
	} {
		lo, hi, err := ParsePortRange(c.in)
		if (err == nil) != c.ok || lo != c.lo || hi != c.hi {
			t.Errorf("ParsePortRange(%q) = %d, %d, %v; want %d, %d, ok %v", c.in, lo, hi, err, c.lo, c.hi, c.ok)
		}
	}
}

// An ICE address the host does not have fails New at once, not after
// trying 64 ports, and says which address it was.
func TestICEIPNotOnHost(t *testing.T) {
	_, err := New(Config{ICEIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.254")}})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.254") || !strings.Contains(err.Error(), "not an address of this host") {
		t.Fatalf("New with an address not on this host: %v", err)
	}
}

func TestParseICEIPs(t *testing.T) {
	for _, c := range []struct {
		in []string
		ok bool
	}{
		{nil, true},
		{[]string{"192.0.2.2"}, true},
		{[]string{"192.0.2.2", "2001:db8::2", "127.0.0.1"}, true},
		{[]string{"192.0.2.2/24"}, false},
		{[]string{"host.example"}, false},
		{[]string{""}, false},
		{[]string{"0.0.0.0"}, false},
		{[]string{"fe80::1%eth0"}, false},
		{[]string{"192.0.2.2", "192.0.2.2"}, false},
	} {
		ips, err := ParseICEIPs(c.in)
		if (err == nil) != c.ok || (err == nil && len(ips) != len(c.in)) {
			t.Errorf("ParseICEIPs(%q) = %v, %v; want ok %v", c.in, ips, err, c.ok)
		}
	}
}
