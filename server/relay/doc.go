// Package relay is the relay role of a peer: a TURN server (RFC 8656, which
// obsoletes RFC 5766; RFC 6062 TCP relays; RFC 6156 IPv6) built on
// github.com/pion/turn/v5, so that media between overlay nodes and user
// agents on the Internet can flow through a peer with a public address
// (draft-marocco-sipping-p2p-scenarios §3.1, §3.3).
//
// The caller opens the sockets: New serves TURN on the UDP PacketConns and
// stream Listeners in Config (TCP, and TLS connections the HTTPS port's
// demultiplexer already decrypted). The package adds what makes a public
// relay safe to run:
//
//   - credentials that cannot be farmed: short-lived TURN REST credentials
//     (coturn's use-auth-secret scheme) minted by Server.Mint under a
//     per-user quota, from secrets that rotate; expiry is checked on
//     Allocate only, so a call outlives its credential (creds.go);
//   - no open relay and no SSRF: permissions to loopback, private,
//     link-local, multicast and other internal addresses, in every IPv6
//     disguise, are refused, and so are the relay's own ports outside its
//     relayed range (peer.go, conn.go);
//   - allocation quotas per user and in total, and a bandwidth cap per
//     allocation (quota.go, conn.go);
//   - RTP/RTCP pairs (EVEN-PORT with a RESERVATION-TOKEN, RFC 8656
//     §7.2): the reserved port+1 is held bound until the token takes it,
//     so no other socket on the host can take it meanwhile (reserve.go);
//   - a self-test that allocates on the relay through its public address
//     (selftest.go), and Prometheus metrics (metrics.go).
package relay
