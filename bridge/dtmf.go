package bridge

import "encoding/binary"

// RFC 4733 §2.3 named telephone events: the digits 0–9, *, # and A–D are
// events 0–15.
const dtmfDigits = "0123456789*#ABCD"

// teEvent is one telephone-event payload.
type teEvent struct {
	event    uint8
	end      bool
	volume   uint8
	duration uint16 // in timestamp units (1/8000 s)
}

// parseTE reads an RFC 4733 payload; ok is false when it is too short.
func parseTE(p []byte) (teEvent, bool) {
	if len(p) < 4 {
		return teEvent{}, false
	}
	return teEvent{event: p[0], end: p[1]&0x80 != 0, volume: p[1] & 0x3f,
		duration: binary.BigEndian.Uint16(p[2:4])}, true
}

// digit is the event's DTMF character, 0 for events that are not digits.
func (e teEvent) digit() byte {
	if int(e.event) < len(dtmfDigits) {
		return dtmfDigits[e.event]
	}
	return 0
}

// teTracker reports each event once, at its first end packet (the end
// packet is sent three times, RFC 4733 §2.5.1.4); events are told apart
// by their RTP timestamp, which stays the same for all of an event's
// packets (§2.5.1.2).
type teTracker struct {
	lastTS  uint32
	haveTS  bool
	started bool // an event with lastTS is in progress
}

// end returns the finished event when p (with timestamp ts) ends one not
// reported yet.
func (t *teTracker) end(ts uint32, p []byte) (teEvent, bool) {
	e, ok := parseTE(p)
	if !ok {
		return teEvent{}, false
	}
	if t.haveTS && ts == t.lastTS && !t.started {
		return teEvent{}, false // a repeat of a reported end
	}
	if !t.haveTS || ts != t.lastTS {
		t.lastTS, t.haveTS, t.started = ts, true, true
	}
	if !e.end {
		return teEvent{}, false
	}
	t.started = false
	return e, e.digit() != 0
}
