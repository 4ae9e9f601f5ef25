package bridge

import (
	"testing"
	"time"
)

type pkt struct {
	ssrc uint32
	seq  uint16
	ts   uint32
}

func run(r *rewriter, in []pkt, start time.Time) []pkt {
	out := make([]pkt, len(in))
	for i, p := range in {
		s, q, ts := p.ssrc, p.seq, p.ts
		r.rewrite(&s, &q, &ts, start.Add(time.Duration(i)*20*time.Millisecond))
		out[i] = pkt{s, q, ts}
	}
	return out
}

func TestRewriterPassesOneStream(t *testing.T) {
	r := newRewriter(0xabc, 8000)
	in := []pkt{{1, 100, 1000}, {1, 101, 1160}, {1, 103, 1480}, {1, 102, 1320}}
	out := run(r, in, time.Unix(0, 0))
	for i, p := range out {
		if p.ssrc != 0xabc || p.seq != in[i].seq || p.ts != in[i].ts {
			t.Errorf("packet %d: %+v, want seq %d ts %d ssrc 0xabc", i, p, in[i].seq, in[i].ts)
		}
	}
}

func TestRewriterSplicesNewSSRC(t *testing.T) {
	r := newRewriter(7, 8000)
	in := []pkt{{1, 500, 8000}, {1, 501, 8160}, {2, 40000, 123456}, {2, 40001, 123616}}
	out := run(r, in, time.Unix(0, 0))
	if out[2].seq != 502 || out[3].seq != 503 {
		t.Fatalf("sequence not continuous across the SSRC change: %+v", out)
	}
	if out[2].ts != 8160+160 || out[3].ts != 8160+320 {
		t.Fatalf("timestamp not continuous across the SSRC change: %+v", out)
	}
	if r.resyncs != 1 {
		t.Fatalf("resyncs = %d, want 1", r.resyncs)
	}
}

func TestRewriterJumpBeyondHalfTheSpace(t *testing.T) {
	// A phone back from an 11-minute hold with a sequence number 40000
	// ahead: the output must go on by one, or the browser's SRTP replay
	// check takes the packets for old ones.
	r := newRewriter(7, 8000)
	start := time.Unix(0, 0)
	var s, q, ts uint32 = 1, 10, 0
	seq := uint16(q)
	r.rewrite(&s, &seq, &ts, start)
	s, seq, ts = 1, 10+40000, 80000
	r.rewrite(&s, &seq, &ts, start.Add(11*time.Minute))
	if seq != 11 {
		t.Fatalf("after the jump seq = %d, want 11", seq)
	}
	if want := uint32(11 * 60 * 8000); ts != want {
		t.Fatalf("after the jump ts = %d, want %d (wall clock)", ts, want)
	}
}

func TestRewriterWrapAround(t *testing.T) {
	r := newRewriter(7, 8000)
	in := []pkt{{1, 65534, 1}, {1, 65535, 161}, {1, 0, 321}, {1, 1, 481}}
	out := run(r, in, time.Unix(0, 0))
	for i, p := range out {
		if p.seq != in[i].seq {
			t.Fatalf("packet %d: seq %d, want %d (a wrap is not a jump)", i, p.seq, in[i].seq)
		}
	}
	if r.resyncs != 0 {
		t.Fatal("the wrap was taken for a new source")
	}
	// After a splice the output wraps too.
	r2 := newRewriter(7, 8000)
	out = run(r2, []pkt{{1, 65535, 0}, {2, 9, 0}, {2, 10, 160}}, time.Unix(0, 0))
	if out[1].seq != 0 || out[2].seq != 1 {
		t.Fatalf("splice across the wrap: %+v", out)
	}
}

func TestRewriterLossIsKept(t *testing.T) {
	r := newRewriter(7, 8000)
	out := run(r, []pkt{{1, 10, 0}, {1, 60, 8000}}, time.Unix(0, 0))
	if out[1].seq != 60 {
		t.Fatalf("a gap of 50 (loss) became %d: the receiver cannot see the loss", out[1].seq)
	}
}
