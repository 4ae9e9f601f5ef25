package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/p2psip/p2psip/overlay"
)

// fakeLocator is an in-memory overlay for unit tests of the SIP logic;
// the real overlay is exercised by the overlay and e2e suites.
type fakeLocator struct {
	mu    sync.Mutex
	id    string
	regs  map[string]*overlay.Registration
	owner map[string]string // aor → owner key (string)
}

const testDomain = "test.overlay"

// A syntactically valid peer ID for bindings of "other peers".
const otherPeer = "12D3KooWGzh6p9pQdE4b1fzhSWY3eDPfGqmy1PoMT5tXLxkWnMXU"

func newFakeLocator() *fakeLocator {
	return &fakeLocator{id: "12D3KooWLnMNNLerCB8pWAeGMvtPGrbfWZKkn3VEJwJsbWHQ6CnH", regs: map[string]*overlay.Registration{}, owner: map[string]string{}}
}

func (f *fakeLocator) ID() string { return f.id }

// Sign returns a stand-in signature: no unit test checks node signatures
// (overlay.VerifyNodeSignature has its own tests).
func (f *fakeLocator) Sign(msg []byte) ([]byte, error) {
	return []byte("signed"), nil
}

func (f *fakeLocator) Register(_ context.Context, req overlay.RegisterRequest) (*overlay.Registration, error) {
	aor, err := overlay.CanonicalAOR(req.AOR, testDomain)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := string(req.Signer.PublicKey())
	if req.Device != nil {
		key = string(req.Device.Owner) // a browser owns the AOR
	}
	if o, ok := f.owner[aor]; ok && o != key {
		return nil, fmt.Errorf("%w: %s", overlay.ErrAORHeld, aor)
	}
	f.owner[aor] = key
	reg := f.regs[aor]
	if reg == nil {
		reg = &overlay.Registration{AOR: aor}
		f.regs[aor] = reg
	}
	reg.Owner = []byte(key)
	b := req.Binding
	if b.Node == "" {
		b.Node = f.id
	}
	var keep []overlay.Binding
	for _, x := range reg.Bindings {
		if x.Instance != b.Instance {
			keep = append(keep, x)
		}
	}
	reg.Bindings = append(keep, b)
	reg.Seq++
	return reg, nil
}

func (f *fakeLocator) Unregister(_ context.Context, aor, instance string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	reg := f.regs[aor]
	if reg == nil {
		return overlay.ErrNotFound
	}
	var keep []overlay.Binding
	for _, x := range reg.Bindings {
		if instance != "" && x.Instance != instance {
			keep = append(keep, x)
		}
	}
	reg.Bindings = keep
	return nil
}

func (f *fakeLocator) Lookup(_ context.Context, aor string) (*overlay.Registration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if reg := f.regs[aor]; reg != nil {
		cp := *reg
		return &cp, nil
	}
	return nil, fmt.Errorf("%w: %s", overlay.ErrNotFound, aor)
}

// addRemote puts a binding hosted by another peer into the fake overlay.
func (f *fakeLocator) addRemote(aor, contact, path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regs[aor] = &overlay.Registration{AOR: aor, Bindings: []overlay.Binding{{Instance: "r", Node: otherPeer,
		Contact: contact, Path: []string{path}, Expires: time.Now().Add(time.Hour).Unix()}}}
}

// testService is a Service with no sockets: forwarded requests go to a
// recorder, never to the network.
type testService struct {
	*Service
	loc       *fakeLocator
	forwarded *forwardRecorder
	stateless []*sip.Request
}

func newTestService(t testing.TB, users *Users) *testService {
	t.Helper()
	owner, err := overlay.NewP256Key()
	if err != nil {
		t.Fatal(err)
	}
	loc := newFakeLocator()
	s, err := New(Config{Domain: testDomain, Locator: loc, Owner: owner, Users: users, Host: "127.0.0.1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testService{Service: s, loc: loc}
	s.ports["udp"], s.ports["tcp"] = 5060, 5060
	ts.forwarded = &forwardRecorder{}
	s.client.TxRequester = &siptest.ClientTxRequester{OnRequest: ts.forwarded.answer}
	s.sendStateless = func(r *sip.Request) error { ts.stateless = append(ts.stateless, r); return nil }
	s.peerDest = func(_ context.Context, node string) (string, error) { return ts.peerAddr(node), nil }
	t.Cleanup(func() { _ = s.Close() })
	return ts
}

// peerAddr is the address of the test's one stream to node.
func (ts *testService) peerAddr(node string) string {
	return (&net.TCPAddr{IP: syntheticIP(node), Port: 1}).String()
}

// handle dispatches a request as the sipgo server would and returns the
// responses the handler sent.
func (ts *testService) handle(req *sip.Request) []*sip.Response {
	rec := siptest.NewServerTxRecorder(req)
	switch req.Method {
	case sip.REGISTER:
		ts.onRegister(req, rec)
	case sip.OPTIONS:
		ts.onOptions(req, rec)
	case sip.ACK:
		ts.onAck(req, rec)
	default:
		ts.onRequest(req, rec)
	}
	return rec.Result()
}

// parse builds a request from lines joined by CRLF.
func parse(t testing.TB, lines ...string) *sip.Request {
	t.Helper()
	raw := strings.Join(lines, "\r\n") + "\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	req := m.(*sip.Request)
	req.SetSource("127.0.0.1:5099")
	req.SetTransport("UDP")
	return req
}

func register(user, contact string, extra ...string) []string {
	return append([]string{
		"REGISTER sip:" + testDomain + " SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-reg" + user,
		"Max-Forwards: 70",
		"From: <sip:" + user + "@" + testDomain + ">;tag=1",
		"To: <sip:" + user + "@" + testDomain + ">",
		"Call-ID: reg-" + user,
		"CSeq: 1 REGISTER",
		"Contact: " + contact,
		"Content-Length: 0",
	}, extra...)
}

func invite(ruri string, extra ...string) []string {
	return append([]string{
		"INVITE " + ruri + " SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-inv1",
		"From: <sip:caller@" + testDomain + ">;tag=abc",
		"To: <" + ruri + ">",
		"Call-ID: call-1",
		"CSeq: 1 INVITE",
		"Contact: <sip:caller@127.0.0.1:5099>",
		"Content-Length: 0",
	}, extra...)
}

func codes(rs []*sip.Response) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.StatusCode)
	}
	return out
}

func last(t testing.TB, rs []*sip.Response) *sip.Response {
	t.Helper()
	if len(rs) == 0 {
		t.Fatal("no response")
	}
	return rs[len(rs)-1]
}

// forwardRecorder answers every forwarded request 200 and keeps it.
type forwardRecorder struct {
	mu   sync.Mutex
	reqs []*sip.Request
}

func (r *forwardRecorder) answer(req *sip.Request) *sip.Response {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone())
	r.mu.Unlock()
	return sip.NewResponseFromRequest(req, 200, "OK", nil)
}

func (r *forwardRecorder) Requests() []*sip.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sip.Request(nil), r.reqs...)
}
