package sip

import (
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
