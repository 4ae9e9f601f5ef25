package relay

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// rawAttr is a STUN attribute given as bytes (pion's EVEN-PORT and
// RESERVATION-TOKEN setters are internal to pion/turn).
type rawAttr struct {
	typ stun.AttrType
	v   []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.typ, a.v); return nil }

var udpTransport = rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}} // RFC 8656 §14.7

// allocateRaw sends an Allocate with attrs from a fresh UDP socket (the
// 401 challenge first, for the nonce) and returns the error code (0 on
// success), the relayed port and the RESERVATION-TOKEN.
func allocateRaw(t *testing.T, r *testRelay, cred Credential, attrs ...stun.Setter) (code, port int, token []byte) {
	t.Helper()
	conn, err := net.Dial("udp4", r.udp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	attrs = append([]stun.Setter{udpTransport}, attrs...)
	res := exchange(t, conn, append(attrs, stun.Fingerprint)...)
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		t.Fatalf("challenge without nonce: %v", res)
	}
	res = exchange(t, conn, authed(attrs, cred, nonce)...)
	if code := responseCode(res); code != 0 {
		return code, 0, nil
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("allocation without XOR-RELAYED-ADDRESS: %v", err)
	}
	token, _ = res.Get(stun.AttrReservationToken)
	return 0, relayed.Port, token
}

// exchange sends one Allocate request built from attrs and reads its
// response (loopback: no retransmission needed).
func exchange(t *testing.T, conn net.Conn, attrs ...stun.Setter) *stun.Message {
	t.Helper()
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)}, attrs...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		t.Fatalf("Allocate response: %v", err)
	}
	return res
}

// TestEvenPortReservation checks RFC 8656 §7.2 steps 5–6: an EVEN-PORT
// allocation gets an even port whose successor is in the range and held
// until the RESERVATION-TOKEN's allocation takes it. A range of three
// ports has one such pair; without the hold, 61002 (whose successor is out
// of range) was handed out half the time, and any socket could take
// 61001 before the token came.
func TestEvenPortReservation(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.PortMin, c.PortMax = 61000, 61002 })
	cred, _ := r.Mint("rtp", time.Minute)

	code, port, token := allocateRaw(t, r, cred, rawAttr{stun.AttrEvenPort, []byte{0x80}})
	if code != 0 || port != 61000 || len(token) != 8 {
		t.Fatalf("EVEN-PORT allocation = code %d, port %d, token %q; want 0, 61000, 8 bytes", code, port, token)
	}
	if pc, err := net.ListenPacket("udp4", "127.0.0.1:61001"); err == nil {
		_ = pc.Close()
		t.Fatal("port 61001 is free between the EVEN-PORT allocation and its token's: not held")
	}
	if code, _, _ := allocateRaw(t, r, cred, rawAttr{stun.AttrEvenPort, []byte{0x80}}); code != 508 {
		t.Errorf("second EVEN-PORT allocation with no pair left = %d, want 508", code)
	}
	if got := metricValue(r.metrics.refusals.WithLabelValues(reasonNoEvenPort)); got != 1 {
		t.Errorf("no_even_port refusals = %v, want 1", got)
	}
	code, port, _ = allocateRaw(t, r, cred, rawAttr{stun.AttrReservationToken, token})
	if code != 0 || port != 61001 {
		t.Fatalf("RESERVATION-TOKEN allocation = code %d, port %d; want 0, 61001", code, port)
	}
	if n := r.held.len(); n != 0 {
		t.Errorf("%d sockets still held after both allocations", n)
	}
	if got := metricValue(r.metrics.allocations.WithLabelValues("udp")); got != 2 {
		t.Errorf("udp allocations gauge = %v, want 2", got)
	}
}

// TestEvenPortReservationExpires checks that an unused reservation gives
// its port back.
func TestEvenPortReservationExpires(t *testing.T) {
	r := newTestRelay(t, func(c *Config) { c.PortMin, c.PortMax = 61010, 61011; c.reservationHold = 200 * time.Millisecond })
	cred, _ := r.Mint("rtp", time.Minute)
	if code, port, _ := allocateRaw(t, r, cred, rawAttr{stun.AttrEvenPort, []byte{0x80}}); code != 0 || port != 61010 {
		t.Fatalf("EVEN-PORT allocation = code %d, port %d; want 0, 61010", code, port)
	}
	waitFor(t, "the reserved port to be released", func() bool { return r.held.len() == 0 })
	pc, err := net.ListenPacket("udp4", "127.0.0.1:61011")
	if err != nil {
		t.Fatalf("reserved port still bound after its hold: %v", err)
	}
	_ = pc.Close()
}

// TestEvenPortRefusedReleasesPair checks that an EVEN-PORT allocation
// refused after pion's probe (here by the user's quota, 486) does not keep
// the probed pair: no token was given, so nothing would claim port+1.
func TestEvenPortRefusedReleasesPair(t *testing.T) {
	r := newTestRelay(t, func(c *Config) {
		c.PortMin, c.PortMax = 61020, 61023
		c.AllocationsPerUser = 1
		c.probeHold = 200 * time.Millisecond
	})
	cred, _ := r.Mint("rtp", time.Minute)
	if code, _, _ := allocateRaw(t, r, cred); code != 0 {
		t.Fatalf("first allocation = %d", code)
	}
	if code, _, _ := allocateRaw(t, r, cred, rawAttr{stun.AttrEvenPort, []byte{0x80}}); code != 486 {
		t.Fatalf("EVEN-PORT allocation over the quota = %d, want 486", code)
	}
	waitFor(t, "the probed pair to be released", func() bool { return r.held.len() == 0 })
}

// len is the number of held sockets.
func (h *heldPorts) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byPt)
}
