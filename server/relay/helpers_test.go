package relay

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testRelay is a relay on 127.0.0.1 with a clock the test can move.
type testRelay struct {
	*Server
	udp, tcp string
	reg      *prometheus.Registry
	skew     atomic.Int64 // added to the clock, in ns
}

func newTestRelay(t *testing.T, mut func(*Config)) *testRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRelay{udp: pc.LocalAddr().String(), tcp: ln.Addr().String(), reg: prometheus.NewRegistry()}
	cfg := Config{
		PacketConns: []net.PacketConn{pc},
		Listeners:   []net.Listener{ln},
		RelayIP:     mustAddr("127.0.0.1"),
		PortMin:     61000, PortMax: 61999, // above Linux's ephemeral ports, where the TURN sockets are
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: tr.reg,
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.now = func() time.Time { return time.Now().Add(time.Duration(tr.skew.Load())) }
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.Server = s
	t.Cleanup(func() { _ = s.Close() })
	return tr
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// udpClient is pion's TURN client over UDP to addr.
func udpClient(t *testing.T, addr string, cred Credential) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: cred.Username, Password: cred.Password, Realm: defaultRealm,
		RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// errCode is the STUN error code in err, or 0.
func errCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// transact sends an authenticated request of method on c's 5-tuple (the
// 401 challenge first, for the nonce) and returns the error code, 0 on
// success. pion's client does not expose Refresh.
func transact(t *testing.T, c *turn.Client, server string, cred Credential, method stun.Method, attrs ...stun.Setter) int {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, append(attrs, stun.Fingerprint)...)...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PerformTransaction(first, to, false)
	if err != nil {
		t.Fatalf("%v: %v", method, err)
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(res.Msg); err != nil {
		t.Fatalf("%v: challenge without nonce: %v", method, res.Msg)
	}
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, authed(attrs, cred, nonce)...)
	msg, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.PerformTransaction(msg, to, false)
	if err != nil {
		t.Fatalf("%v: %v", method, err)
	}
	return responseCode(res.Msg)
}

// authed is attrs followed by the long-term credential attributes (RFC
// 8489 §9.2) answering a challenge's nonce, and FINGERPRINT.
func authed(attrs []stun.Setter, cred Credential, nonce stun.Nonce) []stun.Setter {
	return append(append([]stun.Setter(nil), attrs...), stun.NewUsername(cred.Username), stun.NewRealm(defaultRealm),
		nonce, stun.NewLongTermIntegrity(cred.Username, defaultRealm, cred.Password), stun.Fingerprint)
}

// responseCode is the error code of a response, 0 for a success.
func responseCode(m *stun.Message) int {
	if m.Type.Class != stun.ClassErrorResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	_ = code.GetFrom(m)
	return int(code.Code)
}

// echoPeer is a UDP peer on addr that echoes every datagram.
func echoPeer(t *testing.T, addr string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

// roundTrip sends msg through relayed to peer and waits for the echo.
func roundTrip(relayed net.PacketConn, peer net.Addr, msg string) error {
	if _, err := relayed.WriteTo([]byte(msg), peer); err != nil {
		return err
	}
	_ = relayed.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := relayed.ReadFrom(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != msg {
		return errors.New("echo mismatch: " + string(buf[:n]))
	}
	return nil
}

func metricValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
