package bridge

// G.711 law conversion (ITU-T G.711 §2 and Table 3): when the browser and
// the phone chose different laws, each payload byte is mapped through a
// 256-entry table built once from the decode and encode rules, the same
// result as decoding to 16-bit linear and encoding again.

// law is a G.711 companding law.
type law uint8

const (
	pcmu law = iota + 1 // µ-law, static payload type 0 (RFC 3551 §6)
	pcma                // A-law, static payload type 8
)

func (l law) String() string {
	switch l {
	case pcmu:
		return "PCMU"
	case pcma:
		return "PCMA"
	}
	return "none"
}

// staticPT is the law's static payload type (RFC 3551 Table 4).
func (l law) staticPT() uint8 {
	if l == pcma {
		return 8
	}
	return 0
}

var (
	ulawToAlaw [256]byte
	alawToUlaw [256]byte
)

func init() {
	for i := range 256 {
		ulawToAlaw[i] = linearToAlaw(ulawToLinear(byte(i)))
		alawToUlaw[i] = linearToUlaw(alawToLinear(byte(i)))
	}
}

// convertLaw rewrites p in place from law from to law to.
func convertLaw(p []byte, from, to law) {
	var t *[256]byte
	switch {
	case from == to:
		return
	case from == pcmu && to == pcma:
		t = &ulawToAlaw
	case from == pcma && to == pcmu:
		t = &alawToUlaw
	default:
		return
	}
	for i, b := range p {
		p[i] = t[b]
	}
}

const ulawBias = 0x84

func ulawToLinear(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

func linearToUlaw(s int16) byte {
	v := int(s) >> 2
	mask := byte(0xff)
	if v < 0 {
		v = -v
		mask = 0x7f
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias >> 2
	seg := segment(v, &ulawSegEnd)
	if seg >= 8 {
		return 0x7f ^ mask
	}
	return (byte(seg<<4) | byte((v>>(seg+1))&0x0f)) ^ mask
}

func alawToLinear(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0f) << 4
	seg := int(a&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

func linearToAlaw(s int16) byte {
	v := int(s) >> 3
	mask := byte(0xd5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := segment(v, &alawSegEnd)
	if seg >= 8 {
		return 0x7f ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(v>>1) & 0x0f
	} else {
		a |= byte(v>>seg) & 0x0f
	}
	return a ^ mask
}

// Segment end points of the two laws (G.711 Tables 1 and 2, in the
// 13- and 14-bit ranges the encoders work in).
var (
	ulawSegEnd = [8]int{0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff}
	alawSegEnd = [8]int{0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff}
)

// ulawClip is the largest magnitude µ-law encodes (14-bit range).
const ulawClip = 8159

// segment is the first segment whose end is at least v (8: beyond all).
func segment(v int, ends *[8]int) int {
	for i, e := range ends {
		if v <= e {
			return i
		}
	}
	return 8
}
