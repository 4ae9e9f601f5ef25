package bridge

import (
	"testing"
	"time"
)

// rwStep is one packet given to a rewriter: rewritten, or skipped (a
// telephone-event that leaves as SIP INFO), at a time since the start.
type rwStep struct {
	skip bool
	ssrc uint32
	seq  uint16
	ts   uint32
	at   time.Duration
}

// rwRun feeds steps to r and returns the output of each rewritten one
// (skipped steps give a zero pkt).
func rwRun(r *rewriter, steps []rwStep) []pkt {
	start := time.Unix(1_700_000_000, 0)
	out := make([]pkt, len(steps))
	for i, s := range steps {
		if s.skip {
			r.skip(s.ssrc, s.seq)
			continue
		}
		ssrc, seq, ts := s.ssrc, s.seq, s.ts
		r.rewrite(&ssrc, &seq, &ts, start.Add(s.at))
		out[i] = pkt{ssrc, seq, ts}
	}
	return out
}

// audio is packet n of a 20 ms G.711 stream.
func audio(ssrc uint32, seq0 uint16, ts0 uint32, n int) rwStep {
	return rwStep{ssrc: ssrc, seq: seq0 + uint16(n), ts: ts0 + uint32(n)*160, at: time.Duration(n) * 20 * time.Millisecond}
}

func TestRewriterSkipLeavesNoGap(t *testing.T) {
	r := newRewriter(9, 8000)
	steps := []rwStep{audio(1, 100, 0, 0), audio(1, 100, 0, 1)}
	// Three telephone-event packets in the middle of the stream.
	for n := 2; n < 5; n++ {
		s := audio(1, 100, 0, n)
		s.skip = true
		steps = append(steps, s)
	}
	steps = append(steps, audio(1, 100, 0, 5), audio(1, 100, 0, 6))
	out := rwRun(r, steps)
	want := []uint16{100, 101, 0, 0, 0, 102, 103}
	for i, s := range steps {
		if s.skip {
			continue
		}
		if out[i].seq != want[i] || out[i].ssrc != 9 {
			t.Errorf("step %d: seq %d ssrc %d, want seq %d ssrc 9", i, out[i].seq, out[i].ssrc, want[i])
		}
		if out[i].ts != s.ts {
			t.Errorf("step %d: ts %d, want %d (skipping must not move timestamps)", i, out[i].ts, s.ts)
		}
	}
	if r.resyncs != 0 {
		t.Errorf("resyncs = %d", r.resyncs)
	}
}

func TestRewriterSkipBeforeStartIsIgnored(t *testing.T) {
	r := newRewriter(9, 8000)
	r.skip(1, 500)
	out := rwRun(r, []rwStep{audio(1, 501, 0, 0), audio(1, 501, 0, 1)})
	if out[0].seq != 501 || out[1].seq != 502 {
		t.Fatalf("%+v", out)
	}
}

// A skipped packet that arrives late had its number left as a gap already
// (the packets after it went out): skipping it must not shift what follows
// onto a number already sent, which the browser's SRTP replay check drops.
func TestRewriterSkipOfALatePacket(t *testing.T) {
	r := newRewriter(9, 8000)
	out := rwRun(r, []rwStep{
		audio(1, 10, 0, 0), audio(1, 10, 0, 2), // 11 is late
		{skip: true, ssrc: 1, seq: 11, ts: 160},
		audio(1, 10, 0, 3),
	})
	if out[3].seq != 13 {
		t.Fatalf("after a late skipped packet seq = %d, want 13 (12 was sent already)", out[3].seq)
	}
}

// A skipped packet far ahead (the first packet after a phone's sequence
// jumped) must not carry the jump into the output: the packet after it is
// spliced on like any new source.
func TestRewriterSkipOfAJump(t *testing.T) {
	r := newRewriter(9, 8000)
	out := rwRun(r, []rwStep{
		audio(1, 10, 0, 0), audio(1, 10, 0, 1),
		{skip: true, ssrc: 1, seq: 10 + 10000, ts: 50000, at: time.Second},
		{ssrc: 1, seq: 10 + 10001, ts: 50160, at: time.Second + 20*time.Millisecond},
	})
	if out[3].seq != 12 {
		t.Fatalf("after a skipped jump seq = %d, want 12", out[3].seq)
	}
}

func TestRewriterReorderWithinWindow(t *testing.T) {
	r := newRewriter(9, 8000)
	in := []rwStep{
		audio(1, 1000, 0, 0), audio(1, 1000, 0, 1), audio(1, 1000, 0, 150), // 49 lost (or late)
		audio(1, 1000, 0, 120), // 30 late
		audio(1, 1000, 0, 50),  // exactly 100 late: still this stream
		audio(1, 1000, 0, 151),
	}
	out := rwRun(r, in)
	for i, s := range in {
		if out[i].seq != s.seq || out[i].ts != s.ts {
			t.Errorf("step %d: %+v, want seq %d ts %d", i, out[i], s.seq, s.ts)
		}
	}
	if r.resyncs != 0 {
		t.Errorf("reordering within %d was taken for a new source", maxMisorder)
	}
}

func TestRewriterBackwardJumpSplices(t *testing.T) {
	r := newRewriter(9, 8000)
	in := []rwStep{
		audio(1, 1000, 80000, 0), audio(1, 1000, 80000, 1), audio(1, 1000, 80000, 2),
		// The sender restarted its counter: 101 back is no late packet.
		{ssrc: 1, seq: 1002 - 101, ts: 0, at: 60 * time.Millisecond},
		{ssrc: 1, seq: 1002 - 100, ts: 160, at: 80 * time.Millisecond},
	}
	out := rwRun(r, in)
	if out[3].seq != 1003 || out[4].seq != 1004 {
		t.Fatalf("after a backward jump: %+v, want seq 1003, 1004", out[3:])
	}
	// 20 ms after the last packet, whose timestamp was 80000+320.
	if out[3].ts != 80000+320+160 || out[4].ts != 80000+320+320 {
		t.Fatalf("timestamps across the splice: %d, %d", out[3].ts, out[4].ts)
	}
	if r.resyncs != 1 {
		t.Fatalf("resyncs = %d, want 1", r.resyncs)
	}
}

func TestRewriterForwardGapLimit(t *testing.T) {
	for _, c := range []struct {
		jump    uint16
		splices bool
	}{
		{maxGap, false},
		{maxGap + 1, true},
		{32767, true},
		{32768, true}, // half the space: as far back as ahead
		{32769, true},
		{65535, false}, // one back: a late packet
	} {
		r := newRewriter(9, 8000)
		out := rwRun(r, []rwStep{{ssrc: 1, seq: 500}, {ssrc: 1, seq: 500 + c.jump, ts: 160, at: 20 * time.Millisecond}})
		if got := r.resyncs == 1; got != c.splices {
			t.Errorf("jump %d: spliced %v, want %v", c.jump, got, c.splices)
		}
		if c.splices && out[1].seq != 501 {
			t.Errorf("jump %d: seq %d after the splice, want 501", c.jump, out[1].seq)
		}
		if !c.splices && out[1].seq != 500+c.jump {
			t.Errorf("jump %d: seq %d, want it unchanged", c.jump, out[1].seq)
		}
	}
}

// A splice right after the last packet still moves the timestamp on, so
// the receiver never sees two packets of one stream at one instant.
func TestRewriterSpliceWithoutElapsedTime(t *testing.T) {
	r := newRewriter(9, 8000)
	out := rwRun(r, []rwStep{{ssrc: 1, seq: 1, ts: 1000}, {ssrc: 2, seq: 9, ts: 5}})
	if out[1].seq != 2 || out[1].ts != 1001 {
		t.Fatalf("%+v", out)
	}
}

// The phone holds for 11 minutes. It comes back three ways: its stream
// went on (sequence +1, timestamp 11 minutes on), it kept counting while
// it sent nowhere (33000 packets later: beyond half the sequence space),
// or it starts a new stream. Each time the browser must see one stream
// going on by one packet.
func TestRewriterElevenMinuteHold(t *testing.T) {
	const hold = 11 * time.Minute
	holdTS := uint32(hold.Seconds() * 8000)
	var seq0 uint16 = 65000 // wraps during the call
	before := func(r *rewriter) pkt {
		var last pkt
		for n := range 250 { // 5 s of audio
			last = rwRun(r, []rwStep{audio(0x1111, seq0, 4_294_000_000, n)})[0]
		}
		return last
	}
	for _, c := range []struct {
		name      string
		ssrc      uint32
		seq       uint16
		ts        uint32
		splice    bool
		wantTSGap uint32 // from the last packet before the hold
	}{
		{"stream went on", 0x1111, seq0 + 250, 4_294_000_000 + 250*160 + holdTS, false, 160 + holdTS},
		{"counted through the hold", 0x1111, seq0 + 250 + 33000, 4_294_000_000 + 250*160 + holdTS, true, uint32((hold + 20*time.Millisecond).Seconds() * 8000)},
		{"new stream", 0x2222, 17, 99, true, uint32((hold + 20*time.Millisecond).Seconds() * 8000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRewriter(0xbeef, 8000)
			last := before(r)
			at := 249*20*time.Millisecond + hold + 20*time.Millisecond
			var got []pkt
			for n := range 3 {
				got = append(got, rwRun(r, []rwStep{{ssrc: c.ssrc, seq: c.seq + uint16(n), ts: c.ts + uint32(n)*160,
					at: at + time.Duration(n)*20*time.Millisecond}})[0])
			}
			if (r.resyncs == 1) != c.splice {
				t.Errorf("resyncs = %d, splice %v", r.resyncs, c.splice)
			}
			for n, p := range got {
				if p.ssrc != 0xbeef {
					t.Errorf("packet %d: SSRC %#x", n, p.ssrc)
				}
				if p.seq != last.seq+1+uint16(n) {
					t.Errorf("packet %d: seq %d, want %d", n, p.seq, last.seq+1+uint16(n))
				}
				if want := last.ts + c.wantTSGap + uint32(n)*160; p.ts != want {
					t.Errorf("packet %d: ts %d, want %d (last %d)", n, p.ts, want, last.ts)
				}
			}
		})
	}
}

// Some gateways send telephone-events under an SSRC of their own: skipping
// those must leave the audio's numbering alone.
func TestRewriterSkipOfAnotherSource(t *testing.T) {
	r := newRewriter(9, 8000)
	out := rwRun(r, []rwStep{
		audio(1, 10, 0, 0), audio(1, 10, 0, 1),
		{skip: true, ssrc: 77, seq: 12, ts: 320},
		{skip: true, ssrc: 77, seq: 13, ts: 320},
		audio(1, 10, 0, 2), audio(1, 10, 0, 3),
	})
	if out[4].seq != 12 || out[5].seq != 13 {
		t.Fatalf("audio after another source's skipped packets: %d, %d, want 12, 13", out[4].seq, out[5].seq)
	}
}
