package sip

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// torture is where the RFC 4475 messages are kept (testdata/rfc4475 at the
// repository root).
const torture = "../../testdata/rfc4475"

// FuzzHandleRequest feeds arbitrary bytes through the SIP parser and the
// handlers. Forwarding goes to a recorder, so no fuzz input can make the
// test send packets anywhere. Seeds: the RFC 4475 torture messages.
func FuzzHandleRequest(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("INVITE sip:bob@test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@test.overlay>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 1\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("REGISTER sip:test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2\r\nFrom: <sip:a@test.overlay>;tag=1\r\nTo: <sip:a@test.overlay>\r\nCall-ID: y\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@127.0.0.1>;expires=3600\r\nContent-Length: 0\r\n\r\n"))
	// What the guards normalise or key: white space around separators
	// (RFC 4475 wsinv), an RFC 2543 request (inv2543), its CANCEL.
	f.Add([]byte("INVITE sip:bob@test.overlay SIP/2.0\r\nVia : SIP / 2.0 / UDP 127.0.0.1 ;\r\n branch = z9hG4bK-3\r\nFrom: A <sip:a@b> ; tag = 1\r\nTo:\r\n sip:bob@test.overlay ;x = y\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\nm: <sip:a@127.0.0.1> ; q = 0.5 , <sip:a@127.0.0.2>\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:bob@test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nFrom: <sip:a@b>\r\nTo: sip:bob@test.overlay\r\nCall-ID: w\r\nCSeq: 5 INVITE\r\n\r\n"))
	f.Add([]byte("CANCEL sip:bob@test.overlay SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nFrom: <sip:a@b>\r\nTo: sip:bob@test.overlay\r\nCall-ID: w\r\nCSeq: 5 CANCEL\r\n\r\n"))
	ts := newTestService(f, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	f.Fuzz(func(t *testing.T, data []byte) {
		// As in service: the guards screen what sipgo parses.
		data, ok := screen(data, true)
		if !ok {
			return // the guards answer 400, or drop a response
		}
		msg, err := sip.ParseMessage(data)
		if err != nil {
			t.Fatalf("screened, but sipgo cannot parse it: %v", err)
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Via() == nil || req.CSeq() == nil || req.CallID() == nil {
			return // the transaction layer drops these before any handler
		}
		if _, err := sip.ServerTxKeyMake(req); err != nil && !req.IsAck() {
			return // likewise: sipgo answers 400 without a transaction
		}
		req.SetSource("127.0.0.1:5099")
		req.SetTransport("UDP")
		for _, res := range ts.handle(req) {
			if res.StatusCode < 100 || res.StatusCode > 699 {
				t.Fatalf("status %d", res.StatusCode)
			}
		}
	})
}

// FuzzNormalize: the normaliser never panics, never grows a message,
// changes nothing but white space (never the bytes of the body), and a
// second pass changes nothing more.
func FuzzNormalize(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nTo : \"a\\\"\" < sip:x > ; tag = 1 , x\r\nv: SIP / 2.0 / UDP h : 1 ; branch = 2 ,\r\n SIP/2.0/TCP h\r\nm: a , b ; c = \"d ;\" , <e> ;f\r\n\r\nbody ; = x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := normalizeMessage(data)
		if len(out) > len(data) {
			t.Fatalf("grew: %q", out)
		}
		ws := func(b []byte) []byte {
			return bytes.Map(func(r rune) rune {
				if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
					return -1
				}
				return r
			}, b)
		}
		if !bytes.Equal(ws(out), ws(data)) {
			t.Fatalf("more than white space changed:\n%q\n%q", data, out)
		}
		if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 && !bytes.HasSuffix(out, data[i:]) {
			t.Fatalf("the body changed: %q", out)
		}
		if again := normalizeMessage(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
	})
}

// FuzzStrayResponse: a response that matches no transaction, whatever it
// holds, is forwarded or dropped (accepted.go), never a crash or a hang.
func FuzzStrayResponse(f *testing.F) {
	ours := "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p1\r\n"
	for _, next := range []string{
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-c1;received=127.0.0.1;rport=5099\r\n",
		"Via: SIP/2.0/TCP k51qzi5uqu5dk8rvsye1ft3ugi18yrv55pczl1o4rk29ksd2mhr9ysjbuywx8m.p2psip.invalid;branch=z9hG4bK-p2\r\n",
		"Via: SIP/2.0/WSS x.invalid;branch=z9hG4bK-w;received=127.0.0.2\r\n",
		"",
	} {
		f.Add([]byte("SIP/2.0 200 OK\r\n" + ours + next + "From: <sip:a@test.overlay>;tag=1\r\nTo: <sip:bob@test.overlay>;tag=2\r\nCall-ID: s1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	}
	f.Add([]byte("SIP/2.0 180 Ringing\r\n" + ours + "From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: s2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=3\r\nCall-ID: s3\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))
	ts := newTestService(f, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		data, ok := screen(data, false)
		if !ok {
			return
		}
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return
		}
		if len(data)%2 == 0 { // half the inputs find a kept copy and an upstream
			now := time.Now()
			if key, ok := acceptedKey(res); ok {
				ts.accepted.remember(key, res, "UDP", "127.0.0.1:9", "", now)
			}
			if key, ok := upstreamKeyOf(res); ok {
				ts.accepted.remember(key, nil, "TCP", "127.0.0.1:9", "", now)
			}
		}
		ts.onStrayResponse(res) // no connection to 127.0.0.1:9: nothing leaves
	})
}
