package sip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// rawCases are REGISTERs as phones send them: long and compact header
// names, several Vias on several lines or on one, a To with and without a
// tag, display names, an addr-spec To.
var rawCases = []string{
	"REGISTER sip:test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:a@test.overlay>;tag=1\r\nTo: <sip:a@test.overlay>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@127.0.0.1:5099>\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:test.overlay SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-2\r\nf: \"Alice A.\" <sip:a@test.overlay>;tag=1\r\nt: Alice <sip:a@test.overlay>\r\ni: c2@host\r\nCSeq: 7 REGISTER\r\nm: <sip:a@127.0.0.1:5099>\r\nl: 0\r\n\r\n",
	"REGISTER sip:test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-3a, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK-3b\r\nVia: SIP/2.0/UDP 10.0.0.3;received=10.0.0.4;branch=z9hG4bK-3c\r\nFrom: sip:a@test.overlay;tag=x\r\nTo: sip:a@test.overlay;tag=already\r\nCall-ID: c3\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n",
	"REGISTER sip:test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-4\r\nFrom: <sip:a@test.overlay>;tag=1\r\nTo: <sip:a@test.overlay;transport=udp>;x=tag\r\nCall-ID: c4\r\nCSeq: 3 REGISTER\r\nContent-Length: 0\r\n\r\n",
}

// rawAnswer says what sipgo's NewResponseFromRequest would: the same
// status, Vias, From, To (plus a tag when the request had none), Call-ID,
// CSeq and extra headers.
func TestRawAnswerAsSipgo(t *testing.T) {
	extra := []sip.Header{sip.NewHeader("Contact", "<sip:a@127.0.0.1:5099>;expires=60"), sip.NewHeader("Min-Expires", "60")}
	for i, msg := range rawCases {
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		req := m.(*sip.Request)
		out, ok := rawAnswer([]byte(msg), 200, "OK", extra)
		if !ok {
			t.Fatalf("case %d: no raw answer", i)
		}
		got := parseResponse(t, out)
		want := sip.NewResponseFromRequest(req, 200, "OK", nil)
		for _, h := range extra {
			want.AppendHeader(h)
		}
		want = parseResponse(t, []byte(want.String()))
		if got.StatusCode != 200 || got.Reason != "OK" {
			t.Errorf("case %d: status %d %q", i, got.StatusCode, got.Reason)
		}
		if g, w := headerValues(got, "Via"), headerValues(want, "Via"); g != w {
			t.Errorf("case %d: Via %q, sipgo %q", i, g, w)
		}
		for _, name := range []string{"From", "Call-ID", "CSeq", "Contact", "Min-Expires", "Content-Length"} {
			if g, w := headerValues(got, name), headerValues(want, name); g != w {
				t.Errorf("case %d: %s %q, sipgo %q", i, name, g, w)
			}
		}
		gotTag, _ := got.To().Params.Get("tag")
		reqTag, hadTag := req.To().Params.Get("tag")
		switch {
		case gotTag == "":
			t.Errorf("case %d: no To tag", i)
		case hadTag && gotTag != reqTag:
			t.Errorf("case %d: To tag %q, request had %q", i, gotTag, reqTag)
		}
		if got.To().Address.String() != req.To().Address.String() {
			t.Errorf("case %d: To %q, request %q", i, got.To().Address.String(), req.To().Address.String())
		}
	}
}

// What rawAnswer leaves to sipgo.
func TestRawAnswerDeclines(t *testing.T) {
	base := rawCases[0]
	for name, msg := range map[string]string{
		"rport":     strings.Replace(base, ";branch=", ";rport;branch=", 1),
		"RPort":     strings.Replace(base, ";branch=", ";RPort;branch=", 1),
		"folded":    strings.Replace(base, "To: <sip:", "To:\r\n <sip:", 1),
		"no CSeq":   strings.Replace(base, "CSeq: 1 REGISTER\r\n", "", 1),
		"two To":    strings.Replace(base, "Call-ID:", "To: <sip:b@test.overlay>\r\nCall-ID:", 1),
		"no end":    strings.TrimSuffix(base, "\r\n\r\n"),
		"no Via":    strings.Replace(base, "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n", "", 1),
		"not colon": strings.Replace(base, "Max-Forwards: 70", "Max-Forwards 70", 1),
	} {
		if out, ok := rawAnswer([]byte(msg), 200, "OK", nil); ok {
			t.Errorf("%s: answered %q", name, out)
		}
	}
}

// Each answer gets its own To tag.
func TestRawAnswerFreshTags(t *testing.T) {
	a, _ := rawAnswer([]byte(rawCases[0]), 200, "OK", nil)
	b, _ := rawAnswer([]byte(rawCases[0]), 200, "OK", nil)
	ta, _ := parseResponse(t, a).To().Params.Get("tag")
	tb, _ := parseResponse(t, b).To().Params.Get("tag")
	if len(ta) != 16 || ta == tb {
		t.Fatalf("tags %q and %q", ta, tb)
	}
}

// FuzzRawAnswer: for anything the guard lets through, a raw answer is a
// response sipgo parses, to the same transaction (top Via branch, Call-ID,
// CSeq). Seeds: the RFC 4475 messages and the cases above.
func FuzzRawAnswer(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	for _, c := range rawCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, req, ok := screenRequest(data, false)
		if !ok || req == nil || req.Via() == nil || req.CallID() == nil || req.CSeq() == nil {
			return
		}
		res, ok := rawAnswer(out, 200, "OK", nil)
		if !ok {
			return
		}
		m, err := sip.ParseMessage(res)
		if err != nil {
			t.Fatalf("raw answer does not parse: %v\n%q\nfrom %q", err, res, out)
		}
		r, isRes := m.(*sip.Response)
		if !isRes || r.Via() == nil || r.CallID() == nil || r.CSeq() == nil {
			t.Fatalf("raw answer lacks its transaction's fields: %q", res)
		}
		wb, _ := req.Via().Params.Get("branch")
		gb, _ := r.Via().Params.Get("branch")
		if gb != wb || r.CallID().Value() != req.CallID().Value() || r.CSeq().Value() != req.CSeq().Value() {
			t.Fatalf("raw answer is for another transaction: %q\nfrom %q", res, out)
		}
	})
}

func parseResponse(t *testing.T, b []byte) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("not a response: %q", b)
	}
	return res
}

func headerValues(m sip.Message, name string) string {
	var vs []string
	for _, h := range m.GetHeaders(name) {
		vs = append(vs, h.Value())
	}
	return strings.Join(vs, " | ")
}
