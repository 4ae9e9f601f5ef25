package sip

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// rawAnswer writes the response to a request straight from the request's
// header fields as they arrived: RFC 3261 §8.2.6.2 copies Via (all, in
// order), From, To, Call-ID and CSeq, and adds a To tag. The UDP
// registrar answers thousands of REGISTERs a second, and sipgo's way —
// clone each of those headers, then serialise the whole response — was a
// seventh of a REGISTER's CPU.
//
// ok is false when a field needs more than a copy, and the caller then
// builds the response with sipgo: a top Via asking for rport (RFC 3581
// §4 fills in its value and received), a folded field, a missing or
// repeated single-valued field, or a message without an end of header.
func rawAnswer(msg []byte, code int, reason string, extra []sip.Header) ([]byte, bool) {
	head, _, found := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !found {
		return nil, false
	}
	_, fields, _ := bytes.Cut(head, []byte("\r\n")) // past the start line
	var vias [][]byte
	var from, to, callID, cseq []byte
	for len(fields) > 0 {
		var line []byte
		line, fields, _ = bytes.Cut(fields, []byte("\r\n"))
		if len(line) == 0 || isWSP(line[0]) {
			return nil, false // folded: sipgo unfolds it
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return nil, false
		}
		name := bytes.TrimSpace(line[:colon])
		var slot *[]byte
		switch kind := fieldKind(name); {
		case kind == viaField:
			if len(vias) == 0 && containsFold(line[colon+1:], "rport") {
				return nil, false
			}
			vias = append(vias, line)
			continue
		case bytes.EqualFold(name, []byte("from")), bytes.EqualFold(name, []byte("f")):
			slot = &from
		case bytes.EqualFold(name, []byte("to")), bytes.EqualFold(name, []byte("t")):
			slot = &to
		case bytes.EqualFold(name, []byte("call-id")), bytes.EqualFold(name, []byte("i")):
			slot = &callID
		case bytes.EqualFold(name, []byte("cseq")):
			slot = &cseq
		default:
			continue
		}
		if *slot != nil {
			return nil, false
		}
		*slot = line
	}
	if len(vias) == 0 || from == nil || to == nil || callID == nil || cseq == nil {
		return nil, false
	}
	out := make([]byte, 0, len(head)+128+64*len(extra))
	out = append(out, "SIP/2.0 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, reason...)
	out = append(out, "\r\n"...)
	for _, v := range vias {
		out = append(append(out, v...), "\r\n"...)
	}
	out = append(append(out, from...), "\r\n"...)
	out = append(out, bytes.TrimRight(to, " \t")...)
	if !hasToTag(to) {
		out = append(out, ";tag="...)
		out = appendTag(out)
	}
	out = append(out, "\r\n"...)
	out = append(append(out, callID...), "\r\n"...)
	out = append(append(out, cseq...), "\r\n"...)
	for _, h := range extra {
		out = append(out, h.Name()...)
		out = append(out, ": "...)
		out = append(out, h.Value()...)
		out = append(out, "\r\n"...)
	}
	return append(out, "Content-Length: 0\r\n\r\n"...), true
}

// hasToTag reports whether a raw To field has a tag parameter: one after
// the closing '>' of a name-addr, or anywhere after an addr-spec, whose
// semicolons are header parameters (RFC 3261 §20).
func hasToTag(to []byte) bool {
	value := to[bytes.IndexByte(to, ':')+1:]
	if gt := bytes.LastIndexByte(value, '>'); gt >= 0 {
		value = value[gt:]
	}
	return containsFold(value, ";tag=")
}

// appendTag appends a fresh tag: 64 random bits in hex, more than the 32
// that RFC 3261 §19.3 asks for.
func appendTag(out []byte) []byte {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.AppendEncode(out, b[:])
}

// containsFold reports whether s contains the lower-case ASCII substr,
// ignoring the case of s.
func containsFold(s []byte, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(substr)], []byte(substr)) {
			return true
		}
	}
	return false
}
