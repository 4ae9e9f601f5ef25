package overlay

import (
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

func TestTCPFirstDialRanker(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1"),
		ma.StringCast("/ip4/192.0.2.1/tcp/4001"),
		ma.StringCast("/ip4/192.0.2.1/tcp/443/tls/ws"),
	}
	delay := map[string]time.Duration{}
	for _, d := range tcpFirstDialRanker(addrs) {
		delay[d.Addr.String()] = d.Delay
	}
	tcp, quic, wss := delay["/ip4/192.0.2.1/tcp/4001"], delay["/ip4/192.0.2.1/udp/4001/quic-v1"], delay["/ip4/192.0.2.1/tcp/443/tls/ws"]
	if len(delay) != 3 || tcp != 0 || quic <= tcp || wss <= tcp {
		t.Errorf("delays: tcp %v, quic %v, wss %v (all: %v); want tcp at once, the others later", tcp, quic, wss, delay)
	}
	// Only QUIC (a private network has none, a firewall may pass only
	// one): what libp2p would do.
	only := []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1")}
	if got := tcpFirstDialRanker(only); len(got) != 1 || got[0].Delay != 0 {
		t.Errorf("QUIC alone: %v", got)
	}
}
