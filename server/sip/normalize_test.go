package sip

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestNormalizeField(t *testing.T) {
	cases := []struct{ in, want string }{
		// RFC 3261 §25.1 SWS around EQUAL and SEMI, folding.
		{"TO :\r\n sip:a@b.example ;   tag    = 19n\r\n", "TO: sip:a@b.example;tag=19n\r\n"},
		{"from   : \"J R \\\\\\\"\"       <sip:j@example.com>\r\n  ;\r\n  tag = 98\r\n", "from: \"J R \\\\\\\"\"       <sip:j@example.com>;tag=98\r\n"},
		{"m:\"Q \\\"\\\"\" <sip:j@example.com> ; newparam =\r\n      newvalue ;\r\n  second ; q = 0.33\r\n",
			"m:\"Q \\\"\\\"\" <sip:j@example.com>;newparam=newvalue;second;q=0.33\r\n"},
		{"Contact: <sip:a@b> ; q = 1 , Bob <sip:c@d> ;expires= 60\r\n", "Contact: <sip:a@b>;q=1,Bob <sip:c@d>;expires=60\r\n"},
		// SLASH, COMMA, COLON in Via; other white space becomes one SP.
		{"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n", "Via: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw\r\n"},
		{"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111 : 5070  ; branch=\r\n z9hG4bK30239\r\n",
			"v: SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8,SIP/2.0/UDP 192.168.255.111:5070;branch=z9hG4bK30239\r\n"},
		// Quoted parameter values are kept.
		{"To: <sip:a@b> ; p = \"x = y ; z\"\r\n", "To: <sip:a@b>;p=\"x = y ; z\"\r\n"},
	}
	for _, c := range cases {
		got, ok := normalizeField([]byte(c.in))
		if !ok || string(got) != c.want {
			t.Errorf("%q:\n got %q (%v)\nwant %q", c.in, got, ok, c.want)
		}
	}
	// Left as they are: canonical already, not a structured field, a URI
	// with white space in it (RFC 4475 badaspec), a display name with
	// separators, an unterminated quote or <, text after a name-addr.
	for _, in := range []string{
		"From: \"A = B\" <sip:a@b>;tag=1\r\n",
		"Subject: a ; b = c\r\n",
		"NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n",
		"To: \"Watson, Thomas\" < sip:t.watson@example.org >\r\n",
		"To: \"Mr. J. User <sip:j.user@example.com>\r\n",
		"To: Bob <sip:b@c\r\n",
		"To: <sip:b@c> x ; tag=1\r\n",
		"Via: SIP/2.0/UDP host;branch=z9hG4bK1\r\n",
	} {
		if got, ok := normalizeField([]byte(in)); ok {
			t.Errorf("%q rewritten to %q", in, got)
		}
	}
}

// TestNormalizeWsinv: sipgo reads RFC 4475 §3.1.1.1 wsinv once it is
// normalised: tags, Contact parameters and Vias as the sender meant
// them; the body is untouched.
func TestNormalizeWsinv(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(torture, "wsinv.dat"))
	if err != nil {
		t.Fatal(err)
	}
	out := normalizeMessage(raw)
	if len(out) > len(raw) {
		t.Fatalf("normalising grew the message: %d > %d", len(out), len(raw))
	}
	_, rawBody, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	_, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	if !bytes.Equal(body, rawBody) {
		t.Fatal("the body changed")
	}
	msg, err := sip.ParseMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	if tag, _ := req.From().Params.Get("tag"); tag != "98asjd8" {
		t.Errorf("From tag %q", tag)
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "1918181833n" || req.To().Address.Host != "chair-dnrc.example.com" {
		t.Errorf("To %q", req.To().Value())
	}
	if c := req.Contact(); c == nil || c.Params.GetOr("q", "") != "0.33" || c.Params.GetOr("newparam", "") != "newvalue" {
		t.Errorf("Contact %v", c)
	}
	vias := req.GetHeaders("Via")
	want := []string{"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw", "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8",
		"SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"}
	var got []string
	for _, v := range vias {
		got = append(got, v.Value())
	}
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("Vias\n got %q\nwant %q", got, want)
	}
	if _, err := sip.ServerTxKeyMake(req); err != nil {
		t.Errorf("no transaction key: %v", err)
	}
	// Unknown header fields keep their bytes.
	if !bytes.Contains(out, []byte("NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n")) ||
		!bytes.Contains(out, []byte("UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n")) {
		t.Error("an unknown header field changed")
	}
}

// TestNormalizeCorpus: on the RFC 4475 corpus the normaliser only
// rewrites whitespace, changes nothing else (the bytes other than white
// space stay in order), and is idempotent.
func TestNormalizeCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	if len(files) == 0 {
		t.Fatal("no RFC 4475 messages in " + torture)
	}
	strip := func(b []byte) string {
		return strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, string(b))
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		out := normalizeMessage(raw)
		if strip(out) != strip(raw) {
			t.Errorf("%s: more than white space changed:\n%s", filepath.Base(f), out)
		}
		if again := normalizeMessage(out); !bytes.Equal(again, out) {
			t.Errorf("%s: not idempotent:\n%s\n---\n%s", filepath.Base(f), out, again)
		}
		if bytes.Equal(out, raw) && &out[0] != &raw[0] {
			t.Errorf("%s: unchanged but copied", filepath.Base(f))
		}
	}
}

func TestBadDisplayName(t *testing.T) {
	bad := map[string]string{
		"From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43":   "From",
		"t: Watson; Thomas <sip:t@example.org>":                        "t",
		"Contact: <sip:a@b>, Bob (x) <sip:b@c>":                        "Contact",
		"Route: <sip:p1@example.com;lr>,\r\n Proxy: two <sip:p2@b;lr>": "Route",
	}
	for h, want := range bad {
		msg := "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + h + "\r\nCall-ID: c\r\n\r\n"
		if got := badDisplayName([]byte(msg)); got != want {
			t.Errorf("%q: got %q, want %q", h, got, want)
		}
	}
	for _, h := range []string{
		"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.", // RFC 4475 intmeth
		"From: \"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423",
		"From: caller<sip:caller@example.com>;tag=323",
		"To: sip:user@example.com;tag=1",
		"To: Jörg Müller <sip:j@example.com>",
		"Contact: \"A, B\" <sip:a@b>, <sip:c@d;x=\"1,2\">;q=0.5, *",
		"Subject: Bell, Alexander <is not an address>",
	} {
		msg := "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + h + "\r\n\r\n"
		if got := badDisplayName([]byte(msg)); got != "" {
			t.Errorf("%q rejected (%s)", h, got)
		}
	}
}

// TestRFC2543Branch: an RFC 2543 request (no branch, no From tag: RFC
// 4475 §3.4.1 inv2543) gets a transaction key; its CANCEL and the ACK to
// its final response get the same branch, a different request another;
// the branch leaves the responses again, byte for byte.
func TestRFC2543Branch(t *testing.T) {
	const inv = "INVITE sip:UserB@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP iftgw.example.com\r\n" +
		"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n" +
		"To: sip:+16505552222@ss1.example.net;user=phone\r\n" +
		"Call-ID: inv2543.1717@ift.client.example.com\r\n" +
		"CSeq: 56 INVITE\r\n\r\n"
	branchOf := func(msg string) string {
		t.Helper()
		out, ok := screen([]byte(msg), true)
		if !ok {
			t.Fatalf("rejected:\n%s", msg)
		}
		m, err := sip.ParseMessage(out)
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		if _, err := sip.ServerTxKeyMake(req); err != nil {
			t.Fatalf("no transaction key: %v\n%s", err, out)
		}
		b, _ := req.Via().Params.Get("branch")
		return b
	}
	b := branchOf(inv)
	if !strings.HasPrefix(b, rfc2543Branch) {
		t.Fatalf("branch %q", b)
	}
	cancel := strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "56 INVITE", "56 CANCEL", 1)
	ack := strings.Replace(strings.Replace(inv, "INVITE sip", "ACK sip", 1), "56 INVITE", "56 ACK", 1)
	ack = strings.Replace(ack, "user=phone\r\nCall-ID", "user=phone;tag=abc\r\nCall-ID", 1)
	if bc, ba := branchOf(cancel), branchOf(ack); bc != b || ba != b {
		t.Errorf("INVITE %q, CANCEL %q, ACK %q", b, bc, ba)
	}
	if other := branchOf(strings.Replace(inv, "56 INVITE", "57 INVITE", 1)); other == b {
		t.Error("another CSeq, same branch")
	}
	// Requests with a branch or a From tag are left alone.
	for _, msg := range []string{
		strings.Replace(inv, "iftgw.example.com\r\n", "iftgw.example.com;branch=1\r\n", 1),
		strings.Replace(inv, "user=phone>\r\n", "user=phone>;tag=1\r\n", 1),
	} {
		if out, _ := screen([]byte(msg), true); string(out) != msg {
			t.Errorf("changed:\n%s", out)
		}
	}
	// The response's Via is the request's again.
	out, _ := screen([]byte(inv), true)
	m, _ := sip.ParseMessage(out)
	res := sip.NewResponseFromRequest(m.(*sip.Request), 503, "Service Unavailable", nil)
	res.Via().Params.Add("received", "192.0.2.9")
	sent := string(stripRFC2543Branch([]byte(res.String())))
	if !strings.Contains(sent, "\r\nVia: SIP/2.0/UDP iftgw.example.com;received=192.0.2.9\r\n") || strings.Contains(sent, "branch") {
		t.Errorf("response:\n%s", sent)
	}
	if req := []byte(out); !bytes.Equal(stripRFC2543Branch(req), req) {
		t.Error("a request was stripped")
	}
}

// A list with one SP after each comma ("<a>, <b>"), the form user agents
// send and echo (a UAS copies a proxy's Record-Route list into every
// response), is left as it is: sipgo reads it so, and rewriting it cost
// a copy of every such message. Without an allocation.
func TestNormalizeKeepsCommaSpaceLists(t *testing.T) {
	msg := []byte("SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/TCP p1.invalid;branch=z9hG4bK-1, SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-2;received=127.0.0.1;rport=5080\r\n" +
		"Record-Route: <sip:p2.invalid;lr;p2pd=1>, <sip:127.0.0.1:5060;lr>, <sip:p1.invalid;lr>\r\n" +
		"From: sipp <sip:sipp@127.0.0.1:5080>;tag=1\r\nTo: <sip:bob@p2psip.local>;tag=2\r\n" +
		"Call-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5070;transport=UDP>\r\nContent-Length: 0\r\n\r\n")
	if out := normalizeMessage(msg); &out[0] != &msg[0] {
		t.Fatalf("rewritten:\n%s", out)
	}
	if n := testing.AllocsPerRun(100, func() { normalizeMessage(msg) }); n != 0 {
		t.Errorf("%v allocations per message, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { contentLength(msg) }); n != 0 {
		t.Errorf("contentLength: %v allocations per message, want 0", n)
	}
	parsed, err := sip.ParseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if rr, vias := parsed.GetHeaders("Record-Route"), parsed.GetHeaders("Via"); len(rr) != 3 || len(vias) != 2 {
		t.Fatalf("sipgo read %d Record-Routes, %d Vias; want 3, 2", len(rr), len(vias))
	}
	// Two SPs, or SP before the comma, are still made canonical.
	for _, odd := range []string{"Route: <sip:a;lr>,  <sip:b;lr>\r\n", "Route: <sip:a;lr> , <sip:b;lr>\r\n"} {
		if _, ok := normalizeField([]byte(odd)); !ok {
			t.Errorf("%q left as it is", odd)
		}
	}
}
