// Package sip is the peer's SIP service (RFC 3261) on top of the overlay:
//
//   - a registrar for *@<overlay>: REGISTER bindings go into the overlay's
//     owner-locked registration records, with the peer's own SIP URI as the
//     binding's Path (RFC 3327), so that any peer can route to it;
//   - an edge proxy: requests for overlay AORs are delivered to the local
//     flows of the devices registered here, or forwarded along the Path of
//     bindings hosted by other peers (found by DHT lookup). Every forwarding
//     peer Record-Routes (RFC 3261 §16.6 step 4), so in-dialog requests
//     follow the same peers; the forwarding is transaction-stateful with
//     parallel forking (§16.7) and CANCEL (§16.10).
//
// Devices reach their peer over UDP, TCP or TLS. Flows are remembered per
// binding (the source address of the REGISTER, RFC 5626 §5), so devices
// behind NAT or with unroutable contacts still receive their calls.
package sip
