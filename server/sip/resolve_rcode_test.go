package sip

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// dnsServerRcode is dnsServer, except that it answers the query types in
// fail with their rcode (as dnsmasq answers NAPTR it has no data for).
func dnsServerRcode(t *testing.T, fail map[uint16]int, records ...string) string {
	t.Helper()
	zone := map[uint16]map[string][]dns.RR{}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		h := rr.Header()
		if zone[h.Rrtype] == nil {
			zone[h.Rrtype] = map[string][]dns.RR{}
		}
		zone[h.Rrtype][h.Name] = append(zone[h.Rrtype][h.Name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		qt := q.Question[0].Qtype
		if rc, ok := fail[qt]; ok {
			m.SetRcode(q, rc)
		} else {
			m.SetReply(q)
			m.Answer = zone[qt][q.Question[0].Name]
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestResolveNAPTRRefused: a DNS server that answers NAPTR with REFUSED,
// SERVFAIL or NOTIMP has no NAPTR for RFC 3263: SRV, then A, are tried.
func TestResolveNAPTRRefused(t *testing.T) {
	records := []string{
		`_sip._udp.atlanta.example. 60 IN SRV 10 0 5070 pbx.atlanta.example.`,
		`pbx.atlanta.example. 60 IN A 127.0.0.2`,
		`plain.example. 60 IN A 127.0.0.7`,
	}
	for name, fail := range map[string]map[uint16]int{
		"NAPTR REFUSED":          {dns.TypeNAPTR: dns.RcodeRefused},
		"NAPTR SERVFAIL":         {dns.TypeNAPTR: dns.RcodeServerFailure},
		"NAPTR NOTIMP":           {dns.TypeNAPTR: dns.RcodeNotImplemented},
		"NAPTR and SRV REFUSED":  {dns.TypeNAPTR: dns.RcodeRefused, dns.TypeSRV: dns.RcodeRefused},
		"NAPTR and SRV SERVFAIL": {dns.TypeNAPTR: dns.RcodeServerFailure, dns.TypeSRV: dns.RcodeServerFailure},
	} {
		r := &Resolver{Server: dnsServerRcode(t, fail, records...)}
		cases := map[string][]Hop{"sip:bob@plain.example": {{"UDP", "127.0.0.7:5060"}}}
		if _, srvFails := fail[dns.TypeSRV]; !srvFails {
			cases["sip:bob@atlanta.example"] = []Hop{{"UDP", "127.0.0.2:5070"}}
		}
		for uri, want := range cases {
			var u sip.Uri
			if err := sip.ParseUri(uri, &u); err != nil {
				t.Fatal(err)
			}
			got, err := r.Resolve(context.Background(), u)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: %s: got %v %v, want %v", name, uri, got, err, want)
			}
		}
	}
	// A failing A query is still an error: there is nothing to fall back to.
	r := &Resolver{Server: dnsServerRcode(t, map[uint16]int{dns.TypeNAPTR: dns.RcodeRefused, dns.TypeA: dns.RcodeServerFailure}, records...)}
	var u sip.Uri
	_ = sip.ParseUri("sip:bob@plain.example", &u)
	if _, err := r.Resolve(context.Background(), u); err == nil {
		t.Error("SERVFAIL for A gave no error")
	}
}
