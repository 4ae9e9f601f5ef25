// Package overlay is the p2psip overlay: a libp2p host running the
// Kademlia DHT (go-libp2p-kad-dht; server or client mode by reachability)
// under the protocol prefix
// /p2psip/<overlay name>, so that overlays never mix, and the signed
// records P2P SIP needs (draft-marocco-sipping-p2p-scenarios §3).
//
// # Records
//
// Every value lives under the "sip" namespace and is an Envelope: opaque
// JSON body bytes, the signer's public key and a signature over
// "p2psip/record/v1\n" ‖ body, or over a batch of bodies with a proof
// that places this one in it (see Batch signatures). Signing the exact
// bytes needs no canonical JSON, so a browser can sign a body it built
// with JSON.stringify.
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
// # Batch signatures
//
// A node signs the records of the phones it hosts with its own P-256 key,
// and under load one ECDSA signature per record (~40 µs) is a quarter of
// a REGISTER's CPU time. Records the node's key (*P256Key) signs
// concurrently are therefore signed as a batch, a group commit: at most
// one signature per key is in progress; the callers that arrive meanwhile
// queue, and the next signer takes them all (at most 64) and signs them
// together. A caller alone signs its record plainly at once, in the plain
// format; nothing ever waits on a timer for a batch to fill.
//
// A batch is a Merkle tree built as in RFC 6962 §2.1: leaf i is
// SHA-256(0x00 ‖ "p2psip/record/v1\n" ‖ body i), an inner node is
// SHA-256(0x01 ‖ left ‖ right), and a tree of n leaves splits at the
// largest power of two below n. The distinct prefixes keep an inner node
// from passing as a leaf (a second preimage of the tree). The key signs
// "p2psip/record-batch/v1\n" ‖ n (4 bytes, big-endian) ‖ root, as a
// certificate log signs its tree head: the size is signed because an
// inclusion proof alone does not fix it (a leaf can rebuild the same root
// under more than one size), and with the size fixed each leaf index has
// its own path. Each record's Envelope has Alg "p256-batch", that one
// signature, and a Proof: the leaf index, the tree size and the audit path
// (RFC 6962 §2.1.1, deepest sibling first), verified as RFC 9162
// §2.1.3.2 does, with a path exactly as long as index and size require.
// A record of a batch is on its own as valid as a plainly signed one:
// it needs no other record of the batch.
//
// Validators remember the (signer, size, root, signature) tuples that
// verified, so the other records of a batch cost a node a few hashes
// rather than a signature verification. Plain "p256" records, which
// browsers sign with WebCrypto and which older nodes wrote, are unchanged
// and stay valid; a proof on one is refused.
//
// This departs from DESIGN.md's one signature per record: a record is
// still signed by its owner's key alone and verifiable alone, but the
// signed message is a tree head that covers other records of the same key.
// The cost is ~300 bytes of proof per batched record and one hash per
// tree level; nodes that predate the format refuse "p256-batch" records
// (their strict decoding refuses the proof field), so an overlay should
// run one version.
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
// hosts. A node without peers stores its writes in its own value store
// directly (validated as every write is) and spreads them when the first
// peer arrives. Such a node trusts what it stores: a value it has just
// signed is not decoded or verified again, and the value it stores
// already, validated when it was stored, is only checked for the time
// (expiry, device certificates), so a refresh of a record out of every
// cache costs no signature verification.
//
// # Transports and discovery
//
// TCP and QUIC (not with a PSK: libp2p's QUIC cannot run in a private
// network), and libp2p over WebSocket behind the peer's HTTPS port
// (advertised as /tcp/<https port>/tls/ws), so peers behind firewalls that
// pass only HTTPS still reach public peers. Peers find each other by mDNS
// on the LAN, configured bootstrap multiaddrs, and join-by-URL: any peer
// serves its JoinInfo at /.well-known/p2psip.
//
// Noise (preferred) or TLS secures every connection. Over plain TCP they
// run on internal/rawconn, which reads and writes the socket with raw
// system calls (rawsec.go): each SIP message between peers is one write,
// and as a blocking system call each cost a one-core peer two thread
// switches whenever the runtime's sysmon caught it in the kernel.
//
// # Reachability
//
// Config.Reachability (auto, public, private) decides how other peers
// reach this one, with go-libp2p's own machinery (reach.go). Public peers
// serve the DHT, answer AutoNAT probes and run the circuit relay v2
// service for the overlay's members only (a member speaks the overlay's
// DHT or member protocol), without libp2p's 2-minute/128 KiB circuit
// limit and with 1024 reservations per IP address (a whole NATed LAN).
// Private peers are DHT clients and hold reservations on two relays found
// among their connections (over whatever passes, WSS on 443 included),
// replace a dead relay within seconds (30 s backoff instead of an hour),
// and advertise /p2p-circuit addresses; hole punching (DCUtR) upgrades a
// relayed connection where it can. Auto peers serve the DHT unless AutoNAT
// finds them private while a public DHT server is known, so an ad-hoc LAN
// with no public peer still stores and finds records, and hold relay
// reservations while their reachability is unknown. Dials are bounded per
// address (8 s public, 4 s LAN) and libp2p's dial backoff skips addresses
// that failed recently.
package overlay
