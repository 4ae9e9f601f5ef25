// Package web is the peer's HTTPS face: the static site, the overlay's
// JSON API, health and Prometheus metrics, and the libp2p-over-WebSocket
// path that lets peers behind HTTPS-only firewalls join the overlay
// through this port.
//
// Routes:
//
//	GET    /                          the site (static package)
//	GET    / (WebSocket upgrade)      libp2p transport, proxied to the overlay
//	GET    /sip (WebSocket upgrade)   SIP over WebSocket, subprotocol sip (RFC 7118)
//	GET    /healthz                   liveness
//	GET    /.well-known/p2psip        overlay.JoinInfo, for --join URL
//	GET    /api/overlay               overlay, node, peers, records
//	GET    /api/registrations/{aor}   the AOR's record as the overlay has it
//	POST   /api/registrations         register a contact (loopback only)
//	DELETE /api/registrations/{aor}   withdraw it (loopback only)
//	GET    /metrics                   Prometheus
package web
