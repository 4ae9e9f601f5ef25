package overlay

import (
	"net"
	"strconv"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// wsBackendAddr is where the node listens for plain WebSocket; only the
// local web server's proxy reaches it.
const wsBackendAddr = "/ip4/127.0.0.1/tcp/0/ws"

// isWS reports whether a carries a WebSocket component.
func isWS(a ma.Multiaddr) bool {
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_WS, ma.P_WSS:
			return true
		}
	}
	return false
}

// advertised rewrites the host's listen addresses: the loopback WebSocket
// backend is hidden (it is reachable only through the HTTPS port), and the
// HTTPS port is advertised as /tls/ws on every address it serves.
// Circuit addresses (<relay addr>/p2p/<relay>/p2p-circuit, added by
// AutoRelay while the node is private) pass untouched, whatever transport
// reaches the relay (often the relay's own /tls/ws on 443); their IP is the
// relay's, never one of ours.
func (n *Node) advertised(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(addrs)+2)
	ips := map[string]net.IP{}
	for _, a := range addrs {
		if isCircuitAddr(a) {
			out = append(out, a)
			continue
		}
		if isWS(a) {
			continue
		}
		out = append(out, a)
		if ip, err := manet.ToIP(a); err == nil {
			ips[ip.String()] = ip
		}
	}
	out = append(out, n.circuitAddrsFor(out)...)
	wss := n.cfg.WSS
	if wss == nil {
		return out
	}
	port := strconv.Itoa(wss.Port)
	if !wss.IP.IsUnspecified() && wss.IP != nil {
		ips = map[string]net.IP{wss.IP.String(): wss.IP}
	}
	for _, ip := range ips {
		ipma, err := manet.FromIP(ip)
		if err != nil {
			continue
		}
		w, err := ma.NewMultiaddr("/tcp/" + port + "/tls/ws")
		if err != nil {
			continue
		}
		out = append(out, ipma.Encapsulate(w))
	}
	return out
}

// WSBackend returns the host:port of the node's plain WebSocket listener,
// which the HTTPS server proxies libp2p upgrades to; "" when WSS is off.
func (n *Node) WSBackend() string {
	for _, a := range n.host.Network().ListenAddresses() {
		if !isWS(a) {
			continue
		}
		na, err := manet.ToNetAddr(a.Decapsulate(ma.StringCast("/ws")))
		if err == nil {
			return na.String()
		}
	}
	return ""
}
