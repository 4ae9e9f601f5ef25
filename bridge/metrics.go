package bridge

import "github.com/prometheus/client_golang/prometheus"

// metrics are the bridge's Prometheus series. Legs are "webrtc" (toward
// the browser) and "plain" (toward the phone); direction "in" is what the
// leg received, "out" what the bridge sent on it.
type metrics struct {
	active   prometheus.Gauge
	calls    *prometheus.CounterVec // by how they ended
	packets  *prometheus.CounterVec // leg, direction
	lost     *prometheus.CounterVec // leg: packets the leg's sender sent that never came
	jitter   *prometheus.HistogramVec
	dropped  *prometheus.CounterVec // reason
	resyncs  *prometheus.CounterVec // leg: new sources spliced in (SSRC change, jump)
	dtmf     *prometheus.CounterVec // from, how
	fast     *prometheus.CounterVec // direction: browser packets on the fast path
	setupDur prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "p2psip_bridge_calls",
			Help: "Bridged calls (browser ↔ plain RTP phone) in progress on this peer."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_calls_total",
			Help: "Bridged calls ended, by reason: hangup, media_timeout, ice_failed, browser_closed, setup_failed."}, []string{"end"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_packets_total",
			Help: "RTP packets per bridge leg (webrtc: browser side, plain: phone side) and direction (in: received, out: sent)."},
			[]string{"leg", "direction"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_lost_packets_total",
			Help: "RTP packets lost on the way to the bridge, per leg (RFC 3550 A.3: expected minus received)."}, []string{"leg"}),
		jitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "p2psip_bridge_jitter_seconds",
			Help:    "Interarrival jitter of RTP received per leg (RFC 3550 A.8), sampled every RTCP interval.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .04, .08, .16}}, []string{"leg"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_dropped_packets_total",
			Help: "Packets the bridge did not relay, by reason: unknown_pt, not_rtp, hold, no_destination, foreign_source."}, []string{"reason"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_stream_splices_total",
			Help: "New sources spliced into one continuous output stream (SSRC change, sequence jump), per receiving leg."}, []string{"leg"}),
		dtmf: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_dtmf_total",
			Help: "DTMF digits bridged, by origin (browser, phone) and how they left (rfc4733, info)."}, []string{"from", "as"}),
		fast: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2psip_bridge_fast_path_packets_total",
			Help: "Browser-leg RTP packets the bridge encrypted or decrypted itself (the fast path), by direction (in: from the browser, out: to it); the rest went through pion's SRTP session."},
			[]string{"direction"}),
		setupDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "p2psip_bridge_setup_seconds",
			Help:    "Time to prepare a bridged offer: RTP leg (own port or relay allocation) and ICE gathering.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.calls, m.packets, m.lost, m.jitter, m.dropped, m.resyncs, m.dtmf, m.fast, m.setupDur)
	}
	return m
}
