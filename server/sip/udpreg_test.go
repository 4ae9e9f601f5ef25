package sip

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveUDP runs ts on a loopback UDP socket and returns a client socket
// connected to it.
func serveUDP(t testing.TB, ts *testService) net.Conn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = ts.ServeUDP(pc) }()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %q: %v", strings.SplitN(msg, "\r\n", 2)[0], err)
	}
	return string(buf[:n])
}

// A retransmitted REGISTER gets the first answer again, byte for byte
// (same To tag), and is not processed twice: RFC 3261 §17.2.2.
func TestUDPRegisterRetransmission(t *testing.T) {
	ts := newTestService(t, nil)
	c := serveUDP(t, ts)
	lines := register("alice", "<sip:alice@127.0.0.1:5099>")
	lines[1] = "Via: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK-udpreg1"
	msg := strings.Join(lines, "\r\n") + "\r\n\r\n"
	first := roundTrip(t, c, msg)
	if !strings.HasPrefix(first, "SIP/2.0 200 ") {
		t.Fatalf("first answer:\n%s", first)
	}
	again := roundTrip(t, c, msg)
	if again != first {
		t.Fatalf("retransmission answered differently:\n%s\nthen\n%s", first, again)
	}
	// A new transaction (new branch) is processed: a new To tag.
	msg2 := strings.Replace(msg, "udpreg1", "udpreg2", 1)
	second := roundTrip(t, c, msg2)
	if !strings.HasPrefix(second, "SIP/2.0 200 ") || second == first {
		t.Fatalf("new transaction answered:\n%s", second)
	}
}

// REGISTERs of public AORs stay with sipgo (the proxy relays them with a
// client transaction); requests without an RFC 3261 branch too. With the
// queue full, a REGISTER is dropped, and gets 503 when it keeps finding
// the queue full.
func TestUDPRegistrarTakes(t *testing.T) {
	ts := newTestService(t, nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	g := &guardConn{PacketConn: pc, s: ts.Service}
	r := stalledRegistrar(ts.Service, g)
	public := parse(t, register("alice", "<sip:alice@127.0.0.1:5099>")...)
	public.To().Address.Host = "atlanta.example"
	if r.take(public, nil, peer.LocalAddr()) {
		t.Fatal("took a REGISTER for a public AOR")
	}
	inv := parse(t, invite("sip:bob@"+testDomain)...)
	if r.take(inv, nil, peer.LocalAddr()) {
		t.Fatal("took an INVITE")
	}
	own := parse(t, register("bob", "<sip:bob@127.0.0.1:5099>")...)
	if !r.take(own, nil, peer.LocalAddr()) || len(r.jobs) != 1 {
		t.Fatal("did not queue an overlay REGISTER")
	}
	// A retransmission while the first is processed is absorbed (§17.2.2
	// Trying state): taken, not queued again.
	if !r.take(own, nil, peer.LocalAddr()) || len(r.jobs) != 1 {
		t.Fatal("retransmission in Trying was not absorbed")
	}
	// The queue is full: the REGISTER is dropped, as a full socket buffer
	// would drop it, and so is its first retransmission; each is tried
	// again (not absorbed before the parse), and the third gets 503.
	other := parse(t, register("carol", "<sip:carol@127.0.0.1:5099>")...)
	raw := []byte(other.String())
	buf := make([]byte, 4096)
	for i := 1; i < udpRegShed; i++ {
		if !r.take(other, nil, peer.LocalAddr()) {
			t.Fatalf("sending %d with the queue full was not taken", i)
		}
		if r.absorbed(raw, peer.LocalAddr()) {
			t.Fatalf("the retransmission of a dropped REGISTER (%d) was absorbed", i)
		}
		_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := peer.ReadFrom(buf); err == nil {
			t.Fatalf("sending %d with the queue full was answered: %q", i, buf[:n])
		}
	}
	if !r.take(other, nil, peer.LocalAddr()) {
		t.Fatal("a REGISTER with the queue full was not answered")
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 503 ") || !strings.Contains(string(buf[:n]), "Retry-After: 5") {
		t.Fatalf("answer with the queue full: %q %v", buf[:n], err)
	}
	if r.pending() != 2 {
		t.Fatalf("table holds %d entries, want 2", r.pending())
	}
	// A dropped REGISTER whose retransmission finds room is queued.
	dave := parse(t, register("dave", "<sip:dave@127.0.0.1:5099>")...)
	if !r.take(dave, nil, peer.LocalAddr()) || len(r.jobs) != 1 {
		t.Fatal("a REGISTER with the queue full was queued or not taken")
	}
	<-r.jobs
	if !r.take(dave, nil, peer.LocalAddr()) || len(r.jobs) != 1 {
		t.Fatal("the retransmission of a dropped REGISTER was not queued once there was room")
	}
	if !r.take(dave, nil, peer.LocalAddr()) || len(r.jobs) != 1 {
		t.Fatal("a retransmission of the queued REGISTER was not absorbed")
	}
}

// stalledRegistrar is a UDP registrar whose queue holds one REGISTER and
// that starts no worker: what is queued stays there for the test to read,
// and one more fills the queue.
func stalledRegistrar(s *Service, conn *guardConn) *udpRegistrar {
	r := &udpRegistrar{s: s, conn: conn, jobs: make(chan *regTx, 1), txs: map[string]*regTx{}, kept: newKeptAnswers()}
	r.workers.Store(udpRegWorkers)
	return r
}

// Completed transactions leave the table after Timer J, oldest first, and
// the table never outgrows its bound.
func TestUDPRegistrarExpiry(t *testing.T) {
	r := &udpRegistrar{txs: map[string]*regTx{}, kept: newKeptAnswers()}
	t0 := time.Now()
	for i := range 3000 {
		tx := &regTx{key: string(rune('a'+i%26)) + strings.Repeat("x", i/26), last: []byte("SIP/2.0 200 OK\r\n\r\n")}
		r.txs[tx.key] = tx
		r.complete(tx, t0)
	}
	if r.pending() != 3000 || len(r.txs) != 0 {
		t.Fatalf("%d entries, %d in progress; want 3000 kept", r.pending(), len(r.txs))
	}
	late := &regTx{key: "late", last: []byte("SIP/2.0 200 OK\r\n\r\n")}
	r.txs["late"] = late
	r.complete(late, t0.Add(timerJ+time.Second))
	if r.pending() != 1 || r.kept.get("late") == nil {
		t.Fatalf("%d entries after Timer J, want only the late one", r.pending())
	}
	// Once traffic stops, the sweep the last worker schedules drops the
	// rest without a REGISTER to trigger it.
	r.sweep(t0.Add(2*timerJ + 2*time.Second))
	if r.pending() != 0 {
		t.Fatalf("%d entries after the quiet sweep, want 0", r.pending())
	}
}

func TestRegTxKey(t *testing.T) {
	a := parse(t, register("alice", "<sip:alice@127.0.0.1:5099>")...)
	k, ok := regTxKey(a)
	if !ok || !bytes.Contains([]byte(k), []byte("z9hG4bK-regalice")) {
		t.Fatalf("key %q %v", k, ok)
	}
	b := parse(t, strings.Replace(strings.Join(register("alice", "<sip:alice@127.0.0.1:5099>"), "\r\n"), ";branch=z9hG4bK-regalice", "", 1))
	if _, ok := regTxKey(b); ok {
		t.Fatal("keyed a request without a branch")
	}
}

// Done is closed by Terminate whether it was asked for before or after.
func TestRegTxDone(t *testing.T) {
	before := &regTx{}
	d := before.Done()
	before.Terminate()
	before.Terminate()
	after := &regTx{}
	after.Terminate()
	for _, c := range []<-chan struct{}{d, after.Done()} {
		select {
		case <-c:
		default:
			t.Fatal("Done not closed after Terminate")
		}
	}
	if open := (&regTx{}).Done(); open == nil {
		t.Fatal("nil Done channel")
	}
}

// BenchmarkUDPRegister sends REGISTERs of new AORs over a loopback UDP
// socket and waits for each 200: the registrar's own path (parse, flows,
// response, send), with the overlay faked.
func BenchmarkUDPRegister(b *testing.B) {
	ts := newTestService(b, nil)
	ts.flows = newFlows(-1) // one client socket: no per-source cap
	c := serveUDP(b, ts)
	buf := make([]byte, 65535)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		user := "b" + strconv.Itoa(i)
		lines := register(user, "<sip:"+user+"@127.0.0.1:5099>")
		lines[1] = "Via: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK-b" + strconv.Itoa(i)
		if _, err := c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n\r\n")); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200 ")) {
			b.Fatalf("answer %q: %v", buf[:n], err)
		}
	}
}

// The quick key read from the raw top Via is the parsed one, for the
// forms phones send; other forms get none (and take the parsed way).
func TestRawTxKey(t *testing.T) {
	for _, via := range []string{
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-reg1",
		"v: SIP/2.0/UDP Phone.Example.COM;rport=1;branch=z9hG4bKabc;received=10.0.0.1",
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-b",
		"VIA: sip/2.0/udp host:1;branch=z9hG4bKx",
	} {
		lines := register("alice", "<sip:alice@127.0.0.1:5099>")
		lines[1] = via
		msg := strings.Join(lines, "\r\n") + "\r\n\r\n"
		req := parse(t, lines...)
		want, ok := regTxKey(req)
		got, rawOK := rawTxKey([]byte(msg))
		if !ok || !rawOK || got != want {
			t.Errorf("%s: raw key %q %v, parsed %q %v", via, got, rawOK, want, ok)
		}
	}
	for _, via := range []string{
		"Via: SIP/2.0/UDP [::1]:5099;branch=z9hG4bK-1",
		"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-1",
		"Via: SIP/2.0/UDP 127.0.0.1:5099 ; branch = z9hG4bK-1",
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=1234",
		"Via: SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bK-1",
		"Via: SIP/2.0/UDP 127.0.0.1:5099",
		"Via: SIP/2.0/UDP 127.0.0.1:5099;BRANCH=z9hG4bK-1",
	} {
		lines := register("alice", "<sip:alice@127.0.0.1:5099>")
		lines[1] = via
		if k, ok := rawTxKey([]byte(strings.Join(lines, "\r\n") + "\r\n\r\n")); ok {
			t.Errorf("%s: raw key %q", via, k)
		}
	}
}

func TestRawRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"REGISTER sip:p2psip.local SIP/2.0\r\nVia: x":          "p2psip.local",
		"REGISTER sip:P2PSIP.local:5060;transport=udp SIP/2.0": "P2PSIP.local",
		"REGISTER sip:alice@p2psip.local SIP/2.0":              "p2psip.local",
		"REGISTER sips:p2psip.local SIP/2.0":                   "",
		"REGISTER":                                             "",
		"":                                                     "",
	} {
		if got := rawRequestHost([]byte(in)); got != want {
			t.Errorf("rawRequestHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRawRequestHost: whatever the datagram, the host read from its
// request line is a piece of that line.
func FuzzRawRequestHost(f *testing.F) {
	f.Add([]byte("REGISTER sip:p2psip.local SIP/2.0\r\n"))
	f.Add([]byte("REGISTER sip:a@b:1;x?y SIP/2.0\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		line, _, _ := bytes.Cut(data, []byte("\r\n"))
		if h := rawRequestHost(data); !bytes.Contains(line, []byte(h)) || strings.ContainsAny(h, " :;?>") {
			t.Fatalf("host %q from %q", h, line)
		}
	})
}

// With the queue full, a new REGISTER for the registrar's domain is
// dropped before the parse, answered by nothing; after udpRegPersist
// seconds of such drops the overload counts as lasting and REGISTERs take
// the parsed way again, towards 503.
func TestUDPRegistrarDropsUnread(t *testing.T) {
	ts := newTestService(t, nil)
	r := stalledRegistrar(ts.Service, nil)
	r.jobs <- &regTx{} // full
	raw := []byte(strings.Join(register("erin", "<sip:erin@127.0.0.1:5099>"), "\r\n") + "\r\n\r\n")
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5099}
	if !r.absorbed(raw, from) {
		t.Fatal("a new REGISTER with the queue full was parsed")
	}
	other := bytes.Replace(raw, []byte("REGISTER sip:"+testDomain), []byte("REGISTER sip:atlanta.example"), 1)
	if bytes.Equal(other, raw) || r.absorbed(other, from) {
		t.Fatal("a REGISTER for another domain was dropped unread")
	}
	r.dropSec.Store(time.Now().Unix() - 1)
	r.dropRun.Store(udpRegPersist)
	if r.absorbed(raw, from) {
		t.Fatal("after a lasting overload a REGISTER was still dropped unread")
	}
	<-r.jobs
	r.dropRun.Store(0)
	if r.absorbed(raw, from) {
		t.Fatal("with room in the queue a new REGISTER was not handed on")
	}
}

// BenchmarkAbsorbed measures what a retransmission of a queued REGISTER
// costs before the parse: under overload they come by the tens of
// thousands a second, so it should not allocate.
func BenchmarkAbsorbed(b *testing.B) {
	ts := newTestService(b, nil)
	r := stalledRegistrar(ts.Service, nil)
	raw := []byte(strings.Join(register("erin", "<sip:erin@127.0.0.1:5099>"), "\r\n") + "\r\n\r\n")
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5099}
	req := parse(b, register("erin", "<sip:erin@127.0.0.1:5099>")...)
	if !r.take(req, raw, from) || len(r.jobs) != 1 {
		b.Fatal("not queued")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !r.absorbed(raw, from) {
			b.Fatal("not absorbed")
		}
	}
}

// FuzzRawTxKeyAgrees: wherever the raw reading of a top Via gives a key,
// it is the key the parsed request gives, so that a lookup before the
// parse never finds another transaction's entry.
func FuzzRawTxKeyAgrees(f *testing.F) {
	f.Add("127.0.0.1:5099", "branch=z9hG4bK-1")
	f.Add("Host.Example", "rport;branch=z9hG4bKx;received=1.2.3.4")
	f.Add("h", "branch=z9hG4bKa;branch=z9hG4bKb")
	f.Fuzz(func(t *testing.T, sentBy, params string) {
		lines := register("alice", "<sip:alice@127.0.0.1:5099>")
		lines[1] = "Via: SIP/2.0/UDP " + sentBy + ";" + params
		msg := []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
		raw, rawOK := appendRawTxKey(nil, msg)
		if !rawOK {
			return
		}
		_, req, ok := screenRequest(msg, false)
		if !ok || req == nil {
			return // refused by the guard: nothing is kept under any key
		}
		if parsed, ok := regTxKey(req); !ok || parsed != string(raw) {
			t.Fatalf("%q: raw key %q, parsed %q (%v)", lines[1], raw, parsed, ok)
		}
	})
}
