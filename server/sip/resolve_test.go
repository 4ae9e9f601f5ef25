package sip

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// dnsServer serves fixed records on loopback for the resolver tests.
func dnsServer(t *testing.T, records ...string) string {
	t.Helper()
	return dnsServerRcode(t, nil, records...)
}

func TestResolveRFC3263(t *testing.T) {
	addr := dnsServer(t,
		`atlanta.example. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.atlanta.example.`,
		`atlanta.example. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.atlanta.example.`,
		`_sip._tcp.atlanta.example. 60 IN SRV 10 0 5070 tcp.atlanta.example.`,
		`_sip._udp.atlanta.example. 60 IN SRV 10 0 5060 udp.atlanta.example.`,
		`tcp.atlanta.example. 60 IN A 127.0.0.2`,
		`udp.atlanta.example. 60 IN A 127.0.0.3`,
		`_sip._udp.biloxi.example. 60 IN SRV 5 0 5080 biloxi.example.`,
		`biloxi.example. 60 IN A 127.0.0.6`,
		`plain.example. 60 IN A 127.0.0.7`,
	)
	r := &Resolver{Server: addr}
	for uri, want := range map[string][]Hop{
		// NAPTR order 10 (TCP) before 20 (UDP), RFC 3263 §4.1.
		"sip:bob@atlanta.example": {{"TCP", "127.0.0.2:5070"}, {"UDP", "127.0.0.3:5060"}},
		// No NAPTR: SRV _sip._udp then _sip._tcp.
		"sip:bob@biloxi.example": {{"UDP", "127.0.0.6:5080"}},
		// No NAPTR, no SRV: A on 5060 UDP (§4.2).
		"sip:bob@plain.example": {{"UDP", "127.0.0.7:5060"}},
		// Explicit transport: straight to its SRV.
		"sip:bob@atlanta.example;transport=udp": {{"UDP", "127.0.0.3:5060"}},
		// Explicit port: A only.
		"sip:bob@plain.example:5099": {{"UDP", "127.0.0.7:5099"}},
		"sip:bob@127.0.0.9":          {{"UDP", "127.0.0.9:5060"}},
	} {
		var u sip.Uri
		if err := sip.ParseUri(uri, &u); err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(context.Background(), u)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: got %v %v, want %v", uri, got, err, want)
		}
	}
	var u sip.Uri
	_ = sip.ParseUri("sip:bob@nowhere.example", &u)
	if hops, err := r.Resolve(context.Background(), u); err != nil || len(hops) != 0 {
		t.Errorf("unknown domain: %v %v, want no hops", hops, err)
	}
	if _, err := (&Resolver{Server: "127.0.0.1:1", Timeout: 200 * time.Millisecond}).Resolve(context.Background(), u); err == nil {
		t.Error("a dead DNS server gave no error")
	}
}
