package bridge

import "testing"

func TestG711RoundTrip(t *testing.T) {
	// Every µ-law code decodes to a value A-law can carry within one
	// A-law step, and back: the mapping must be close to the identity.
	for i := range 256 {
		u := byte(i)
		lin := int(ulawToLinear(u))
		back := int(alawToLinear(ulawToAlaw[u]))
		if d := abs(lin - back); d > step(lin) {
			t.Errorf("µ %#02x: linear %d, via A-law %d (off by %d)", u, lin, back, d)
		}
	}
	for i := range 256 {
		a := byte(i)
		lin := int(alawToLinear(a))
		back := int(ulawToLinear(alawToUlaw[a]))
		if d := abs(lin - back); d > step(lin) {
			t.Errorf("A %#02x: linear %d, via µ-law %d (off by %d)", a, lin, back, d)
		}
	}
}

func TestG711KnownValues(t *testing.T) {
	// Silence: µ-law 0xff and A-law 0xd5 are (near) zero.
	if v := ulawToLinear(0xff); v != 0 {
		t.Errorf("µ 0xff = %d, want 0", v)
	}
	if v := alawToLinear(0xd5); v != 8 {
		t.Errorf("A 0xd5 = %d, want 8", v)
	}
	if got := linearToUlaw(0); got != 0xff {
		t.Errorf("µ(0) = %#x, want 0xff", got)
	}
	if got := linearToAlaw(0); got != 0xd5 {
		t.Errorf("A(0) = %#x, want 0xd5", got)
	}
	// Encoding the decoded value gives the code back (both laws are
	// idempotent on their own grid), except µ-law's negative zero 0x7f.
	for i := range 256 {
		if u := byte(i); u != 0x7f && linearToUlaw(ulawToLinear(u)) != u {
			t.Errorf("µ %#02x does not round-trip", u)
		}
		if a := byte(i); linearToAlaw(alawToLinear(a)) != a {
			t.Errorf("A %#02x does not round-trip", a)
		}
	}
}

func TestConvertLawInPlace(t *testing.T) {
	p := []byte{0xff, 0x00, 0x80, 0x7f}
	want := []byte{ulawToAlaw[0xff], ulawToAlaw[0x00], ulawToAlaw[0x80], ulawToAlaw[0x7f]}
	convertLaw(p, pcmu, pcma)
	for i := range p {
		if p[i] != want[i] {
			t.Fatalf("byte %d: %#x, want %#x", i, p[i], want[i])
		}
	}
	q := []byte{1, 2, 3}
	convertLaw(q, pcmu, pcmu)
	if q[0] != 1 || q[2] != 3 {
		t.Fatal("same law must not change the payload")
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// step is the A-law/µ-law quantisation step near v, with slack for the
// two grids' different offsets.
func step(v int) int {
	v = abs(v)
	s := 16
	for v > 256 && s < 2048 {
		v >>= 1
		s <<= 1
	}
	return s
}
