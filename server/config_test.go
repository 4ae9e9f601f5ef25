package main

import (
	"errors"
	"flag"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Overlay != "p2psip.local" || c.HTTPS != ":8443" || c.SIP != ":5060" || !c.MDNS || c.DataDir == "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	c, err := parseConfig([]string{"--join", "https://a:1/", "--join", "https://b:2/", "--https", "127.0.0.1:0"},
		env(map[string]string{
			"P2PSIP_OVERLAY":   "overlay.example",
			"P2PSIP_HTTPS":     ":9999", // the flag wins
			"P2PSIP_BOOTSTRAP": "/ip4/127.0.0.1/tcp/1/p2p/x, /ip4/127.0.0.1/tcp/2/p2p/y",
			"P2PSIP_MDNS":      "false",
			"P2PSIP_REFRESH":   "90s",
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Overlay != "overlay.example" || c.HTTPS != "127.0.0.1:0" || c.MDNS || c.Refresh != 90*time.Second {
		t.Fatalf("got %+v", c)
	}
	if !slices.Equal(c.Join, []string{"https://a:1/", "https://b:2/"}) || len(c.Bootstrap) != 2 {
		t.Fatalf("lists: %v %v", c.Join, c.Bootstrap)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--overlay", "Bad_Name"}, {"--https", "8443"}, {"--log-format", "xml"}, {"--log-level", "loud"},
		{"--tls-cert", "x.pem"}, {"--join", "ftp://x"}, {"--p2p-port", "70000"}, {"--p2p-host", "::1"},
		{"--refresh", "1ms"}, {"--nope"}, {"stray"}, {"--http", "80"}, {"--acme"},
		{"--acme", "--fqdn", "p.example", "--acme-directory", "http://ca"}, {"--embed-origins", "portal.example"}, {"--ice-servers", "http://x"},
		{"--proxy-private-targets"}, // without the proxy role
		{"--media-ips", "lan.example"}, {"--media-ips", "0.0.0.0"}, {"--media-ips", "192.0.2.2,192.0.2.2"},
	} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := parseConfig(nil, env(map[string]string{"P2PSIP_MDNS": "maybe"}), io.Discard); err == nil {
		t.Error("bad boolean in the environment accepted")
	}
	if _, err := parseConfig([]string{"--help"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

// FuzzParseConfig: any command line and environment value gives a config
// or an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add("--overlay", "a.b", "P2PSIP_JOIN", "https://x/,https://y/")
	f.Add("--https", "[::1]:0", "P2PSIP_P2P_PORT", "-1")
	f.Add("--bootstrap", ",,,", "P2PSIP_HOLD", "1h")
	f.Fuzz(func(t *testing.T, flagName, flagValue, envKey, envValue string) {
		c, err := parseConfig([]string{flagName, flagValue}, env(map[string]string{envKey: envValue}), io.Discard)
		if err == nil {
			if verr := c.validate(); verr != nil {
				t.Fatalf("accepted config fails validate: %v", verr)
			}
		}
	})
}

func TestParseConfigProxyPrivateTargets(t *testing.T) {
	c, err := parseConfig([]string{"--roles", "proxy"}, env(nil), io.Discard)
	if err != nil || c.ProxyPrivateTargets {
		t.Fatalf("default: %v %v, want false", c.ProxyPrivateTargets, err)
	}
	c, err = parseConfig([]string{"--roles", "proxy"}, env(map[string]string{"P2PSIP_PROXY_PRIVATE_TARGETS": "true"}), io.Discard)
	if err != nil || !c.ProxyPrivateTargets {
		t.Fatalf("from P2PSIP_PROXY_PRIVATE_TARGETS: %v %v, want true", c.ProxyPrivateTargets, err)
	}
}

func TestParseConfigMediaIPs(t *testing.T) {
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil || c.MediaICEIPs != nil {
		t.Fatalf("default: %v %v, want nil (the bridge's own default)", c.MediaICEIPs, err)
	}
	c, err = parseConfig([]string{"--media-ips", "192.0.2.2"}, env(map[string]string{"P2PSIP_MEDIA_IPS": "198.51.100.1"}), io.Discard)
	if err != nil || !slices.Equal(c.MediaICEIPs, []netip.Addr{netip.MustParseAddr("192.0.2.2")}) {
		t.Fatalf("from the flag: %v %v", c.MediaICEIPs, err)
	}
	c, err = parseConfig(nil, env(map[string]string{"P2PSIP_MEDIA_IPS": "192.0.2.2, 2001:db8::2"}), io.Discard)
	if err != nil || !slices.Equal(c.MediaICEIPs, []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")}) {
		t.Fatalf("from P2PSIP_MEDIA_IPS: %v %v", c.MediaICEIPs, err)
	}
}
