package sip

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// TestLate2xxCrossingCancelReachesCaller: the callee answers 200 just as
// the caller cancels. sipgo ends the caller's INVITE with its own 487 on
// the CANCEL; the 200 that crossed the CANCEL must still reach the caller
// (RFC 3261 §16.7 step 5), so that it ACKs and BYEs it instead of the
// callee sitting in a silent call for 32 s. Over TCP, as between peers:
// there sipgo has no Timer G, whose retransmission of the final response
// happens to carry the 2xx over UDP half a second late.
func TestLate2xxCrossingCancelReachesCaller(t *testing.T) {
	ts := newTestService(t, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	cancelled := make(chan struct{})
	ts.client.TxRequester = &siptest.ClientTxRequesterResponder{
		OnRequest: func(req *sip.Request, w *siptest.ClientTxResponder) {
			switch req.Method {
			case sip.INVITE:
				w.Receive(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
				select { // the callee answered before the CANCEL reached it
				case <-cancelled:
				case <-time.After(5 * time.Second):
					return
				}
				ok := sip.NewResponseFromRequest(req, 200, "OK", nil)
				ok.To().Params.Add("tag", "callee")
				w.Receive(ok)
			case sip.CANCEL:
				w.Receive(sip.NewResponseFromRequest(req, 200, "OK", nil))
				close(cancelled)
			}
		},
	}
	c := serveTCP(t, ts)
	via := "Via: SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bK-late2xx"
	head := []string{
		"Max-Forwards: 70",
		"From: <sip:caller@" + testDomain + ">;tag=abc",
		"To: <sip:bob@" + testDomain + ">",
		"Call-ID: late-2xx",
	}
	send := func(method, cseq string, extra ...string) {
		t.Helper()
		lines := append([]string{method + " sip:bob@" + testDomain + " SIP/2.0", via}, head...)
		lines = append(lines, "CSeq: "+cseq)
		lines = append(lines, extra...)
		lines = append(lines, "Content-Length: 0")
		if _, err := c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{} // "<code> <method>"
	r := bufio.NewReader(c)
	await := func(want string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for !seen[want] {
			res, err := readResponse(r)
			if err != nil {
				t.Fatalf("no %s (got %v): %v", want, seen, err)
			}
			seen[strconv.Itoa(res.StatusCode)+" "+string(res.CSeq().MethodName)] = true
		}
	}
	send("INVITE", "1 INVITE", "Contact: <sip:caller@"+c.LocalAddr().String()+">")
	await("180 INVITE")
	send("CANCEL", "1 CANCEL")
	await("200 CANCEL")
	await("487 INVITE")
	await("200 INVITE")
}

func serveTCP(t *testing.T, ts *testService) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = ts.ServeTCP(ln) }()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readResponse reads one response without a body from a stream (§18.3),
// past keep-alives.
func readResponse(r *bufio.Reader) (*sip.Response, error) {
	head, err := readHead(r)
	for err == nil && len(bytes.TrimSpace(head)) == 0 {
		head, err = readHead(r)
	}
	if err != nil {
		return nil, err
	}
	m, err := sip.ParseMessage(head)
	if err != nil {
		return nil, err
	}
	res, ok := m.(*sip.Response)
	if !ok {
		return nil, fmt.Errorf("a request, not a response: %q", head)
	}
	return res, nil
}
