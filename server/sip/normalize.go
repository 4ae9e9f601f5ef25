package sip

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// normalizeMessage rewrites the header fields that sipgo parses by
// structure — Via, From, To, Contact, Route and Record-Route — into the
// canonical form sipgo can read, before it parses them. RFC 3261 §25.1
// lets linear white space surround the separators of these fields
// (SEMI, EQUAL, COMMA, SLASH, COLON: "SWS ';' SWS" and so on) and fold
// them over several lines; sipgo takes "tag = 1" for a parameter named
// "tag " (RFC 4475 §3.1.1.1 wsinv). The rewrite is semantics-preserving
// by that ABNF: it unfolds the field, drops white space next to a
// separator and shortens other runs of it to one SP, outside quoted
// strings, and never inside <…> (a URI has no white space: RFC 4475
// badaspec must stay malformed) or in a display name. Other header
// fields and the body are left byte for byte. msg itself comes back when
// nothing needs to change; the result is never longer than msg.
func normalizeMessage(msg []byte) []byte {
	headLen := bytes.Index(msg, []byte("\r\n\r\n"))
	if headLen < 0 {
		headLen = len(msg) // no end of header: rewrite what there is
	}
	head := msg[:headLen]
	var out []byte // nil until a field changes
	pos := bytes.IndexByte(head, '\n')
	if pos < 0 {
		return msg
	}
	pos++ // past the start line
	for pos < len(head) {
		end := fieldEnd(head, pos)
		field := head[pos:end]
		if repl, ok := normalizeField(field); ok {
			if out == nil {
				out = make([]byte, 0, len(msg))
				out = append(out, head[:pos]...)
			}
			out = append(out, repl...)
		} else if out != nil {
			out = append(out, field...)
		}
		pos = end
	}
	if out == nil {
		return msg
	}
	return append(out, msg[headLen:]...)
}

// fieldEnd returns where the header field starting at pos in head ends:
// past its line and its continuation lines (RFC 3261 §7.3.1 folding), with
// their line ends.
func fieldEnd(head []byte, pos int) int {
	end := pos
	for {
		nl := bytes.IndexByte(head[end:], '\n')
		if nl < 0 {
			return len(head)
		}
		end += nl + 1
		if end >= len(head) || !isWSP(head[end]) {
			return end
		}
	}
}

// normalizeField returns the canonical form of one raw header field
// (with its line ends) when it is one sipgo parses by structure and
// differs from it.
func normalizeField(field []byte) ([]byte, bool) {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 || isWSP(field[0]) {
		return nil, false
	}
	kind := fieldKind(bytes.Trim(field[:colon], " \t")) // SP and HTAB only: §25.1 LWS
	if kind == otherField || !needsNormalizing(field[colon+1:], kind == viaField) {
		return nil, false
	}
	name := strings.Trim(string(field[:colon]), " \t")
	var canon func(string) (string, bool)
	switch kind {
	case viaField:
		canon = canonVia
	case addrField:
		canon = func(v string) (string, bool) { return canonAddrs(v, false) }
	default:
		canon = func(v string) (string, bool) { return canonAddrs(v, true) }
	}
	raw := string(field[colon+1:])
	eol := "\r\n"
	if !strings.HasSuffix(raw, eol) {
		eol = ""
		if strings.HasSuffix(raw, "\n") {
			eol = "\n"
		}
	}
	raw = strings.TrimSuffix(raw, eol)
	// Unfold: a line end followed by white space is white space (§7.3.1).
	value := unfold.Replace(raw)
	value, ok := canon(strings.Trim(value, " \t"))
	if !ok {
		return nil, false
	}
	// One SP after the colon if there was white space (or a fold): the
	// field never grows.
	sep := ":"
	if raw != "" && strings.IndexByte(" \t\r\n", raw[0]) >= 0 {
		sep = ": "
	}
	canonical := name + sep + value + eol
	if canonical == string(field) {
		return nil, false
	}
	return []byte(canonical), true
}

var unfold = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// needsNormalizing is the fast path: most fields are on one line and
// have no white space next to a separator, and sipgo reads them as they
// are. Only when it says yes is the field rewritten (if it changes).
func needsNormalizing(value []byte, via bool) bool {
	value = bytes.TrimRight(value, "\r\n")
	value = bytes.TrimLeft(value, " \t")
	if bytes.ContainsAny(value, "\r\n") {
		return true // folded
	}
	for i, c := range value {
		if !isWSP(c) || i == 0 {
			continue
		}
		prev := value[i-1]
		next := byte(0)
		if i+1 < len(value) {
			next = value[i+1]
		}
		if c == ' ' && prev == ',' && next != 0 && !isWSP(next) && strings.IndexByte(";=,/:", next) < 0 {
			// One SP after a list's comma ("<a>, <b>", "SIP/2.0/UDP a,
			// SIP/2.0/UDP b"): the form most user agents send and echo,
			// and sipgo reads it as it is. Rewriting it cost a peer a
			// new copy of every response that carried a Record-Route
			// list.
			continue
		}
		if strings.IndexByte(";=,/", prev) >= 0 || strings.IndexByte(";=,/", next) >= 0 {
			return true
		}
		if via && (prev == ':' || next == ':' || isWSP(next) || next == 0) {
			return true
		}
	}
	return false
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// quotedEnd is the index just past the quoted string starting at s[i]
// ('"'), or -1 when it does not end.
func quotedEnd[T string | []byte](s T, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// canonSeparators drops the white space next to any of seps and
// shortens other runs of it to one SP, copying quoted strings as they
// are; ok is false for an unterminated quoted string.
func canonSeparators(s, seps string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			j := quotedEnd(s, i)
			if j < 0 {
				return "", false
			}
			b.WriteString(s[i:j])
			i = j
		case isWSP(c):
			j := i
			for j < len(s) && isWSP(s[j]) {
				j++
			}
			prev := byte(0)
			if b.Len() > 0 {
				prev = b.String()[b.Len()-1]
			}
			if j < len(s) && prev != 0 && !strings.ContainsRune(seps, rune(prev)) && !strings.ContainsRune(seps, rune(s[j])) {
				b.WriteByte(' ')
			}
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), true
}

// canonVia: via-parm *(COMMA via-parm), via-parm = sent-protocol LWS
// sent-by *(SEMI via-params), sent-protocol = name SLASH version SLASH
// transport, sent-by = host [COLON port].
func canonVia(v string) (string, bool) { return canonSeparators(v, "/;=,:") }

// canonAddrs: (name-addr / addr-spec) *(SEMI param), comma-separated in
// Contact, Route and Record-Route (list). The display name and the URI
// are copied as they are; only the parameters after them are rewritten.
func canonAddrs(v string, list bool) (string, bool) {
	var b strings.Builder
	b.Grow(len(v))
	i := 0
	for i < len(v) {
		// One element: the display name and URI, then its parameters.
		for i < len(v) && isWSP(v[i]) {
			i++
		}
		start, lt := i, -1
	scan:
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				if j = quotedEnd(v, j); j < 0 {
					return "", false
				}
				j--
			case '<':
				lt = j
				break scan
			case ';':
				break scan
			case ',':
				if list {
					break scan
				}
			}
		}
		if lt < 0 {
			// addr-spec: the URI runs to the first white space, ';' or ','
			// (§20: the parameters after an addr-spec are header parameters).
			for i < len(v) && !isWSP(v[i]) && v[i] != ';' && (v[i] != ',' || !list) {
				i++
			}
		} else {
			gt := strings.IndexByte(v[lt:], '>')
			if gt < 0 {
				return "", false
			}
			i = lt + gt + 1
		}
		b.WriteString(v[start:i])
		// The parameters, up to the next element.
		j := i
		for j < len(v) && (v[j] != ',' || !list) {
			if v[j] == '"' {
				if j = quotedEnd(v, j); j < 0 {
					return "", false
				}
				continue
			}
			j++
		}
		params, ok := canonSeparators(v[i:j], ";=")
		if !ok {
			return "", false
		}
		if params != "" && params[0] != ';' {
			return "", false // not parameters: leave the field to sipgo
		}
		b.WriteString(params)
		if j < len(v) {
			b.WriteByte(',')
			j++
		}
		i = j
	}
	return b.String(), true
}

// RFC 2543 requests (RFC 4475 §3.4.1 inv2543) may have neither a Via
// branch nor a From tag. sipgo keys such a server transaction by the
// From tag (RFC 3261 §17.2.3) and answers 400 without one. The guards
// give such a request a branch that stands for the RFC 2543 matching
// rule instead, and take it out again from the responses they send: the
// sender sees its own Via back (§8.2.6.2, §18.2.2).
//
// rfc2543Branch marks the branches this process added; the random part
// keeps a sender's own branch from ever being mistaken for one.
var rfc2543Branch = func() string {
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	return sip.RFC3261BranchMagicCookie + "-2543-" + hex.EncodeToString(r) + "-"
}()

// addRFC2543Branch returns msg with a branch in its top Via when msg is a
// request whose top Via has no branch and whose From has no tag, else
// msg. The branch hashes what RFC 3261 §17.2.3 matches RFC 2543
// requests on, less the To tag and the method: an ACK to a final
// response and a CANCEL then find the INVITE's transaction (sipgo keys
// the method separately, ACK and CANCEL as INVITE).
func addRFC2543Branch(msg []byte, req *sip.Request) []byte {
	via, from := req.Via(), req.From()
	if via == nil || from == nil || req.CallID() == nil || req.CSeq() == nil {
		return msg
	}
	if _, ok := via.Params.Get("branch"); ok {
		return msg
	}
	if _, ok := from.Params.Get("tag"); ok {
		return msg
	}
	h := sha256.New()
	for _, s := range []string{req.Recipient.String(), from.Value(), req.CallID().Value(),
		strconv.FormatUint(uint64(req.CSeq().SeqNo), 10), via.Value()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	branch := ";branch=" + rfc2543Branch + hex.EncodeToString(h.Sum(nil)[:8])
	// Insert at the end of the top via-parm: before the first ',' of the
	// first Via field, or at its end.
	start, end := topVia(msg)
	if start < 0 {
		return msg
	}
	at := start + bytes.IndexByte(msg[start:end], ',')
	if at < start {
		at = end
	}
	for at > start && isWSP(msg[at-1]) {
		at--
	}
	out := make([]byte, 0, len(msg)+len(branch))
	out = append(out, msg[:at]...)
	out = append(out, branch...)
	return append(out, msg[at:]...)
}

// topVia is the value of the first Via header line of msg's head, as
// offsets [start, end) without the line end; -1 if there is none.
func topVia(msg []byte) (int, int) {
	headLen := bytes.Index(msg, []byte("\r\n\r\n"))
	if headLen < 0 {
		headLen = len(msg)
	}
	pos := bytes.IndexByte(msg[:headLen], '\n') + 1
	for pos > 0 && pos < headLen {
		end := pos + bytes.IndexByte(msg[pos:headLen], '\n')
		if end < pos {
			end = headLen
		}
		line := msg[pos:end]
		if name, _, ok := bytes.Cut(line, []byte(":")); ok {
			switch strings.ToLower(string(bytes.TrimSpace(name))) {
			case "via", "v":
				return pos + len(name) + 1, end - len(line) + len(bytes.TrimRight(line, "\r"))
			}
		}
		pos = end + 1
	}
	return -1, -1
}

// stripRFC2543Branch takes the branch addRFC2543Branch added out of a
// response's top Via; other messages come back as they are.
func stripRFC2543Branch(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("SIP/")) {
		return msg
	}
	start, end := topVia(msg)
	if start < 0 {
		return msg
	}
	mark := []byte(";branch=" + rfc2543Branch)
	i := bytes.Index(msg[start:end], mark)
	if i < 0 {
		return msg
	}
	i += start
	j := i + len(mark)
	for j < end && msg[j] != ';' && msg[j] != ',' && !isWSP(msg[j]) && msg[j] != '\r' {
		j++
	}
	out := make([]byte, 0, len(msg)-(j-i))
	out = append(out, msg[:i]...)
	return append(out, msg[j:]...)
}
