package sip

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/p2psip/p2psip/overlay"
)

// FuzzPeerStream feeds arbitrary bytes to a peer as if another peer sent
// them on a SIP stream (framing, parsing, routing: the whole inbound path).
// The peer must neither crash nor stop serving: after every input a fresh
// stream still gets its OPTIONS answered. Only the transport and routing
// are real: what the peer would forward is answered by a recorder.
func FuzzPeerStream(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\nab"))
	f.Add([]byte("CANCEL sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP x.invalid;branch=z9hG4bK1\r\n\r\n"))
	f.Add([]byte("\r\n\r\n\r\n\r\n"))
	// One pair for the whole run: starting sipgo per input would measure
	// sipgo's start, not the stream path.
	pn := &pipeNet{handlers: map[string]func(overlay.Stream){}}
	a := newPipePeer(f, pn, otherPeer)
	b := newPipePeer(f, pn, newFakeLocator().ID())
	// What b forwards goes nowhere: the inputs carry foreign addresses
	// (RFC 4475's Vias and Routes), and a unit test sends nothing to them.
	b.client.TxRequester = &siptest.ClientTxRequester{OnRequest: func(r *sip.Request) *sip.Response {
		return sip.NewResponseFromRequest(r, 200, "OK", nil)
	}}
	b.sendStateless = func(*sip.Request) error { return nil }
	f.Fuzz(func(t *testing.T, data []byte) {
		pn.mu.Lock()
		h := pn.handlers[b.cfg.Locator.ID()]
		pn.mu.Unlock()
		near, far := pipePair(a.cfg.Locator.ID(), b.cfg.Locator.ID())
		go h(far)
		go func() { _, _ = io.Copy(io.Discard, near) }()
		_ = near.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = near.Write(data)
		_ = near.Close()
		if code := optionsTo(t, a, b.peerHost); code != 200 {
			t.Fatalf("after %q the peer answers OPTIONS with %d", data, code)
		}
	})
}
