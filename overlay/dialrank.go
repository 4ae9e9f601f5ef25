package overlay

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// tcpFirstDialRanker is libp2p's dial ranker (happy eyeballs: the first
// address at once, the others after a delay, the first connection up
// wins) with TCP and QUIC swapped: plain TCP addresses start when QUIC
// ones would have, and QUIC ones when TCP ones would have. WebSocket,
// relay and other addresses keep their places.
//
// Why: SIP between peers rides streams of whatever connection the dial
// yields (a peer pair normally holds one; a --join on a LAN got QUIC),
// and QUIC costs more per small message than TCP with its security and
// yamux: on one core of the benchmark machine 42-47 us of CPU per
// 800-byte request and answer against 29-38 us (BenchmarkStreamTransports).
// In a profile of two peers relaying 350 calls/s over QUIC, quic-go was
// 13 % of the samples and Go's timers another 5 %, and the pair took 16 %
// more samples than over TCP (bench/peers/run.sh, PERF=1; an unprofiled
// run on the busy machine showed no difference). Where only one of them
// passes a firewall, that one still connects, a delay later (30 ms on a
// LAN, 250 ms beyond). Hole punching is not ranked (libp2p dials all
// addresses at once for it).
func tcpFirstDialRanker(addrs []ma.Multiaddr) []network.AddrDelay {
	res := swarm.DefaultDialRanker(addrs)
	const unset = time.Duration(-1)
	firstTCP, firstQUIC := unset, unset
	for _, d := range res {
		switch {
		case isPlainTCP(d.Addr) && (firstTCP == unset || d.Delay < firstTCP):
			firstTCP = d.Delay
		case isDirectQUIC(d.Addr) && (firstQUIC == unset || d.Delay < firstQUIC):
			firstQUIC = d.Delay
		}
	}
	if firstTCP == unset || firstQUIC == unset || firstTCP <= firstQUIC {
		return res
	}
	shift := firstTCP - firstQUIC
	for i, d := range res {
		switch {
		case isPlainTCP(d.Addr):
			res[i].Delay = max(d.Delay-shift, 0)
		case isDirectQUIC(d.Addr):
			res[i].Delay = d.Delay + shift
		}
	}
	return res
}

// isPlainTCP matches TCP addresses that are not WebSocket (or any other
// protocol on top of TCP) and not relayed.
func isPlainTCP(a ma.Multiaddr) bool {
	plain := false
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_TCP:
			plain = true
		case ma.P_WS, ma.P_WSS, ma.P_TLS, ma.P_SNI, ma.P_CIRCUIT, ma.P_HTTP, ma.P_HTTPS:
			return false
		}
	}
	return plain
}

// isDirectQUIC matches QUIC addresses that are not relayed.
func isDirectQUIC(a ma.Multiaddr) bool {
	if !isQUIC(a) {
		return false
	}
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err != nil
}
