package overlay

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeConn is a connection as sipConn sees it: its address, whether it
// is limited, whether it closed.
type fakeConn struct {
	network.Conn
	addr    ma.Multiaddr
	limited bool
	closed  bool
}

func (c fakeConn) RemoteMultiaddr() ma.Multiaddr { return c.addr }
func (c fakeConn) Stat() network.ConnStats {
	return network.ConnStats{Stats: network.Stats{Limited: c.limited}}
}
func (c fakeConn) IsClosed() bool { return c.closed }

func TestSIPConnPrefersTheCheapestConnection(t *testing.T) {
	wss := fakeConn{addr: ma.StringCast("/ip4/192.0.2.1/tcp/443/tls/ws")}
	quic := fakeConn{addr: ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1")}
	tcp := fakeConn{addr: ma.StringCast("/ip4/192.0.2.1/tcp/4001")}
	relay := fakeConn{addr: ma.StringCast("/ip4/192.0.2.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"), limited: true}
	for _, tc := range []struct {
		name  string
		conns []network.Conn
		want  string
	}{
		{"tcp over wss and quic", []network.Conn{wss, quic, tcp}, "tcp"},
		{"wss over quic", []network.Conn{quic, wss}, "wss"},
		{"wss over a relay", []network.Conn{relay, wss}, "wss"},
		{"a relay alone", []network.Conn{relay}, "relay"},
		{"closed ones skipped", []network.Conn{fakeConn{addr: tcp.addr, closed: true}, wss}, "wss"},
	} {
		got := sipConn(tc.conns)
		if got == nil || connTransport(got) != tc.want {
			t.Errorf("%s: picked %v, want %s", tc.name, got, tc.want)
		}
	}
	if sipConn(nil) != nil {
		t.Error("picked a connection out of none")
	}
}

// TestOpenSIPStreamOnChosenConnection opens a SIP stream on a pair that
// holds a QUIC and a TCP connection at once: the stream must ride TCP,
// negotiate the SIP protocol, and carry bytes both ways.
func TestOpenSIPStreamOnChosenConnection(t *testing.T) {
	listen := func(c *Config) {
		c.ListenAddrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}
	}
	a, b := startNode(t, listen), startNode(t, listen)
	b.HandleSIPStreams(func(s Stream) {
		defer func() { _ = s.Close() }()
		_, _ = io.Copy(s, s)
	})
	only := func(n *Node, code int) peer.AddrInfo {
		ai := peer.AddrInfo{ID: n.host.ID()}
		for _, x := range n.host.Addrs() {
			if _, err := x.ValueForProtocol(code); err == nil {
				ai.Addrs = append(ai.Addrs, x)
			}
		}
		return ai
	}
	// a dials b over QUIC while b dials a over TCP: when neither has a
	// connection yet, both dials go out and two connections stay. When
	// one dial finds the other's connection, hang up and race again.
	for try := 1; len(a.host.Network().ConnsToPeer(b.host.ID())) < 2; try++ {
		if try > 20 {
			t.Fatal("20 simultaneous dials never left two connections")
		}
		_ = a.host.Network().ClosePeer(b.host.ID())
		_ = b.host.Network().ClosePeer(a.host.ID())
		errs := make(chan error, 2)
		go func() { errs <- a.host.Connect(ctxT(t), only(b, ma.P_QUIC_V1)) }()
		go func() { errs <- b.host.Connect(ctxT(t), only(a, ma.P_TCP)) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := a.OpenSIPStream(ctxT(t), b.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if got := s.Transport(); got != "tcp" {
		t.Errorf("the SIP stream rides %s, want tcp", got)
	}
	msg := []byte("OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(s, back); err != nil || string(back) != string(msg) {
		t.Fatalf("echo: %q, %v", back, err)
	}
}

// TestConnectPeerRetriesFastFailureOnce: a connect that fails at once (here
// a node whose listener is closed: connection refused) is tried exactly
// once more, with the swarm's dial backoff cleared; one that fails slowly
// would not be (quickDialFailure).
func TestConnectPeerRetriesFastFailureOnce(t *testing.T) {
	a, gone := startNode(t, nil), startNode(t, nil)
	info := infoOf(gone)
	closeQuietly(gone)
	a.host.Peerstore().AddAddrs(info.ID, info.Addrs, time.Hour)
	start := time.Now()
	if err := a.connectPeer(ctxT(t), info.ID); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("connect to a closed node: %v, want ErrUnreachable", err)
	}
	if got := testutil.ToFloat64(a.metrics.dialRetries); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if d := time.Since(start); d > 2*quickDialFailure {
		t.Errorf("two fast failures took %v", d)
	}
}
