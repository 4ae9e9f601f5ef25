// Package overlay is the p2psip overlay: a libp2p host running the
// Kademlia DHT (go-libp2p-kad-dht, server mode) under the protocol prefix
// /p2psip/<overlay name>, so that overlays never mix, and the signed
// records P2P SIP needs (draft-marocco-sipping-p2p-scenarios §3).
//
// # Records
//
// Every value lives under the "sip" namespace and is an Envelope: opaque
// JSON body bytes, the signer's public key and a signature over
// "p2psip/record/v1\n" ‖ body. Signing the exact bytes needs no canonical
// JSON, so a browser can sign a body it built with JSON.stringify.
//
//   - /sip/reg/<AOR> holds a Registration: every device binding of the AOR
//     (instance, hosting node, contact, Path, expiry, q). It is signed with
//     ECDSA P-256 (IEEE P1363 signatures, raw public points: what WebCrypto
//     produces) by the AOR's owner, or by a device key that the owner
//     certified in the record (DeviceCert). Updates raise Seq.
//   - /sip/svc/<service>/<peer id> holds one node's ServiceEntry (proxy,
//     relay) signed by that node's libp2p key: the key names the writer, so
//     nobody can overwrite another node's entry. Nodes also Provide the
//     service's CID so FindService finds the writers.
//
// # Validation and the owner lock
//
// Every storing node runs Validator on every PUT: signature, device
// certificates, expiry, size, and that the AOR's host part is the overlay
// name. The first key to register an AOR owns it: while a node stores a
// record of the AOR that is live, or expired less than Hold ago, it refuses
// records by any other owner. Unregistering writes a tombstone (no
// bindings) that keeps the hold. Where nodes disagree (a record that
// reached only some nodes), Select prefers the earlier claim.
//
// # Durability
//
// The DHT stores each value on the ~20 peers closest to its key but does
// not re-replicate after churn; the node that hosts a registration
// republishes it every RefreshInterval (and when a new peer joins), so a
// registration whose owner is alive is found again after one interval
// even if the peers that stored it are gone. Close withdraws what the node
// hosts.
//
// # Transports and discovery
//
// TCP and QUIC (not with a PSK: libp2p's QUIC cannot run in a private
// network), and libp2p over WebSocket behind the peer's HTTPS port
// (advertised as /tcp/<https port>/tls/ws), so peers behind firewalls that
// pass only HTTPS still reach public peers. Peers find each other by mDNS
// on the LAN, configured bootstrap multiaddrs, and join-by-URL: any peer
// serves its JoinInfo at /.well-known/p2psip.
package overlay
