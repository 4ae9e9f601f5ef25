package sip

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/overlay"
)

// pipeNet joins services in one process the way the overlay does: each
// OpenSIPStream is a fresh in-memory pipe handed to the other node's
// handler. Unlike the forward recorder, it runs sipgo's real transport
// and transaction layers on both ends.
type pipeNet struct {
	mu       sync.Mutex
	handlers map[string]func(overlay.Stream)
	opens    atomic.Int64
}

type pipeEnd struct {
	net.Conn
	remote string
}

func (p pipeEnd) Reset() error       { return p.Close() }
func (p pipeEnd) RemoteNode() string { return p.remote }
func (p pipeEnd) Relayed() bool      { return false }
func (p pipeEnd) Transport() string  { return "pipe" }

// node is one node's view of the pipe network.
type pipeNode struct {
	net *pipeNet
	id  string
}

func (n pipeNode) OpenSIPStream(_ context.Context, id string) (overlay.Stream, error) {
	n.net.mu.Lock()
	h := n.net.handlers[id]
	n.net.mu.Unlock()
	if h == nil {
		return nil, overlay.ErrUnreachable
	}
	n.net.opens.Add(1)
	near, far := pipePair(n.id, id)
	go h(far)
	return near, nil
}

// pipePair is a stream from node from to node to: near is from's end.
func pipePair(from, to string) (near, far pipeEnd) {
	a, b := net.Pipe()
	return pipeEnd{a, to}, pipeEnd{b, from}
}

func (n pipeNode) HandleSIPStreams(f func(overlay.Stream)) {
	n.net.mu.Lock()
	n.net.handlers[n.id] = f
	n.net.mu.Unlock()
}

// newPipePeer starts a service with real sipgo layers on pn under id.
func newPipePeer(t testing.TB, pn *pipeNet, id string) *Service {
	t.Helper()
	owner, err := overlay.NewP256Key()
	if err != nil {
		t.Fatal(err)
	}
	loc := newFakeLocator()
	loc.id = id
	s, err := New(Config{Domain: testDomain, Locator: loc, Owner: owner, Host: "127.0.0.1",
		Peers: pipeNode{pn, id}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServePeers() }()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// optionsTo sends an OPTIONS from s to the peer named host, the way the
// proxy sends any request to a peer, and returns the final status.
func optionsTo(t *testing.T, s *Service, host string) int {
	t.Helper()
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: s.peerHost,
		Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	for _, h := range []sip.Header{
		&sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: s.peerHost}, Params: sip.HeaderParams{{K: "tag", V: "t1"}}},
		&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: host}},
		sip.NewHeader("Call-ID", sip.GenerateBranch()),
		&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS},
	} {
		req.AppendHeader(h)
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.dialPeer(ctx, req); err != nil {
		t.Fatalf("dialPeer: %v", err)
	}
	tx, err := s.client.TransactionRequest(ctx, req, prebuilt)
	if err != nil {
		t.Fatalf("sending OPTIONS: %v", err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res.StatusCode
		case <-tx.Done():
			t.Fatalf("OPTIONS to %s: %v", host, tx.Err())
		case <-ctx.Done():
			t.Fatalf("OPTIONS to %s: no answer", host)
		}
	}
}

func TestPeerLinkBothWays(t *testing.T) {
	pn := &pipeNet{handlers: map[string]func(overlay.Stream){}}
	a := newPipePeer(t, pn, otherPeer)
	b := newPipePeer(t, pn, newFakeLocator().ID())
	if code := optionsTo(t, a, b.peerHost); code != 200 {
		t.Fatalf("A → B: %d, want 200", code)
	}
	// B knows who sent it: the stream's node, not anything in the message.
	// sipgo may hand B the request before B's accept loop has recorded
	// the stream (peerLinks.add), so give that a moment.
	c := b.links.live(a.cfg.Locator.ID())
	for deadline := time.Now().Add(2 * time.Second); c == nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		c = b.links.live(a.cfg.Locator.ID())
	}
	if c == nil {
		t.Fatal("B holds no stream from A")
	} else if node, ok := b.links.nodeOf(c.raddr.String()); !ok || node != a.cfg.Locator.ID() {
		t.Fatalf("B takes the stream for %q, want A", node)
	}
	// B answers back over A's stream: no second stream.
	if code := optionsTo(t, b, a.peerHost); code != 200 {
		t.Fatalf("B → A: %d, want 200", code)
	}
	if n := pn.opens.Load(); n != 1 {
		t.Fatalf("%d streams opened, want 1 (B reuses A's)", n)
	}
	// A stream that dies is replaced by the next request.
	_ = a.links.live(b.cfg.Locator.ID()).Close()
	deadline := time.Now().Add(2 * time.Second)
	for b.links.live(a.cfg.Locator.ID()) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code := optionsTo(t, b, a.peerHost); code != 200 {
		t.Fatalf("B → A after the stream closed: %d, want 200", code)
	}
	if n := pn.opens.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2", n)
	}
}

func TestPeerLinkUnreachable(t *testing.T) {
	pn := &pipeNet{handlers: map[string]func(overlay.Stream){}}
	a := newPipePeer(t, pn, otherPeer)
	gone, _ := PeerHost(newFakeLocator().ID())
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: gone})
	if err := a.dialPeer(context.Background(), req); err == nil {
		t.Fatal("dialPeer to a node with no handler succeeded")
	}
}

// overlapStream is a stream that notes Writes that overlap, as a yamux
// stream would interleave them.
type overlapStream struct {
	pipeEnd
	active, overlaps atomic.Int64
}

func (o *overlapStream) Write(b []byte) (int, error) {
	if o.active.Add(1) > 1 {
		o.overlaps.Add(1)
	}
	time.Sleep(50 * time.Microsecond) // a write that waits for window
	o.active.Add(-1)
	return len(b), nil
}

// TestPeerConnSerialisesWrites: sipgo writes to one connection from many
// goroutines; a stream gets one whole message at a time.
func TestPeerConnSerialisesWrites(t *testing.T) {
	a, _ := net.Pipe()
	st := &overlapStream{pipeEnd: pipeEnd{a, otherPeer}}
	l := &peerLinks{byNode: map[string][]*peerConn{}, byAddr: map[string]*peerConn{}, open: map[string]int{}}
	c := l.newConn(st, "out")
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				_, _ = c.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
			}
		}()
	}
	wg.Wait()
	if n := st.overlaps.Load(); n != 0 {
		t.Fatalf("%d writes overlapped on one stream", n)
	}
}
