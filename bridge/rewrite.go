package bridge

import "time"

// rewriter gives one outgoing RTP stream its own SSRC and a continuous
// sequence number and timestamp, whatever the incoming stream does.
//
// Small gaps (loss) and reordering pass through unchanged: the receiver
// must see them to measure loss and jitter (RFC 3550 §6.4.1). A new SSRC
// or a jump of the sequence number beyond maxGap (a phone that restarts
// its stream after a hold, or re-INVITE to another media server) is a new
// source: the output carries on from its last packet, one sequence number
// later and with the timestamp advanced by the wall-clock time since, so a
// browser's SRTP replay window (RFC 3711 §3.3.2: 64 packets, and an index
// guessed from the 16-bit sequence number) and jitter buffer see one
// stream. Janus does the same in janus_rtp_header_update.
type rewriter struct {
	ssrc  uint32 // the output SSRC
	clock uint32 // RTP clock rate (8000 for G.711 and telephone-event)

	started  bool
	inSSRC   uint32
	lastIn   uint16 // highest incoming sequence number seen
	seqDelta uint16 // out = in + seqDelta
	tsDelta  uint32 // out = in + tsDelta
	lastOut  uint16 // output sequence number of the newest packet
	lastTS   uint32 // output timestamp of the newest packet
	lastAt   time.Time
	resyncs  int // how many times a new source was spliced in
}

// maxGap is the largest forward jump of the sequence number still taken as
// loss rather than a new stream (RFC 3550 A.1 uses 3000 for MAX_DROPOUT;
// at 50 packets/s that is a minute of loss).
const maxGap = 3000

// maxMisorder is how far back a packet may come and still be a late one
// of the same stream (RFC 3550 A.1 MAX_MISORDER).
const maxMisorder = 100

func newRewriter(ssrc, clock uint32) *rewriter { return &rewriter{ssrc: ssrc, clock: clock} }

// rewrite maps one packet's SSRC, sequence number and timestamp; now is
// when it arrived.
func (r *rewriter) rewrite(ssrc *uint32, seq *uint16, ts *uint32, now time.Time) {
	if !r.started {
		r.started = true
		r.inSSRC, r.lastIn = *ssrc, *seq
		// Keep the first packet's numbers: nothing to be continuous with.
		r.lastOut, r.lastTS, r.lastAt = *seq, *ts, now
		*ssrc = r.ssrc
		return
	}
	diff := int16(*seq - r.lastIn) // serial-number arithmetic, RFC 1982
	switch {
	case *ssrc != r.inSSRC, diff > maxGap || diff < -maxMisorder:
		// A new source: splice it on after the last packet sent.
		r.resyncs++
		r.inSSRC = *ssrc
		r.seqDelta = r.lastOut + 1 - *seq
		elapsed := now.Sub(r.lastAt)
		if elapsed < 0 {
			elapsed = 0
		}
		step := uint32(elapsed.Seconds() * float64(r.clock))
		if step == 0 {
			step = 1
		}
		r.tsDelta = r.lastTS + step - *ts
		r.lastIn = *seq
	case diff > 0:
		r.lastIn = *seq
	}
	out := *seq + r.seqDelta
	outTS := *ts + r.tsDelta
	if int16(out-r.lastOut) > 0 {
		r.lastOut, r.lastTS, r.lastAt = out, outTS, now
	}
	*ssrc, *seq, *ts = r.ssrc, out, outTS
}

// skip drops packet seq of source ssrc from the output without leaving a
// gap (a phone's telephone-event, which goes to the browser as SIP INFO
// instead). Only a packet that would have been the newest of the current
// source moves the output on: a late one's number is already a gap (the
// packets after it went out), one of another source or beyond maxGap
// belongs to a stream the next packet splices on.
func (r *rewriter) skip(ssrc uint32, seq uint16) {
	if !r.started || ssrc != r.inSSRC {
		return
	}
	if d := int16(seq - r.lastIn); d > 0 && d <= maxGap {
		r.lastIn = seq
		r.seqDelta--
	}
}
