package bridge

import (
	"math"
	"time"
)

// recvStats measures one incoming RTP stream: loss as RFC 3550 A.3
// counts it (expected from the sequence numbers minus received) and
// interarrival jitter by A.8.
type recvStats struct {
	clock    float64
	started  bool
	ssrc     uint32
	baseSeq  uint32
	maxSeq   uint32 // extended: cycles << 16 | seq
	received uint64
	// jitter in timestamp units, A.8's J(i) without the 16x scaling.
	jitter  float64
	transit float64
	// what was reported last, to turn totals into counter increments
	lostReported int64
	// for the RTCP report's fraction lost (RFC 3550 A.3)
	expectedPrior, receivedPrior int64
}

func (r *recvStats) update(ssrc uint32, seq uint16, ts uint32, at time.Time) {
	arrival := float64(at.UnixNano()) / 1e9 * r.clock
	if !r.started || ssrc != r.ssrc {
		*r = recvStats{clock: r.clock, started: true, ssrc: ssrc, baseSeq: uint32(seq), maxSeq: uint32(seq),
			transit: arrival - float64(ts), lostReported: r.lostReported - r.lostSoFar()}
		r.received = 1
		return
	}
	r.received++
	cur := r.maxSeq&^0xffff | uint32(seq)
	if d := int16(seq - uint16(r.maxSeq)); d > 0 {
		if uint16(r.maxSeq) > seq {
			cur += 1 << 16 // wrapped
		}
		r.maxSeq = cur
	}
	transit := arrival - float64(ts)
	// Modulo 2^32, as A.8 computes it: the timestamp wraps (every six
	// days at 8 kHz, and it starts at random), which is no jitter.
	d := math.Remainder(transit-r.transit, 1<<32)
	r.transit = transit
	if d < 0 {
		d = -d
	}
	r.jitter += (d - r.jitter) / 16
}

// lostSoFar is expected minus received for the current source.
func (r *recvStats) lostSoFar() int64 {
	if !r.started {
		return 0
	}
	return int64(r.maxSeq-r.baseSeq+1) - int64(r.received)
}

// newLoss is the loss since the last call (never negative: duplicates
// can make the count go down).
func (r *recvStats) newLoss() int64 {
	lost := r.lostSoFar()
	d := lost - r.lostReported
	if d <= 0 {
		return 0
	}
	r.lostReported = lost
	return d
}

// jitterSeconds is the current jitter estimate.
func (r *recvStats) jitterSeconds() float64 { return r.jitter / r.clock }

// interval returns the fraction lost since the previous call, in RFC 3550
// §6.4.1's 8-bit fixed point, and the cumulative loss.
func (r *recvStats) interval() (fraction uint8, total int64) {
	expected := int64(r.maxSeq - r.baseSeq + 1)
	if !r.started {
		return 0, 0
	}
	expInt := expected - r.expectedPrior
	recvInt := int64(r.received) - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, int64(r.received)
	if lostInt := expInt - recvInt; expInt > 0 && lostInt > 0 {
		fraction = uint8(min(255, lostInt<<8/expInt))
	}
	return fraction, r.lostSoFar()
}
