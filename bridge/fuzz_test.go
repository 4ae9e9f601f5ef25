package bridge

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// addSDPSeeds gives a fuzz target every description the table tests use,
// the captured ones in testdata/sdp among them.
func addSDPSeeds(f *testing.F) {
	ents, err := os.ReadDir(filepath.Join("testdata", "sdp"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		f.Add(testSDP(f, e.Name()))
	}
	for _, c := range sdpCases(f) {
		if len(c.sdp) <= 4096 {
			f.Add(c.sdp)
			f.Add(withLF(c.sdp))
		}
	}
}

// FuzzReadPlain: reading a phone's description never panics; when it
// reads, the answer the bridge writes from it reads back to the same
// choice.
func FuzzReadPlain(f *testing.F) {
	addSDPSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		fe, err := readPlain(b)
		if err != nil {
			if fe != nil {
				t.Fatal("a result with an error")
			}
			return
		}
		if len(fe.codecs) == 0 || fe.mline < 0 || fe.mline >= len(fe.media) || fe.te > 127 {
			t.Fatalf("inconsistent result %+v", viewOf(fe))
		}
		if m := fe.media[fe.mline]; m.kind != "audio" || m.port == 0 || int(fe.rtp.Port()) != m.port {
			t.Fatalf("bridged section %d is %s port %d, rtp %v", fe.mline, m.kind, m.port, fe.rtp)
		}
		for _, ip := range []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")} {
			po := plainOut{sessID: 1, version: 2, ip: ip, port: 20000, codecs: fe.codecs[:1], te: fe.te,
				dir: dirOf(fe.dir.recvs(), fe.dir.sends()), media: fe.media, mline: fe.mline}
			ans := po.marshal()
			back, err := readPlain(ans)
			if err != nil {
				t.Fatalf("the answer does not read back: %v\n%s", err, ans)
			}
			want := plainView{RTP: netip.AddrPortFrom(ip, 20000).String(), RTCP: netip.AddrPortFrom(ip, 20000).String(), Mux: true,
				Codecs: fe.codecs[:1], TE: fe.te, Dir: po.dir, Ptime: 20, Mline: fe.mline}
			if got := viewOf(back); !reflect.DeepEqual(got, want) {
				t.Fatalf("answer reads back as\n%+v\nwant\n%+v\n%s", got, want, ans)
			}
			if len(back.media) != len(fe.media) {
				t.Fatalf("%d sections answer %d", len(back.media), len(fe.media))
			}
			for i, m := range back.media {
				if m.kind != fe.media[i].kind || m.proto != fe.media[i].proto && i != fe.mline || (i != fe.mline && m.port != 0) {
					t.Fatalf("section %d answers %s %s port %d to %s %s", i, m.kind, m.proto, m.port, fe.media[i].kind, fe.media[i].proto)
				}
			}
			if Classify(ans) != KindPlain {
				t.Fatalf("the answer is not plain:\n%s", ans)
			}
		}
	})
}

// FuzzClassify: classifying never panics, agrees with the readers, and
// does not depend on the line ending.
func FuzzClassify(f *testing.F) {
	addSDPSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		k := Classify(b)
		_, perr := readPlain(b)
		_, werr := readWebRTC(b)
		switch k {
		case KindWebRTC:
			if !errors.Is(perr, ErrNotPlain) {
				t.Fatalf("webrtc, but readPlain: %v", perr)
			}
			if werr != nil && !errors.Is(werr, ErrNoCommonCodec) {
				t.Fatalf("webrtc, but readWebRTC: %v", werr)
			}
		case KindPlain:
			if perr != nil && !errors.Is(perr, ErrNoCommonCodec) && !errors.Is(perr, ErrBadSDP) {
				t.Fatalf("plain, but readPlain: %v", perr)
			}
			if !errors.Is(werr, ErrNotWebRTC) {
				t.Fatalf("plain, but readWebRTC: %v", werr)
			}
		case KindOther:
			if perr == nil {
				t.Fatal("other, but readPlain took it")
			}
		default:
			t.Fatalf("kind %d", k)
		}
		if len(b) < maxSDP/2 {
			if lf, crlf := Classify(withLF(b)), Classify(withCRLF(b)); lf != k || crlf != k {
				t.Fatalf("%v, LF %v, CRLF %v", k, lf, crlf)
			}
		}
	})
}

// rewriterOps turns fuzz input into packets: 4 bytes each.
//
//	b0 bits 0-1: the source (SSRC 1, 2, 3; 3 means 1 again)
//	b0 bit 2:    skipped (a telephone-event leaving as SIP INFO)
//	b0 bits 3-5: the sequence number: 0-3 the source's next, 4 b1 ahead
//	             or behind (int8), 5 absolute b1<<8|b2, 6 a duplicate,
//	             7 b1*256 ahead
//	b3:          milliseconds since the previous packet
func rewriterOps(data []byte) []rwStep {
	var (
		steps []rwStep
		last  = map[uint32]uint16{}
		at    time.Duration
	)
	for ; len(data) >= 4; data = data[4:] {
		b0, b1, b2, b3 := data[0], data[1], data[2], data[3]
		ssrc := uint32(b0&3) % 3
		ssrc++
		seq, seen := last[ssrc]
		switch (b0 >> 3) & 7 {
		case 0, 1, 2, 3:
			seq++
		case 4:
			seq += uint16(int8(b1))
		case 5:
			seq = uint16(b1)<<8 | uint16(b2)
		case 6:
		case 7:
			seq += uint16(b1) << 8
		}
		if !seen && (b0>>3)&7 < 4 {
			seq = uint16(b2) << 8
		}
		last[ssrc] = seq
		at += time.Duration(b3) * time.Millisecond
		// The timestamp follows the sequence number, as for G.711 at
		// 20 ms, with a per-source offset.
		steps = append(steps, rwStep{skip: b0&4 != 0, ssrc: ssrc, seq: seq, ts: ssrc*0x40000000 + uint32(seq)*160, at: at})
	}
	return steps
}

// FuzzRewriter checks what the browser needs of the stream the rewriter
// makes of any input: one SSRC; an in-order packet right after the newest
// one (telephone-events skipped between them or not) is the next sequence
// number; a spliced source goes on right after the newest packet, later in
// time; a newer packet never reuses the newest number; and no jump is
// larger than the input's.
func FuzzRewriter(f *testing.F) {
	stream := func(ssrcSel byte, n int, skipEvery int) []byte {
		var b []byte
		for i := range n {
			b0 := ssrcSel
			if skipEvery > 0 && i%skipEvery == skipEvery-1 {
				b0 |= 4
			}
			b = append(b, b0, 0, 0x10, 20)
		}
		return b
	}
	f.Add(stream(0, 50, 0))
	f.Add(stream(0, 50, 7))
	f.Add(append(stream(0, 20, 0), stream(1, 20, 5)...))                                          // an SSRC change
	f.Add(append(stream(0, 20, 0), append([]byte{7 << 3, 0x90, 0, 200}, stream(0, 20, 0)...)...)) // a jump of 0x9000
	f.Add(append(stream(0, 20, 0), append([]byte{4 << 3, 0xf0, 0, 20, 4 << 3, 0x20, 0, 20}, stream(0, 5, 0)...)...))
	f.Add([]byte{5 << 3, 0xff, 0xf0, 0, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20,
		0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20, 0, 0, 0, 20}) // a wrap
	f.Add([]byte{0, 0, 0x10, 20, 0, 0, 0, 20, 6 << 3, 0, 0, 20, 4 << 3, 0xfe, 0, 20, 4 << 3, 0x03, 0, 20, 4 | 4<<3, 0xff, 0, 20, 0, 0, 0, 20})
	f.Fuzz(func(t *testing.T, data []byte) {
		const outSSRC = 0x5eed
		r := newRewriter(outSSRC, 8000)
		start := time.Unix(1_700_000_000, 0)
		var (
			started   bool
			highest   uint16 // newest output sequence number
			highestTS uint32
			highestAt time.Duration
			src       uint32 // the source now spliced in, as the test sees it
			maxIn     uint16 // its newest sequence number
			skips     int    // skipped since the last rewritten packet
			chain     bool   // the last rewritten packet was the newest, and skips since were in order
			chainSSRC uint32
			chainNext uint16 // the sequence number that continues the chain
			chainOut  uint16 // the last rewritten packet's output
		)
		for i, s := range rewriterOps(data) {
			if s.skip {
				r.skip(s.ssrc, s.seq)
				skips++
				if chain && s.ssrc == chainSSRC && s.seq == chainNext {
					chainNext++
				} else {
					chain = false
				}
				if started && s.ssrc == src {
					if d := int16(s.seq - maxIn); d > 0 && d <= maxGap {
						maxIn = s.seq
					}
				}
				continue
			}
			ssrc, seq, ts := s.ssrc, s.seq, s.ts
			before := r.resyncs
			r.rewrite(&ssrc, &seq, &ts, start.Add(s.at))
			spliced := r.resyncs != before
			if ssrc != outSSRC {
				t.Fatalf("packet %d: SSRC %#x", i, ssrc)
			}
			if !started {
				started, highest, highestTS, highestAt, src, maxIn = true, seq, ts, s.at, s.ssrc, s.seq
				chain, chainSSRC, chainNext, chainOut, skips = true, s.ssrc, s.seq+1, seq, 0
				continue
			}
			if spliced && r.resyncs != before+1 {
				t.Fatalf("packet %d: %d splices at once", i, r.resyncs-before)
			}
			newer := false
			switch {
			case spliced:
				if seq != highest+1 {
					t.Fatalf("packet %d spliced on as %d, the newest was %d", i, seq, highest)
				}
				if int32(ts-highestTS) <= 0 {
					t.Fatalf("packet %d spliced on at ts %d, the newest was at %d", i, ts, highestTS)
				}
				step := uint32((s.at - highestAt).Seconds() * 8000)
				if ts-highestTS != max(step, 1) {
					t.Fatalf("packet %d spliced on %d after the newest, %s later", i, ts-highestTS, s.at-highestAt)
				}
				src, maxIn = s.ssrc, s.seq
			case s.ssrc != src:
				t.Fatalf("packet %d: a new source (%d after %d) was not spliced", i, s.ssrc, src)
			case int16(s.seq-maxIn) > 0:
				newer = true
				maxIn = s.seq
			}
			if chain && s.ssrc == chainSSRC && s.seq == chainNext && !spliced && seq != chainOut+1 {
				t.Fatalf("packet %d: in order after the newest (%d skipped between), seq %d, want %d", i, skips, seq, chainOut+1)
			}
			if newer && !spliced && int16(seq-highest) <= 0 {
				t.Fatalf("packet %d is newer than all before, but goes out as %d, the newest being %d", i, seq, highest)
			}
			if d := int(int16(seq - highest)); d > maxGap*(1+skips) && !spliced {
				t.Fatalf("packet %d jumps %d ahead of the newest (%d skipped since the last)", i, d, skips)
			}
			skips = 0
			if int16(seq-highest) > 0 {
				highest, highestTS, highestAt = seq, ts, s.at
			}
			// A chain starts at the newest packet of the source, in and out.
			chain = (newer || spliced) && seq == highest
			chainSSRC, chainNext, chainOut = s.ssrc, s.seq+1, seq
		}
	})
}

// FuzzTelephoneEvent: RFC 4733 payloads of any shape never panic the
// reader or the tracker; the tracker reports at most one digit per event
// (a run of packets with one timestamp), only at an end packet; and a
// well-formed event is reported exactly once.
func FuzzTelephoneEvent(f *testing.F) {
	f.Add([]byte{0, 5, 10, 0, 160, 0, 5, 10, 1, 64, 0, 5, 0x8a, 1, 224, 0, 5, 0x8a, 1, 224, 0, 5, 0x8a, 1, 224})
	f.Add([]byte{1, 11, 0x8a, 3, 32, 1, 11, 0x8a, 3, 32, 2, 16, 0x80, 0, 160, 3, 1})
	f.Add([]byte{0, 1, 2, 3, 0x80, 0x80, 0x80, 0x80, 0x81, 15, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any payload: parseTE reads exactly four bytes or refuses.
		for n := range min(len(data), 8) {
			e, ok := parseTE(data[:n])
			if ok != (n >= 4) {
				t.Fatalf("parseTE of %d bytes: ok %v", n, ok)
			}
			if ok && (e.event != data[0] || e.end != (data[1]&0x80 != 0) || e.volume != data[1]&0x3f ||
				e.duration != binary.BigEndian.Uint16(data[2:4])) {
				t.Fatalf("parseTE(%x) = %+v", data[:4], e)
			}
			if d := e.digit(); ok && (d != 0) != (e.event < 16) {
				t.Fatalf("event %d is digit %q", e.event, d)
			}
		}

		// Packets of 5 bytes: a timestamp of four (b0&3), a payload of
		// four (shortened to b0>>6 bytes when b0&0x20).
		var tr teTracker
		var (
			runTS    uint32
			inRun    bool
			reported bool
		)
		for d := data; len(d) >= 5; d = d[5:] {
			ts := uint32(d[0]&3) * 1000
			p := d[1:5]
			if d[0]&0x20 != 0 {
				p = p[:d[0]>>6]
			}
			e, ok := tr.end(ts, p)
			parsed, parses := parseTE(p)
			if !parses {
				if ok {
					t.Fatal("a report for a packet too short")
				}
				continue
			}
			if !inRun || ts != runTS {
				inRun, runTS, reported = true, ts, false
			}
			if !ok {
				continue
			}
			if !parsed.end || e != parsed || e.digit() == 0 {
				t.Fatalf("reported %+v for %x", e, p)
			}
			if reported {
				t.Fatalf("event at ts %d reported twice", ts)
			}
			reported = true
		}

		// Each byte a well-formed event: digit b%16, b>>4 start packets,
		// three ends; each at its own timestamp.
		var tr2 teTracker
		for i, b := range data {
			ev := b % 16
			ts := uint32(i+1) * 8000
			got := 0
			for n := range int(b>>4) + 3 {
				end := n >= int(b>>4)
				dur := uint16(160 * (n + 1))
				if end {
					dur = uint16(160 * (int(b>>4) + 1))
				}
				p := []byte{ev, 10, byte(dur >> 8), byte(dur)}
				if end {
					p[1] |= 0x80
				}
				if e, ok := tr2.end(ts, p); ok {
					got++
					if e.digit() != dtmfDigits[ev] || e.duration != dur {
						t.Fatalf("event %d: reported %+v", i, e)
					}
				}
			}
			if got != 1 {
				t.Fatalf("event %d (digit %c, %d start packets) reported %d times", i, dtmfDigits[ev], b>>4, got)
			}
		}
	})
}
