package sip

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests  *prometheus.CounterVec // method
	responses *prometheus.CounterVec // method, class
	// registersShed counts REGISTERs dropped because the UDP registrar's
	// queue was full (see udpRegShed): a sign of overload before any 503.
	registersShed prometheus.Counter
	// retransmissions counts retransmitted UDP requests of finished
	// transactions, by method and what was done (answered, absorbed).
	retransmissions *prometheus.CounterVec
	// peerStreams counts the live SIP streams to other peers, by
	// direction (in, out) and path (direct, relayed).
	peerStreams *prometheus.GaugeVec
	// peerOpens counts attempts to open a SIP stream to a peer, by result.
	peerOpens *prometheus.CounterVec
	// bridgeSetup counts bridged offers by result; bridgeEnded the
	// bridged calls this peer ended itself, by reason.
	bridgeSetup *prometheus.CounterVec
	bridgeEnded *prometheus.CounterVec
	// stray counts responses that matched no transaction, by what was
	// done with them (accepted.go).
	stray *prometheus.CounterVec
	// orderWaits counts in-dialog requests that found the one before them
	// still on its way (order.go), by outcome.
	orderWaits *prometheus.CounterVec
	// responsesReordered counts provisional responses relayed ahead of a
	// response read after them that overtook them (resporder.go).
	responsesReordered prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_requests_total", Help: "SIP requests received, by method.",
		}, []string{"method"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_responses_total", Help: "SIP responses this peer generated, by method and class.",
		}, []string{"method", "class"}),
		registersShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2psip_sip_registers_shed_total",
			Help: "REGISTERs over UDP dropped because the registrar's queue was full; their retransmissions are tried again, and get 503 after a few drops.",
		}),
		retransmissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_retransmissions_total",
			Help: "Retransmitted requests over UDP of transactions that had their final response, by method and action: answered (the final response again) or absorbed (an INVITE answered 2xx).",
		}, []string{"method", "action"}),
		peerStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "p2psip_sip_peer_streams", Help: "Live SIP streams to other overlay peers, by direction and path (direct or through a circuit relay).",
		}, []string{"direction", "path"}),
		peerOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_peer_stream_opens_total", Help: "Attempts to open a SIP stream to another overlay peer, by result (ok, failed).",
		}, []string{"result"}),
		bridgeSetup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_bridge_setups_total", Help: "Calls whose media this peer set out to bridge (browser ↔ plain RTP phone), by result: ok, no_common_codec, no_relay, no_ports, failed.",
		}, []string{"result"}),
		bridgeEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_bridge_byes_total", Help: "Bridged calls this peer ended with a BYE to both sides because the media died, by reason: media_timeout, ice_failed, browser_closed, other.",
		}, []string{"reason"}),
		stray: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_stray_responses_total", Help: "Responses that matched no transaction, by action: forwarded (a callee's 2xx: a retransmission sent upstream again as first relayed, or one that crossed a CANCEL), failed, dropped (anything else).",
		}, []string{"action"}),
		orderWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_order_waits_total", Help: "In-dialog requests that waited for the request before them from the same side of their dialog to be forwarded, by outcome: in_turn (it was, and this one followed it), gave_up (it was not within 250 ms of its arrival, and this one went on).",
		}, []string{"outcome"}),
		responsesReordered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2psip_sip_responses_reordered_total", Help: "Provisional responses (180, 183) that a response read after them overtook inside this peer, put back in front of it (relayed upstream unless another branch's 2xx had already answered the call).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.responses, m.registersShed, m.retransmissions, m.peerStreams, m.peerOpens, m.bridgeSetup, m.bridgeEnded, m.stray, m.orderWaits, m.responsesReordered)
	}
	return m
}
