package overlay

import (
	"encoding/base64"
	"math"
	"strconv"
)

// A node encodes a record body and its envelope on every REGISTER; with
// encoding/json's reflection that was a sixth of a lone peer's REGISTER.
// appendRegistrationJSON and appendEnvelopeJSON write the same bytes as
// json.Marshal for the records a node signs (TestRecordJSONAsEncodingJSON
// and FuzzRegistrationJSON hold them to it), and give up, for the caller
// to use json.Marshal, on anything they do not handle the same way: a
// string with control characters or beyond ASCII, or a q that it would
// print with an exponent or refuse.

// appendRegistrationJSON appends json.Marshal(reg) to dst; false means
// reg needs json.Marshal.
func appendRegistrationJSON(dst []byte, reg *Registration) ([]byte, bool) {
	var ok bool
	b := append(dst, `{"aor":`...)
	if b, ok = appendJSONString(b, reg.AOR); !ok {
		return dst, false
	}
	b = append(b, `,"owner":`...)
	b = appendJSONBytes(b, reg.Owner)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, reg.Seq, 10)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, reg.Created, 10)
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, reg.Expires, 10)
	if len(reg.Devices) > 0 {
		b = append(b, `,"devices":[`...)
		for i, d := range reg.Devices {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"owner":`...)
			b = appendJSONBytes(b, d.Owner)
			b = append(b, `,"key":`...)
			b = appendJSONBytes(b, d.Key)
			b = append(b, `,"expires":`...)
			b = strconv.AppendInt(b, d.Expires, 10)
			b = append(b, `,"sig":`...)
			b = appendJSONBytes(b, d.Sig)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"bindings":`...)
	if reg.Bindings == nil {
		return append(b, "null}"...), true
	}
	b = append(b, '[')
	for i := range reg.Bindings {
		if i > 0 {
			b = append(b, ',')
		}
		if b, ok = appendBindingJSON(b, &reg.Bindings[i]); !ok {
			return dst, false
		}
	}
	return append(b, "]}"...), true
}

func appendBindingJSON(b []byte, x *Binding) ([]byte, bool) {
	var ok bool
	b = append(b, `{"instance":`...)
	if b, ok = appendJSONString(b, x.Instance); !ok {
		return b, false
	}
	if x.RegID != 0 {
		b = append(b, `,"reg_id":`...)
		b = strconv.AppendInt(b, int64(x.RegID), 10)
	}
	b = append(b, `,"node":`...)
	if b, ok = appendJSONString(b, x.Node); !ok {
		return b, false
	}
	b = append(b, `,"contact":`...)
	if b, ok = appendJSONString(b, x.Contact); !ok {
		return b, false
	}
	if len(x.Path) > 0 {
		b = append(b, `,"path":[`...)
		for i, p := range x.Path {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendJSONString(b, p); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, x.Expires, 10)
	if x.Q != 0 {
		// encoding/json prints 1e-6 <= |q| < 1e21 in 'f' format and the
		// rest with an exponent (and refuses NaN and infinities).
		if a := math.Abs(x.Q); !(a >= 1e-6 && a < 1e21) {
			return b, false
		}
		b = append(b, `,"q":`...)
		b = strconv.AppendFloat(b, x.Q, 'f', -1, 64)
	}
	return append(b, '}'), true
}

// appendEnvelopeJSON appends json.Marshal(e) to dst; false means e needs
// json.Marshal.
func appendEnvelopeJSON(dst []byte, e *Envelope) ([]byte, bool) {
	enc := base64.StdEncoding.EncodedLen
	size := len(`{"alg":"","body":"","signer":"","sig":""}`) + len(e.Alg) + enc(len(e.Body)) + enc(len(e.Signer)) + enc(len(e.Sig))
	if e.Proof != nil {
		size += len(`,"proof":{"index":4294967295,"size":4294967295,"path":[]}`) + len(e.Proof.Path)*(enc(32)+3)
	}
	b := dst
	if cap(b)-len(b) < size {
		b = make([]byte, len(dst), len(dst)+size)
		copy(b, dst)
	}
	var ok bool
	b = append(b, `{"alg":`...)
	if b, ok = appendJSONString(b, e.Alg); !ok {
		return dst, false
	}
	b = append(b, `,"body":`...)
	b = appendJSONBytes(b, e.Body)
	b = append(b, `,"signer":`...)
	b = appendJSONBytes(b, e.Signer)
	b = append(b, `,"sig":`...)
	b = appendJSONBytes(b, e.Sig)
	if p := e.Proof; p != nil {
		b = append(b, `,"proof":{"index":`...)
		b = strconv.AppendUint(b, uint64(p.Index), 10)
		b = append(b, `,"size":`...)
		b = strconv.AppendUint(b, uint64(p.Size), 10)
		b = append(b, `,"path":`...)
		if p.Path == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, h := range p.Path {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONBytes(b, h)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendJSONString appends s quoted as json.Marshal does when s is
// ASCII without control characters; false otherwise. SIP puts <, > and
// quotes in Path and +sip.instance values, which json.Marshal escapes.
func appendJSONString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return b, false
		}
		switch c {
		case '"', '\\':
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
		case '<', '>', '&':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			continue
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

const hexDigits = "0123456789abcdef"

// appendJSONBytes appends p as json.Marshal does: standard base64 in
// quotes, null for nil.
func appendJSONBytes(b, p []byte) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// registrationJSONSize estimates the encoding's size, for one allocation.
func registrationJSONSize(reg *Registration) int {
	enc := base64.StdEncoding.EncodedLen
	n := 128 + len(reg.AOR) + enc(len(reg.Owner))
	for _, d := range reg.Devices {
		n += 64 + enc(len(d.Owner)) + enc(len(d.Key)) + enc(len(d.Sig))
	}
	for _, x := range reg.Bindings {
		n += 128 + len(x.Instance) + len(x.Node) + len(x.Contact)
		for _, p := range x.Path {
			n += 3 + len(p)
		}
	}
	return n
}
