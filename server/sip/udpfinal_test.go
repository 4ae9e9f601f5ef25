package sip

import (
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// udpCall is a phone on a UDP socket calling bob, who is registered at
// another peer; the test service's forward recorder answers 200.
type udpCall struct {
	t  *testing.T
	ts *testService
	c  net.Conn

	handled chan struct{} // a handler call returned
	mu      sync.Mutex
	txs     []*sip.ServerTx // guarded by mu; the transactions handed to the handler
}

func newUDPCall(t *testing.T) *udpCall {
	ts := newTestService(t, nil)
	ts.loc.addRemote("sip:bob@"+testDomain, "sip:bob@127.0.0.9:5090", "<sip:127.0.0.8:5060;transport=tcp;lr>")
	u := &udpCall{t: t, ts: ts, handled: make(chan struct{}, 16)}
	// The handler as Service.New installs it, plus a note of sipgo's
	// transactions.
	h := ts.udpFinalHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if ft, ok := tx.(*finalTx); ok {
			u.mu.Lock()
			u.txs = append(u.txs, ft.ServerTx)
			u.mu.Unlock()
		}
		ts.onRequest(req, tx)
	})
	counted := func(req *sip.Request, tx sip.ServerTransaction) {
		h(req, tx)
		u.handled <- struct{}{}
	}
	ts.srv.OnRequest(sip.INVITE, counted)
	ts.srv.OnRequest(sip.BYE, counted)
	u.c = serveUDP(t, ts)
	return u
}

func (u *udpCall) request(method sip.RequestMethod, branch string, cseq int) string {
	lines := invite("sip:bob@" + testDomain)
	lines[0] = string(method) + " sip:bob@" + testDomain + " SIP/2.0"
	lines[1] = "Via: SIP/2.0/UDP " + u.c.LocalAddr().String() + ";branch=z9hG4bK-" + branch
	lines[5] = "CSeq: " + strconv.Itoa(cseq) + " " + string(method)
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// send sends msg and returns the first response whose status is not 100.
func (u *udpCall) send(msg string) string {
	u.t.Helper()
	if _, err := u.c.Write([]byte(msg)); err != nil {
		u.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		_ = u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := u.c.Read(buf)
		if err != nil {
			u.t.Fatalf("no answer to %q: %v", strings.SplitN(msg, "\r\n", 2)[0], err)
		}
		if res := string(buf[:n]); !strings.HasPrefix(res, "SIP/2.0 100 ") {
			return res
		}
	}
}

// silent checks that nothing but 100 Trying comes back within d.
func (u *udpCall) silent(d time.Duration) {
	u.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = u.c.SetReadDeadline(deadline)
		n, err := u.c.Read(buf)
		if err != nil {
			return
		}
		if res := string(buf[:n]); !strings.HasPrefix(res, "SIP/2.0 100 ") {
			u.t.Fatalf("absorbed request answered:\n%s", res)
		}
	}
}

// finished checks that the transactions handed to the handler are over
// and out of sipgo's table, and that none waits out a timer: sipgo would
// keep each for 32 s (Timer L, Timer J), and with it the request and
// the responses.
func (u *udpCall) finished() {
	u.t.Helper()
	for range 2 {
		select {
		case <-u.handled:
		case <-time.After(5 * time.Second):
			u.t.Fatal("the handler did not return")
		}
	}
	u.mu.Lock()
	txs := append([]*sip.ServerTx(nil), u.txs...)
	u.mu.Unlock()
	if len(txs) != 2 {
		u.t.Fatalf("%d transactions handled, want 2 (INVITE, BYE)", len(txs))
	}
	for _, tx := range txs {
		if tx.Err() == nil {
			u.t.Fatalf("%s transaction not terminated", tx.Origin().Method)
		}
		// Stop reports false for a timer that was stopped already.
		for _, name := range []string{"timer_j", "timer_l"} {
			if tm := timerField(tx, name); tm != nil && tm.Stop() {
				u.t.Errorf("%s transaction's %s was running", tx.Origin().Method, name)
			}
		}
	}
	if keys := sipgoServerTxs(u.ts); len(keys) != 0 {
		u.t.Fatalf("sipgo still holds server transactions %v", keys)
	}
}

// RFC 3261 §17.2 over UDP, with the finished transactions in the table
// rather than in sipgo: a retransmitted INVITE answered 2xx is absorbed
// (RFC 6026 §7.1), a CANCEL of it gets 200 and has no effect (§9.2), a
// retransmitted BYE gets the same 200 again, byte for byte (§17.2.2);
// none is processed twice, and sipgo's transactions are gone at once.
func TestUDPFinishedTransactions(t *testing.T) {
	u := newUDPCall(t)
	invite := u.request(sip.INVITE, "fin-inv", 1)
	if res := u.send(invite); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("INVITE answered:\n%s", res)
	}
	bye := u.request(sip.BYE, "fin-bye", 2)
	first := u.send(bye)
	if !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("BYE answered:\n%s", first)
	}
	u.finished()

	if _, err := u.c.Write([]byte(invite)); err != nil {
		t.Fatal(err)
	}
	u.silent(300 * time.Millisecond)
	cancel := strings.Replace(strings.Replace(invite, "INVITE sip:", "CANCEL sip:", 1), "1 INVITE", "1 CANCEL", 1)
	if res := u.send(cancel); !strings.HasPrefix(res, "SIP/2.0 200 ") || !strings.Contains(res, "CSeq: 1 CANCEL") {
		t.Fatalf("CANCEL after the 2xx answered:\n%s", res)
	}
	if again := u.send(bye); again != first {
		t.Fatalf("retransmitted BYE answered differently:\n%s\nthen\n%s", first, again)
	}

	var invites, byes, cancels int
	for _, r := range u.ts.forwarded.Requests() {
		switch r.Method {
		case sip.INVITE:
			invites++
		case sip.BYE:
			byes++
		case sip.CANCEL:
			cancels++
		}
	}
	if invites != 1 || byes != 1 || cancels != 0 || len(u.ts.stateless) != 0 {
		t.Fatalf("forwarded %d INVITEs, %d BYEs, %d CANCELs, %d statelessly; want 1, 1, 0, 0",
			invites, byes, cancels, len(u.ts.stateless))
	}
	m := u.ts.m.retransmissions
	if a, b := testutil.ToFloat64(m.WithLabelValues("INVITE", "absorbed")), testutil.ToFloat64(m.WithLabelValues("BYE", "answered")); a != 1 || b != 1 {
		t.Fatalf("retransmissions counted: INVITE absorbed %v, BYE answered %v; want 1, 1", a, b)
	}
}

// An INVITE answered with a non-2xx stays with sipgo's transaction,
// which retransmits the response until the ACK (Timer G, §17.2.1): the
// table cannot do that. Its ACK is absorbed, not forwarded.
func TestUDPNon2xxInviteStaysWithSipgo(t *testing.T) {
	u := newUDPCall(t)
	msg := strings.Replace(u.request(sip.INVITE, "fin-404", 1), "sip:bob@", "sip:nobody@", 1)
	res := u.send(msg)
	if !strings.HasPrefix(res, "SIP/2.0 404 ") {
		t.Fatalf("INVITE to nobody answered:\n%s", res)
	}
	// Timer G: the 404 comes again, unasked (T1 = 500 ms).
	_ = u.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65535)
	n, err := u.c.Read(buf)
	if err != nil || string(buf[:n]) != res {
		t.Fatalf("no retransmission of the 404 before the ACK: %v\n%s", err, buf[:n])
	}
	ack := strings.Replace(strings.Replace(msg, "INVITE sip:", "ACK sip:", 1), "1 INVITE", "1 ACK", 1)
	if _, err := u.c.Write([]byte(ack)); err != nil {
		t.Fatal(err)
	}
	u.silent(1500 * time.Millisecond) // past the next Timer G (1 s)
	if n := len(u.ts.forwarded.Requests()) + len(u.ts.stateless); n != 0 {
		t.Fatalf("%d requests forwarded; the ACK of a non-2xx is the transaction's own", n)
	}
}

// sipgoServerTxs lists the keys of the server transactions sipgo holds.
func sipgoServerTxs(ts *testService) []string {
	ua := reflect.ValueOf(ts.srv.UserAgent).Elem().FieldByName("tx")
	txl := reflect.NewAt(ua.Type(), unsafe.Pointer(ua.UnsafeAddr())).Elem().Interface().(*sip.TransactionLayer)
	st := reflect.ValueOf(txl).Elem().FieldByName("serverTransactions")
	st = reflect.NewAt(st.Type(), unsafe.Pointer(st.UnsafeAddr())).Elem()
	mu := (*sync.RWMutex)(unsafe.Pointer(st.Elem().FieldByName("mu").UnsafeAddr()))
	mu.RLock()
	defer mu.RUnlock()
	items := st.Elem().FieldByName("items")
	items = reflect.NewAt(items.Type(), unsafe.Pointer(items.UnsafeAddr())).Elem()
	var keys []string
	for _, k := range items.MapKeys() {
		keys = append(keys, k.String())
	}
	return keys
}
