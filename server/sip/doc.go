// Package sip is the peer's SIP service (RFC 3261) on top of the overlay:
//
//   - a registrar for *@<overlay>: REGISTER bindings go into the overlay's
//     owner-locked registration records, with the peer's own name as the
//     binding's Path (RFC 3327), so that any peer can route to it;
//   - an edge proxy: requests for overlay AORs are delivered to the local
//     flows of the devices registered here, or forwarded along the Path of
//     bindings hosted by other peers (found by DHT lookup). Every forwarding
//     peer Record-Routes (RFC 3261 §16.6 step 4), so in-dialog requests
//     follow the same peers; the forwarding is transaction-stateful with
//     parallel forking (§16.7) and CANCEL (§16.10);
//   - with ProxyConfig, the overlay's P2P SIP proxy toward public SIP
//     domains (RFC 3263 resolution, public REGISTER relay with the digest
//     challenge passed through to the user agent).
//
// Devices reach their peer over UDP, TCP, TLS or WebSocket. Flows are
// remembered per binding (the source address of the REGISTER, RFC 5626
// §5), so devices behind NAT or with unroutable contacts still receive
// their calls.
//
// # SIP between peers
//
// Peers never send SIP to each other's sockets: a peer on a LAN that
// passes only HTTPS, or behind NAT, has none another network could reach.
// Every hop between peers runs over a stream of the overlay's own libp2p
// connection (protocol /p2psip/<overlay>/sip/1.0.0, direct, hole-punched
// or through a circuit relay), framed as SIP over TCP (§18.3). On the
// wire a peer is named by its node id, "<base36 CIDv1>.p2psip.invalid"
// (peername.go), in Via, Path and Record-Route; a peer resolves such a
// name to a stream, never to DNS (.invalid cannot resolve, RFC 6761). A
// stream is authenticated by both node keys, so the node it comes from is
// the sender's identity: a proxy peer relays to public domains only for
// devices registered at itself or for requests that arrive on another
// peer's stream (and that peer relays only its own registered devices').
//
// sipgo has no pluggable transport, so the streams are fed to its TCP
// transport as connections with made-up addresses (peerlink.go explains
// how); dialPeer (peerroute.go) is the one place where a request to a
// peer gets its destination. The choice keeps sipgo unpatched, and one
// path between peers (no UDP beside it) keeps routing simple: the
// benchmark in bench/README.md compares it with the old UDP path.
//
// # Transactions held for retransmissions
//
// sipgo keeps each finished transaction, parsed messages and all, for the
// 32 s the RFC gives retransmissions (RFC 3261 §17.2, RFC 6026). On a
// peer that handles hundreds of calls a second that was most of the live
// heap, and the garbage collector's marking of it the tail latency of
// every call. So a peer keeps less: client transactions end at their
// final response (txtimers.go), and a UDP server transaction that has
// sent its final response is kept as the response's bytes in a table
// with no pointers per entry (udpfinal.go; REGISTERs over UDP take the
// same way from the start, udpreg.go). Over reliable transports there
// are no retransmissions to absorb, and sipgo ends the transactions when
// the handler returns.
//
// A callee's 2xx retransmissions (§13.3.1.4: the only cure for a 200
// lost on a UDP hop) match no transaction by then; the peer keeps the
// bytes of every 2xx it relayed to an INVITE for 64*T1 and sends them up
// again for each retransmission (accepted.go).
//
// # Order within a dialog
//
// sipgo starts every request it reads on a goroutine of its own, so two
// requests read back to back (a zero-length call's ACK and BYE, DTMF as
// INFO) would race to the next hop. A peer gives each in-dialog request
// a ticket in read order and forwards it only after the one before it
// from the same side of the same dialog (order.go); a proxy on an ordered
// path must not add reordering that the UAs behind it do not expect.
// Responses race the same way: a 180 read together with the 200 behind
// it would reach the client transaction second and be dropped, so the
// reader notes each response's place and the fork relays an overtaken
// provisional response ahead of the one that overtook it (resporder.go).
//
// Where the two sides of a peer are reached differently (a peer stream on
// one side, a phone, browser or public domain on the other), the peer
// record-routes twice (RFC 5658 §4), one entry facing each side.
package sip
