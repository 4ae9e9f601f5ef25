package relay

import "github.com/prometheus/client_golang/prometheus"

// Directions of relayed traffic, as seen from the client.
const (
	dirToPeer   = "to_peer"
	dirFromPeer = "from_peer"
)

type metrics struct {
	allocations  *prometheus.GaugeVec   // transport
	permissions  prometheus.Gauge       // live permissions
	permsCreated prometheus.Counter     //
	bytes        *prometheus.CounterVec // direction
	packets      *prometheus.CounterVec // direction (reads and writes on the relayed side)
	dropped      *prometheus.CounterVec // direction: over the bandwidth cap
	refusals     *prometheus.CounterVec // reason
	authFailures *prometheus.CounterVec // reason
	mints        *prometheus.CounterVec // result

	// The per-packet counters, resolved once: a label lookup per datagram
	// would cost more than the relaying.
	toPeerBytes, toPeerPackets, fromPeerBytes, fromPeerPackets prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		allocations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "p2psip_relay_allocations", Help: "Live TURN allocations, by relayed transport (udp, tcp).",
		}, []string{"transport"}),
		permissions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2psip_relay_permissions", Help: "Live TURN permissions (one per allocation and peer IP).",
		}),
		permsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2psip_relay_permissions_created_total", Help: "TURN permissions created.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_bytes_total", Help: "Bytes relayed on the peer side, by direction (to_peer, from_peer).",
		}, []string{"direction"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_packets_total", Help: "Datagrams (UDP) or reads and writes (TCP) relayed on the peer side, by direction.",
		}, []string{"direction"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_dropped_packets_total", Help: "Datagrams dropped over an allocation's bandwidth cap, by direction.",
		}, []string{"direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_refusals_total", Help: "Permissions, connections, datagrams and allocations the relay refused, by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_auth_failures_total", Help: "TURN requests that failed authentication, by reason (bad_password, expired, malformed, stale_secret).",
		}, []string{"reason"}),
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_relay_credentials_minted_total", Help: "Credential requests, by result (ok, quota, bad_request).",
		}, []string{"result"}),
	}
	m.toPeerBytes, m.toPeerPackets = m.bytes.WithLabelValues(dirToPeer), m.packets.WithLabelValues(dirToPeer)
	m.fromPeerBytes, m.fromPeerPackets = m.bytes.WithLabelValues(dirFromPeer), m.packets.WithLabelValues(dirFromPeer)
	if reg != nil {
		reg.MustRegister(m.allocations, m.permissions, m.permsCreated, m.bytes, m.packets,
			m.dropped, m.refusals, m.authFailures, m.mints)
	}
	return m
}

func (m *metrics) count(direction string, n int) {
	if n <= 0 {
		return
	}
	if direction == dirToPeer {
		m.toPeerBytes.Add(float64(n))
		m.toPeerPackets.Inc()
		return
	}
	m.fromPeerBytes.Add(float64(n))
	m.fromPeerPackets.Inc()
}
