package sip

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// singleValued are the headers a request may carry once (RFC 3261 §7.3,
// RFC 4475 §3.1.2.11 multi01, §3.1.2.7 mcl01).
var singleValued = []string{"To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"}

// supported lists the option tags this peer implements (Require, §8.2.2.3).
var supported = map[string]bool{"path": true, "outbound": true}

// checkRequest validates what sipgo's parser lets through before any
// handler acts (§8.2, §16.3); a non-zero code is the response to send.
func (s *Service) checkRequest(req *sip.Request, terminating bool) (int, string, []sip.Header) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", nil // RFC 4475 §3.1.2.19 badvers
	}
	for _, name := range []string{"To", "From", "Call-ID", "CSeq"} {
		if req.GetHeader(name) == nil {
			return 400, "Bad Request (missing " + name + ")", nil // §3.1.2.10 insuf
		}
	}
	for _, name := range singleValued {
		if len(req.GetHeaders(name)) > 1 {
			return 400, "Bad Request (more than one " + name + ")", nil
		}
	}
	// sipgo upper-cases the request's method but not the CSeq's.
	if cs := req.CSeq(); cs == nil || !strings.EqualFold(string(cs.MethodName), string(req.Method)) {
		return 400, "Bad Request (CSeq method does not match)", nil // §3.1.2.13 mismatch01
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips":
	default:
		return 416, "Unsupported URI Scheme", nil // §3.3.2 unkscm
	}
	if len(req.Recipient.Headers) > 0 {
		return 400, "Bad Request (headers in the Request-URI)", nil // §3.1.2.1 escruri
	}
	// §16.3 step 5: a proxy fails requests needing extensions it lacks;
	// §8.2.2.3: so does a UAS for Require.
	var unsupported []string
	names := []string{"Proxy-Require"}
	if terminating {
		names = append(names, "Require")
	}
	for _, name := range names {
		for _, h := range req.GetHeaders(name) {
			for _, tag := range strings.Split(h.Value(), ",") {
				if tag = strings.TrimSpace(tag); tag != "" && !supported[strings.ToLower(tag)] {
					unsupported = append(unsupported, tag)
				}
			}
		}
	}
	if len(unsupported) > 0 {
		return 420, "Bad Extension", []sip.Header{sip.NewHeader("Unsupported", strings.Join(unsupported, ", "))}
	}
	return 0, "", nil
}

// badDisplayName names the first From, To, Contact, Route or Record-Route
// header field of msg whose display name is neither a quoted string nor
// tokens separated by white space (RFC 3261 §25.1 display-name), "" if
// there is none. sipgo reads such a name ("Bell, Alexander <sip:…>")
// as if it were quoted; RFC 4475 §3.1.2.15 baddn: "reasonable always to
// reject with 400". Octets above 0x7F pass: unquoted UTF-8 names are
// common in the field, and unambiguous.
func badDisplayName(msg []byte) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	i := bytes.IndexByte(head, '\n') + 1 // past the start line
	for i > 0 && i < len(head) {
		end := fieldEnd(head, i)
		field := head[i:end]
		i = end
		colon := bytes.IndexByte(field, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimSpace(field[:colon])
		kind := fieldKind(name)
		if kind != addrField && kind != addrListField {
			continue
		}
		if !displayNamesOK(field[colon+1:], kind == addrListField) {
			return string(name)
		}
	}
	return ""
}

// Header fields the guard looks into, by fieldKind.
const (
	otherField    = iota
	viaField      // Via, v
	addrField     // From, f, To, t: one name-addr or addr-spec
	addrListField // Contact, m, Route, Record-Route: a list of them
)

// fieldKind classifies a header field name (compact forms too: RFC 3261
// §7.3.3) without allocating: the guard runs it on every field of every
// message.
func fieldKind(name []byte) int {
	switch {
	case bytes.EqualFold(name, []byte("via")), bytes.EqualFold(name, []byte("v")):
		return viaField
	case bytes.EqualFold(name, []byte("from")), bytes.EqualFold(name, []byte("f")),
		bytes.EqualFold(name, []byte("to")), bytes.EqualFold(name, []byte("t")):
		return addrField
	case bytes.EqualFold(name, []byte("contact")), bytes.EqualFold(name, []byte("m")),
		bytes.EqualFold(name, []byte("route")), bytes.EqualFold(name, []byte("record-route")):
		return addrListField
	}
	return otherField
}

// displayNamesOK runs displayNameOK on each element of a raw (possibly
// folded) field value: the value is split at the commas outside quoted
// strings and <…> when it is a list (list), without copying; a line end
// in a fold counts as the white space unfolding makes of it (§7.3.1).
func displayNamesOK(v []byte, list bool) bool {
	start, angle := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			j := quotedEnd(v, i)
			if j < 0 {
				return displayNameOK(v[start:])
			}
			i = j - 1
		case '<':
			angle = true
		case '>':
			angle = false
		case ',':
			if list && !angle {
				if !displayNameOK(v[start:i]) {
					return false
				}
				start = i + 1
			}
		}
	}
	return displayNameOK(v[start:])
}

// displayNameOK says whether the text before the '<' of one name-addr is
// a valid display name; an addr-spec (no '<') or a quoted name passes.
func displayNameOK[T string | []byte](elem T) bool {
	i := 0
	for i < len(elem) && isLWS(elem[i]) {
		i++
	}
	if i < len(elem) && elem[i] == '"' {
		return true // quoted-string; sipgo judges the rest
	}
	lt := i
	for lt < len(elem) && elem[lt] != '<' {
		lt++
	}
	if lt == len(elem) {
		return true // an addr-spec
	}
	for ; i < lt; i++ {
		if c := elem[i]; !isLWS(c) && !isTokenChar(c) && c < 0x80 {
			return false
		}
	}
	return true
}

// isLWS: white space, or the line end of a fold, which unfolds to white
// space (RFC 3261 §7.3.1).
func isLWS(c byte) bool { return isWSP(c) || c == '\r' || c == '\n' }

// isTokenChar: RFC 3261 §25.1 token = 1*(alphanum / "-" / "." / "!" /
// "%" / "*" / "_" / "+" / "`" / "'" / "~").
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}
