package overlay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the overlay's Prometheus series. With no Registerer they are
// still updated but never exported.
type metrics struct {
	ops     *prometheus.CounterVec   // op, result
	latency *prometheus.HistogramVec // op
	// dialBackoffs counts Connect attempts libp2p refused because every
	// address of the peer failed recently (the swarm's dial backoff).
	dialBackoffs prometheus.Counter
	// dialRetries counts connects to a node tried again after a fast
	// failure (quickDialFailure).
	dialRetries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_overlay_operations_total",
			Help: "Overlay operations by kind and result.",
		}, []string{"op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "p2psip_overlay_operation_seconds",
			Help:    "Latency of overlay operations.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"op"}),
		dialBackoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2psip_overlay_dial_backoffs_total",
			Help: "Connects skipped because every address of the peer failed recently (libp2p dial backoff).",
		}),
		dialRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2psip_overlay_dial_retries_total",
			Help: "Connects to a node tried once more after failing fast (two peers dialling each other at once).",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(n.reachCollectors()...)
	reg.MustRegister(m.ops, m.latency, m.dialBackoffs, m.dialRetries,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2psip_overlay_peers",
			Help: "Peers in the overlay routing table.",
		}, func() float64 { return float64(n.dht.RoutingTable().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2psip_overlay_stored_records",
			Help: "Records this node stores for the overlay.",
		}, func() float64 { return float64(n.StoredRecords()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "p2psip_overlay_hosted_records",
			Help: "Registrations and service entries this node publishes.",
		}, func() float64 { return float64(len(n.Hosted())) }),
	)
	return m
}

// observe records one operation's outcome and latency.
func (m *metrics) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
