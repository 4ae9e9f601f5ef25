package sip

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// torture is where the RFC 4475 messages are kept (beside the checkout).
const torture = "../../../shared/testdata/rfc4475"

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
	ts := newTestService(f, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
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
