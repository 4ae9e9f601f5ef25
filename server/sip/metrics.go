package sip

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests  *prometheus.CounterVec // method
	responses *prometheus.CounterVec // method, class
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_requests_total", Help: "SIP requests received, by method.",
		}, []string{"method"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_sip_responses_total", Help: "SIP responses this peer generated, by method and class.",
		}, []string{"method", "class"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.responses)
	}
	return m
}
