package bridge

import "testing"

func TestParseTE(t *testing.T) {
	e, ok := parseTE([]byte{11, 0x80 | 10, 0x03, 0x20, 0xff})
	if !ok || e.event != 11 || !e.end || e.volume != 10 || e.duration != 800 || e.digit() != '#' {
		t.Fatalf("%+v %v", e, ok)
	}
	// The reserved bit (R, RFC 4733 §2.3) is no part of the volume.
	if e, _ := parseTE([]byte{0, 0x40 | 5, 0, 0}); e.volume != 5 || e.end {
		t.Fatalf("%+v", e)
	}
	if _, ok := parseTE([]byte{1, 2, 3}); ok {
		t.Fatal("three bytes parsed")
	}
	for ev, want := range map[uint8]byte{0: '0', 9: '9', 10: '*', 11: '#', 12: 'A', 15: 'D', 16: 0, 255: 0} {
		if got := (teEvent{event: ev}).digit(); got != want {
			t.Errorf("event %d: digit %q, want %q", ev, got, want)
		}
	}
}

// tePackets is one event as a sender writes it (RFC 4733 §2.5): start
// packets with a growing duration, then the end packet three times.
func tePackets(ev uint8, starts int) [][]byte {
	var ps [][]byte
	for n := range starts {
		d := uint16(160 * (n + 1))
		ps = append(ps, []byte{ev, 10, byte(d >> 8), byte(d)})
	}
	d := uint16(160 * (starts + 1))
	for range 3 {
		ps = append(ps, []byte{ev, 0x80 | 10, byte(d >> 8), byte(d)})
	}
	return ps
}

func TestTETrackerReportsOncePerEvent(t *testing.T) {
	var tr teTracker
	var got []byte
	feed := func(ts uint32, ps [][]byte) {
		for _, p := range ps {
			if e, ok := tr.end(ts, p); ok {
				got = append(got, e.digit())
			}
		}
	}
	feed(8000, tePackets(1, 5))
	feed(16000, tePackets(2, 0)) // only the end packets arrived
	ps := tePackets(3, 4)
	feed(24000, ps[:2])
	feed(24000, ps[5:])                        // starts and the first end packet lost
	feed(32000, tePackets(16, 3))              // flash: no digit
	feed(40000, [][]byte{{4, 10}, {4, 10, 0}}) // too short to read
	feed(48000, tePackets(11, 2))
	if string(got) != "123#" {
		t.Fatalf("reported %q, want \"123#\"", got)
	}
	// A late start packet of a reported event reports nothing.
	if _, ok := tr.end(48000, []byte{11, 10, 0, 160}); ok {
		t.Fatal("a late start packet reported the event again")
	}
	if _, ok := tr.end(48000, []byte{11, 0x80 | 10, 0, 160}); ok {
		t.Fatal("a fourth end packet reported the event again")
	}
}

// Two presses of one key are two events: each has its own timestamp.
func TestTETrackerSameDigitTwice(t *testing.T) {
	var tr teTracker
	n := 0
	for _, ts := range []uint32{1000, 3000} {
		for _, p := range tePackets(5, 3) {
			if _, ok := tr.end(ts, p); ok {
				n++
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d reports, want 2", n)
	}
}
